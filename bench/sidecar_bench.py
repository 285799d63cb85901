"""The light sidecar (role forwarder) against the watching one (role resolver): what each
costs the API server and the pod, and how fast the light one follows a failover.

1. **API requests.** The test API server (tests/kubeapi.py, which counts every request)
   runs with the demo cluster loaded; each sidecar runs as ``mcdns serve`` with
   ``KUBECONFIG`` and the in-cluster variables pointing at it, answers a mix of cluster
   and external names, and the requests it made are counted. The forwarder is given no
   way to the API in its config (it has none) and must make 0.
2. **Memory.** VmRSS (/proc/PID/status) of each, after the query mix, median of
   ``--starts`` starts. The forwarder runs as deployed (config/sidecar/deployment.yaml:
   ``http: null``, autopath on); the resolver as in watching-resolver.yaml.
3. **Failover follow.** A stub mcdns (the central Service) on a state file, the
   forwarder in front of it. The state file is rewritten so the stub fails over (serve's
   local pods go down: the import's IP) or back; the stub and the forwarder are both
   asked every 5 ms, and the follow time is when the forwarder's answer changed minus
   when the stub's did. The goal: within the cluster answer's TTL + 0.1 s.

    .venv/bin/python bench/sidecar_bench.py [--starts 3] [--rounds 5] [--ttl 5] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from knot import ZONE, Knot, free_port  # noqa: E402
from kubeapi import FakeKubeAPI  # noqa: E402

from bench.servers import stop_process  # noqa: E402

DEMO_STATE = ROOT / "config" / "demo-state.yaml"
SERVE = "serve.default.svc.cluster.local"
LOCAL_IP, IMPORT_IP = "10.96.10.10", "10.13.187.164"
DOWN = "conditions: {ready: false, serving: false, terminating: false}"
UP = "conditions: {ready: true, serving: true, terminating: false}"
PHASES = (0.0, 0.25, 0.5, 0.75, 1.05)
"""Ages of the forwarder's cached answer at a switch, in TTLs."""
MIX = [SERVE, "web.default.svc.cluster.local", "billing.default.svc.cluster.local",
       "nope.default.svc.cluster.local", f"www.{ZONE}", f"alias.{ZONE}", f"txt.{ZONE}",
       *(f"n{i}.{ZONE}" for i in range(50))]


def query(port: int, name: str, qtype: int = 1, timeout: float = 1.0) -> bytes | None:
    """One query (ID 0xbeef, RD); the reply or None."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    wire = (bytes.fromhex("beef01000001000000000000") + qname + qtype.to_bytes(2, "big")
            + b"\x00\x01")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(wire, ("127.0.0.1", port))
            return s.recv(4096)
        except OSError:
            return None


def first_a(reply: bytes | None) -> str | None:
    """The address of the last A record of a reply (enough for one-record answers)."""
    if reply is None or reply[3] & 0x0F or reply[6:8] == b"\x00\x00":
        return None
    i = reply.rfind(b"\x00\x01\x00\x01")  # type A, class IN of the last record
    return socket.inet_ntoa(reply[-4:]) if i > 0 else None


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
    """``mcdns serve ARGS`` on a free port; waits until it answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mcdns", "serve", *args, "--listen",
                             f"127.0.0.1:{port}"], cwd=ROOT, env=env,
                            stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mcdns {' '.join(args)} exited with {proc.returncode}")
        reply = query(port, SERVE, timeout=0.3)
        if reply is not None and reply[3] & 0x0F != 2:  # answering, and not SERVFAIL
            return proc, port
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError("mcdns did not answer in time")


class API:
    """The test API server in a thread of its own, loaded with the demo cluster."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.api = FakeKubeAPI()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.call(self.api.start())
        for obj in yaml.safe_load(DEMO_STATE.read_text())["items"]:
            self.api.apply(obj)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def requests(self) -> int:
        return len(self.api.calls)

    def close(self) -> None:
        self.call(self.api.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)


def sidecar_args(tmp: Path, role: str, stub_port: int, knot: Knot, kubeconfig: Path) -> list[str]:
    """The ConfigMap of the example, with this machine's addresses."""
    example = "deployment.yaml" if role == "forwarder" else "watching-resolver.yaml"
    docs = yaml.safe_load_all((ROOT / "config" / "sidecar" / example).read_text())
    configmap = next(d for d in docs if d and d["kind"] == "ConfigMap")
    cfg = yaml.safe_load(configmap["data"]["mcdns.yaml"])
    cfg.pop("listen")
    cfg["upstreams"] = [knot.address]
    cfg["search"] = ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    if role == "forwarder":
        cfg["cluster_upstreams"] = [f"127.0.0.1:{stub_port}"]
    else:
        cfg["kubeconfig"] = str(kubeconfig)
        cfg["http"] = "127.0.0.1:0"
    path = tmp / f"{role}.yaml"
    path.write_text(json.dumps(cfg))
    return ["--config", str(path)]


