"""Soak: mcdns under steady DNS load while the API server misbehaves, for a bounded time.

mcdns runs as a real process (``mcdns serve --kubeconfig``) against the test API server
(tests/kubeapi.py) in this process; dnsperf sends a steady query load. Meanwhile services
flap between healthy and not, watches are cut every few seconds and the history is
compacted so watches get 410 Gone. At the end every answer must match the API server's
final state, no query may have got SERVFAIL after the first sync, and RSS must have grown
less than 5% after warm-up.

``python -m tests.soak --seconds 600`` (``make soak``); CI runs a 60-second pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import start_mcdns
from kubeapi import (
    FakeKubeAPI,
    endpointslice,
    namespace,
    service,
    serviceimport,
)

SERVICES = 50


@dataclass
class SoakResult:
    seconds: float
    queries: int = 0
    servfail: int = 0
    lost: int = 0
    qps: float = 0.0
    flaps: int = 0
    watch_cuts: int = 0
    compactions: int = 0
    rss_warm_kb: int = 0
    rss_end_kb: int = 0
    mismatches: list[str] = field(default_factory=list)

    @property
    def rss_growth(self) -> float:
        return (self.rss_end_kb - self.rss_warm_kb) / max(1, self.rss_warm_kb)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.servfail == 0 and self.rss_growth < 0.05


def _drain(proc: subprocess.Popen[str]) -> None:
    """Read mcdns's log to the end so a full pipe never blocks it."""
    if proc.stderr is not None:
        for _line in proc.stderr:
            pass


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _local_ip(i: int) -> str:
    return f"10.96.1.{i + 1}"


def _import_ip(i: int) -> str:
    return f"10.13.1.{i + 1}"


def _slice(i: int, ready: bool) -> dict[str, object]:
    return endpointslice(f"svc{i}-abc", f"svc{i}", [f"10.244.1.{i + 1}"], ready=ready)


async def _expected_mismatches(api: FakeKubeAPI, port: int) -> list[str]:
    out = []
    for i in range(SERVICES):
        ready = api.objects["endpointslices"][("default", f"svc{i}-abc")]["endpoints"][0][
            "conditions"]["ready"]
        want = _local_ip(i) if ready else _import_ip(i)
        q = dns.message.make_query(f"svc{i}.default.svc.cluster.local.", "A")
        reply = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)
        got = [rd.to_text() for rrset in reply.answer for rd in rrset]
        if got != [want]:
            out.append(f"svc{i}: got {got} want {want}")
    return out


def _dnsperf(port: int, seconds: float, workdir: Path, rate: int) -> subprocess.Popen[str]:
    names = workdir / "queries.txt"
    names.write_text("".join(f"svc{i}.default.svc.cluster.local A\n" for i in range(SERVICES)))
    return subprocess.Popen(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(names),
                             "-l", str(int(seconds)), "-Q", str(rate), "-c", "4", "-t", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _parse_dnsperf(text: str, result: SoakResult) -> None:
    if m := re.search(r"Queries completed:\s+(\d+)", text):
        result.queries = int(m.group(1))
    if m := re.search(r"Queries lost:\s+(\d+)", text):
        result.lost = int(m.group(1))
    if m := re.search(r"Queries per second:\s+([\d.]+)", text):
        result.qps = float(m.group(1))
    if m := re.search(r"SERVFAIL (\d+)", text):
        result.servfail = int(m.group(1))


async def soak(seconds: float, rate: int = 2000, seed: int = 1) -> SoakResult:
    """Run one soak for ``seconds`` and return what it measured."""
    if shutil.which("dnsperf") is None:
        raise RuntimeError("dnsperf is not installed (apt-get install dnsperf)")
    rnd = random.Random(seed)
    result = SoakResult(seconds)
    api = FakeKubeAPI()
    api.apply(namespace("default"))
    for i in range(SERVICES):
        api.apply(service(f"svc{i}", _local_ip(i)))
        api.apply(_slice(i, ready=True))
        api.apply(serviceimport(f"svc{i}", [_import_ip(i)]))
    await api.start()
    workdir = Path(tempfile.mkdtemp(prefix="mcdns-soak-"))
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    proc, dns_port, http = start_mcdns("--kubeconfig", str(kubeconfig), "--http",
                                       "127.0.0.1:0")
    assert http is not None
    drain = asyncio.get_running_loop().run_in_executor(None, _drain, proc)
    try:
        await _wait_ready(http, proc)
        perf = _dnsperf(dns_port, seconds, workdir, rate)
        start = time.monotonic()
        warm_at = start + min(10.0, seconds / 6)
        next_cut, next_compact = start + 3, start + 7
        while time.monotonic() - start < seconds:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            i = rnd.randrange(SERVICES)
            ready = bool(rnd.getrandbits(1))
            api.apply(_slice(i, ready))
            result.flaps += 1
            if now >= next_cut:
                api.cut_watches()
                result.watch_cuts += 1
                next_cut = now + 3
            if now >= next_compact:
                api.compact()
                api.expire_watches()
                result.compactions += 1
                next_compact = now + 7
            if not result.rss_warm_kb and now >= warm_at:
                result.rss_warm_kb = _rss_kb(proc.pid)
        out, _ = await asyncio.get_running_loop().run_in_executor(None, perf.communicate)
        _parse_dnsperf(out, result)
        await asyncio.sleep(1.0)  # the last flaps reach the answers
        result.mismatches = await _expected_mismatches(api, dns_port)
        result.rss_end_kb = _rss_kb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        await drain
        await api.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


async def _wait_ready(http_port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("mcdns exited during start-up")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
            writer.write(b"GET /ready HTTP/1.0\r\n\r\n")
            status = await reader.readline()
            writer.close()
            if b" 200 " in status:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("mcdns did not become ready")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--rate", type=int, default=2000, help="dnsperf queries per second")
    args = ap.parse_args()
    result = asyncio.run(soak(args.seconds, args.rate))
    print(json.dumps({**asdict(result), "rss_growth": round(result.rss_growth, 4),
                      "ok": result.ok}, indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
