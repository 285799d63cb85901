"""Autopath with a real client: glibc's resolver looking up an external name, both ways.

A pod in namespace ``default`` has ``search default.svc.cluster.local svc.cluster.local
cluster.local`` and ``ndots:5`` in its resolv.conf, so ``www.example.test`` (two dots) is
first asked with each search domain and only then as itself: four steps, each an A and
an AAAA query. With ``autopath: true`` mcdns answers the first step with a CNAME to
``www.example.test.`` and its addresses, and the client stops there.

The script re-runs itself in a network and mount namespace of its own (``unshare``, so
root): loopback up, a resolv.conf as above bind-mounted over /etc/resolv.conf, Knot
(tests/knot.py) serving ``example.test`` on loopback, and mcdns (``--role resolver`` on
the demo state, Knot as upstream) on 127.0.0.1:53, where glibc looks. For each mode
(autopath off, on) it starts a fresh mcdns, then:

- runs ``getent ahosts www.example.test`` once (a cold cache: the real client, its exit
  status and addresses) and counts the queries mcdns received, by type, from /metrics
  (``mcdns_dns_requests_total``);
- times ``getaddrinfo`` (glibc, in this process) ``--lookups`` times on the warm cache.

    sudo .venv/bin/python bench/autopath_bench.py [--rounds 3] [--lookups 200] [--json F|-]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from knot import ZONE, Knot  # noqa: E402

NAME = f"www.{ZONE}"
SEARCH = "default.svc.cluster.local svc.cluster.local cluster.local"
RESOLV_CONF = f"nameserver 127.0.0.1\nsearch {SEARCH}\noptions ndots:5\n"
DEMO_STATE = ROOT / "config" / "demo-state.yaml"
HTTP = "127.0.0.1:9153"
INSIDE = "MCDNS_AUTOPATH_BENCH_INSIDE"


def start_mcdns(tmp: Path, knot: Knot, autopath: bool) -> subprocess.Popen[bytes]:
    conf = tmp / f"mcdns-{int(autopath)}.yaml"
    conf.write_text(json.dumps({
        "role": "resolver", "listen": ["127.0.0.1:53"], "http": HTTP,
        "state": str(DEMO_STATE), "upstreams": [knot.address], "autopath": autopath,
        "search": SEARCH.split(), "log_level": "warning"}))
    proc = subprocess.Popen([sys.executable, "-m", "mcdns", "serve", "--config", str(conf)],
                            cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mcdns exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HTTP}/ready", timeout=0.5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mcdns did not get ready")


def requests_by_type() -> dict[str, int]:
    """mcdns_dns_requests_total summed by its ``type`` label."""
    with urllib.request.urlopen(f"http://{HTTP}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("mcdns_dns_requests_total{"):
            m = re.search(r'type="([^"]*)"', line)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


def one_mode(tmp: Path, knot: Knot, autopath: bool, lookups: int) -> dict[str, object]:
    proc = start_mcdns(tmp, knot, autopath)
    try:
        before = requests_by_type()
        t0 = time.perf_counter()
        done = subprocess.run(["getent", "ahosts", NAME], capture_output=True, text=True,
                              timeout=30)
        cold = time.perf_counter() - t0
        time.sleep(0.2)  # the last answers are counted when sent
        after = requests_by_type()
        queries = {t: n - before.get(t, 0) for t, n in sorted(after.items())
                   if n - before.get(t, 0)}
        addresses = sorted({line.split()[0] for line in done.stdout.splitlines()})
        warm = []
        for _ in range(lookups):
            t0 = time.perf_counter()
            socket.getaddrinfo(NAME, 80, type=socket.SOCK_STREAM)
            warm.append(time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(15)
    return {"getent_status": done.returncode, "addresses": addresses, "queries": queries,
            "cold_getent_ms": round(cold * 1000, 3),
            "warm_getaddrinfo_ms_median": round(statistics.median(warm) * 1000, 3),
            "warm_getaddrinfo_ms_p90": round(sorted(warm)[int(len(warm) * 0.9)] * 1000, 3)}


def inside(args: argparse.Namespace) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="mcdns-autopath-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "resolv.conf").write_text(RESOLV_CONF)
        subprocess.run(["mount", "--bind", str(tmp / "resolv.conf"), "/etc/resolv.conf"],
                       check=True)
        runs: dict[str, list[dict[str, object]]] = {"off": [], "on": []}
        with Knot() as knot:
            for _ in range(args.rounds):
                for mode in ("off", "on"):
                    runs[mode].append(one_mode(tmp, knot, mode == "on", args.lookups))
    result = {mode: summary(rs) for mode, rs in runs.items()}
    result["runs"] = runs  # type: ignore[assignment]
    report(result)
    if args.json == "-":
        print(json.dumps(result))
    elif args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def summary(rs: list[dict[str, object]]) -> dict[str, object]:
    """The first run's counts and addresses (every run's must agree), median times."""
    first = rs[0]
    for r in rs[1:]:
        if r["queries"] != first["queries"] or r["addresses"] != first["addresses"]:
            raise RuntimeError(f"runs disagree: {first} vs {r}")
    out = dict(first)
    for key in ("cold_getent_ms", "warm_getaddrinfo_ms_median", "warm_getaddrinfo_ms_p90"):
        out[key] = statistics.median(float(r[key]) for r in rs)  # type: ignore[arg-type]
    return out


def report(result: dict[str, object]) -> None:
    print(f"getent ahosts {NAME}, resolv.conf: search {SEARCH}, ndots:5 "
          "(glibc, mcdns --role resolver on 127.0.0.1:53, Knot upstream)", file=sys.stderr)
    print(f"{'autopath':9} {'queries to mcdns':22} {'cold getent':>12} "
          f"{'warm getaddrinfo p50/p90':>26}  addresses", file=sys.stderr)
    for mode in ("off", "on"):
        r = result[mode]
        assert isinstance(r, dict)
        q = " ".join(f"{t}={n}" for t, n in r["queries"].items())
        print(f"{mode:9} {q:22} {r['cold_getent_ms']:>9.2f} ms "
              f"{r['warm_getaddrinfo_ms_median']:>12.3f} / {r['warm_getaddrinfo_ms_p90']:.3f} ms"
              f"  {','.join(r['addresses'])}", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="fresh mcdns starts per mode")
    ap.add_argument("--lookups", type=int, default=200, help="warm getaddrinfo calls")
    ap.add_argument("--json", help="write the figures to this file ('-': stdout, last line)")
    args = ap.parse_args()
    if os.environ.get(INSIDE):
        return inside(args)
    for tool in ("unshare", "ip", "getent", "knotd", "knotc"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed", file=sys.stderr)
            return 2
    if os.geteuid() != 0:
        print("bench: needs root (a network and mount namespace)", file=sys.stderr)
        return 2
    env = {**os.environ, INSIDE: "1"}
    return subprocess.run(["unshare", "--net", "--mount", "--propagation", "private",
                           sys.executable, *sys.argv], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