def costs(tmp: Path, knot: Knot, starts: int) -> dict[str, Any]:
    """API requests and VmRSS of each sidecar kind."""
    api = API()
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(api.api.kubeconfig())
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBERNETES_SERVICE_HOST": "127.0.0.1",
           "KUBERNETES_SERVICE_PORT": str(api.api.port)}
    stub, stub_port = start(["--state", str(DEMO_STATE), "--http", ""])
    out: dict[str, Any] = {}
    try:
        for role in ("forwarder", "resolver"):
            rss, requests = [], []
            for _ in range(starts):
                before = api.requests()
                proc, port = start(sidecar_args(tmp, role, stub_port, knot, kubeconfig), env)
                try:
                    for _ in range(3):
                        for name in MIX:
                            for qtype in (1, 28):
                                query(port, name, qtype)
                    time.sleep(0.5)
                    rss.append(rss_kib(proc.pid))
                finally:
                    stop_process(proc)
                requests.append(api.requests() - before)
            out[role] = {"vmrss_mib": [round(r / 1024, 1) for r in rss],
                         "vmrss_mib_median": round(statistics.median(rss) / 1024, 1),
                         "api_requests": requests}
    finally:
        stop_process(stub)
        api.close()
    return out


def write_state(path: Path, local_ready: bool) -> None:
    text = DEMO_STATE.read_text()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text.replace(DOWN, UP) if local_ready else text)
    tmp.replace(path)


def follow(tmp: Path, knot: Knot, rounds: int, ttl: int) -> dict[str, Any]:
    """Follow times (s) of the forwarder after the stub switched, both directions."""
    state = tmp / "state.yaml"
    write_state(state, local_ready=True)
    stub, stub_port = start(["--state", str(state), "--http", "", "--ttl", str(ttl),
                             "--failback-delay", "0"])
    fwd, fwd_port = start(["--role", "forwarder", "--cluster-upstream",
                           f"127.0.0.1:{stub_port}", "--upstream", knot.address, "--http", ""])
    times: list[float] = []
    try:
        ready = True
        for _ in range(rounds * 2):
            want = IMPORT_IP if ready else LOCAL_IP
            # the forwarder fetched the answer when it saw the last switch: vary the age
            # of its cached answer at the next one, from fresh (the worst case, a whole
            # TTL to wait) to expired (the next query fetches the new answer)
            time.sleep(ttl * PHASES[len(times) % len(PHASES)])
            ready = not ready
            write_state(state, local_ready=ready)
            t_stub = t_fwd = 0.0
            deadline = time.monotonic() + ttl + 5
            while time.monotonic() < deadline and not t_fwd:
                now = time.monotonic()
                if not t_stub and first_a(query(stub_port, SERVE)) == want:
                    t_stub = now
                if first_a(query(fwd_port, SERVE)) == want:
                    t_fwd = now
                time.sleep(0.005)
            if not (t_stub and t_fwd):
                raise RuntimeError("no switch seen")
            times.append(round(t_fwd - t_stub, 3))
    finally:
        stop_process(fwd)
        stop_process(stub)
    return {"ttl": ttl, "follow_s": times, "max_s": max(times),
            "bound_s": ttl + 0.1, "met": max(times) <= ttl + 0.1}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=3, help="starts per sidecar kind (memory)")
    ap.add_argument("--rounds", type=int, default=5, help="failovers (and failbacks) timed")
    ap.add_argument("--ttl", type=int, nargs="+", default=[5, 1], help="stub answer TTLs")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    with Knot() as knot, tempfile.TemporaryDirectory(prefix="mcdns-sidecar-") as tmpdir:
        tmp = Path(tmpdir)
        result: dict[str, Any] = {"costs": costs(tmp, knot, args.starts),
                                  "follow": [follow(tmp, knot, args.rounds, t) for t in args.ttl]}
    for role, c in result["costs"].items():
        print(f"{role:9} API requests per start: {c['api_requests']}  VmRSS MiB: "
              f"{c['vmrss_mib']} (median {c['vmrss_mib_median']})")
    for f in result["follow"]:
        print(f"failover follow, stub TTL {f['ttl']} s: {f['follow_s']} s; max {f['max_s']} s, "
              f"bound {f['bound_s']} s: {'met' if f['met'] else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
