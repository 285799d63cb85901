"""Cached-answer throughput: mcdns's resolver role next to Unbound, same upstream, same run.

The goal is 0.9x Unbound's cached-answer throughput on one core (issue 4 asked for 0.5x). Both
servers forward to the same Knot (tests/knot.py, on loopback), both are primed with
every name of the query file, then dnsperf replays the file against each in turn
(``--rounds N`` alternates N times and reports the median run: the machine's load
changes between runs, and alternating spreads that over both servers). Servers
are pinned to CPU 1 and dnsperf to CPU 0 (``taskset``), Unbound runs one thread and mcdns
one process, so the figures compare one core with one core.

mcdns is started as ``mcdns serve --role resolver --listen ... --upstream ...``; if that
CLI does not forward yet (it answers REFUSED), the script runs the real ``App`` with a
``Resolver`` plugged in, under uvloop, in a child process instead, and says so.

``--baseline DIR`` adds a third server, mcdns from another source tree (say ``git archive``
of an older commit unpacked in DIR), so a change is measured against its predecessor in
the same run; ``--no-metrics`` runs both mcdns without query-path counting. Each round's
ratio is also printed: the median ratio is steadier than the ratio of medians when the
machine's load moves.

    .venv/bin/python bench/resolver_bench.py [--seconds 5] [--rounds 3] [--edns]
        [--baseline DIR] [--no-metrics] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))  # run as a script: the bench package too

from knot import ZONE, Knot, free_port  # noqa: E402

from bench.servers import stop_process  # noqa: E402

SERVER_CPU = "1"
CLIENT_CPU = "0"
NAMES = ["www", "alias", "ns"] + [f"n{i}" for i in range(200)]

UNBOUND_CONF = """server:
    num-threads: 1
    interface: 127.0.0.1@{port}
    port: {port}
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    module-config: "iterator"
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    local-zone: "test." nodefault
    domain-insecure: "test."
    qname-minimisation: no
    so-reuseport: no
    prefetch: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{upstream}
"""

DEMO_STATE = Path(__file__).resolve().parent.parent / "config" / "demo-state.yaml"


@dataclass
class Figure:
    server: str
    how: str
    qps: float
    completed: int
    lost: int
    avg_latency_ms: float


def pinned(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if shutil.which("taskset") else argv


def ask(port: int, name: str, timeout: float = 1.0) -> int | None:
    """Send one A query; return the reply's rcode (None: no reply)."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    query = bytes.fromhex("beef01000001000000000000") + qname + b"\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(query, ("127.0.0.1", port))
            reply = s.recv(4096)
        except OSError:
            return None
    return reply[3] & 0x0F


def wait_answering(port: int, proc: subprocess.Popen[bytes], seconds: float = 15.0) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        rcode = ask(port, f"www.{ZONE}", 0.3)
        if rcode is not None:
            return rcode
    raise RuntimeError("server did not answer in time")


def start_unbound(tmp: Path, upstream: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / "unbound.conf"
    conf.write_text(UNBOUND_CONF.format(port=port, dir=tmp, upstream=upstream))
    proc = subprocess.Popen(pinned(SERVER_CPU, ["unbound", "-d", "-c", str(conf)]))
    if wait_answering(port, proc) != 0:
        raise RuntimeError("unbound does not resolve the test zone")
    return proc, port


def start_mcdns(upstream: int, src: str | None = None, metrics: bool = True
                ) -> tuple[subprocess.Popen[bytes], int, str]:
    """``mcdns serve --role resolver``, from the source tree ``src`` when given."""
    port = free_port()
    argv = [sys.executable, "-m", "mcdns", "serve", "--role", "resolver", "--listen",
            f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream}", "--state",
            str(DEMO_STATE), "--http", ""]
    if not metrics:
        argv.append("--no-metrics")
    env = {**os.environ, "PYTHONPATH": src} if src else None
    proc = subprocess.Popen(pinned(SERVER_CPU, argv), stderr=subprocess.DEVNULL, env=env,
                            cwd=src or ROOT)
    if wait_answering(port, proc) != 0:
        raise RuntimeError("mcdns does not resolve the test zone")
    how = f"mcdns serve --role resolver (metrics {'on' if metrics else 'off'})"
    return proc, port, how + (f", source {src}" if src else "")


def prime(port: int) -> None:
    for name in NAMES:
        if ask(port, f"{name}.{ZONE}", 2.0) != 0:
            raise RuntimeError(f"priming {name}.{ZONE} failed")


def dnsperf(port: int, queries: Path, seconds: float, edns: bool) -> tuple[float, int, int, float]:
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
            "-l", f"{seconds:g}", "-q", "100", "-t", "2"]
    if edns:
        argv.append("-e")
    out = subprocess.run(pinned(CLIENT_CPU, argv), capture_output=True, text=True,
                         timeout=seconds + 30, check=True).stdout

    def grab(label: str) -> float:
        m = re.search(label + r":\s+([\d.]+)", out)
        if m is None:
            raise RuntimeError(f"dnsperf printed no {label!r}:\n{out}")
        return float(m.group(1))

    return (grab("Queries per second"), int(grab("Queries completed")),
            int(grab("Queries lost")), grab(r"Average Latency \(s\)") * 1000)


def median_run(rs: list[tuple[float, int, int, float]]) -> tuple[float, int, int, float]:
    """The run with the median QPS."""
    return sorted(rs)[len(rs) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="dnsperf run per server")
    ap.add_argument("--edns", action="store_true", help="queries with EDNS0 (dnsperf -e)")
    ap.add_argument("--rounds", type=int, default=1, help="alternating runs per server")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--baseline", help="also run mcdns from this source tree")
    ap.add_argument("--no-metrics", action="store_true", help="mcdns with --no-metrics")
    args = ap.parse_args()
    for tool in ("knotd", "knotc", "unbound", "dnsperf"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed", file=sys.stderr)
            return 2
    names = ["unbound", "mcdns"] + (["baseline"] if args.baseline else [])
    runs: dict[str, list[tuple[float, int, int, float]]] = {n: [] for n in names}
    hows = {"unbound": "1 thread, forwarding"}
    with Knot() as knot, tempfile.TemporaryDirectory(prefix="mcdns-rbench-") as tmpdir:
        tmp = Path(tmpdir)
        queries = tmp / "queries.txt"
        queries.write_text("".join(f"{n}.{ZONE} A\n" for n in NAMES))
        ub, ub_port = start_unbound(tmp, knot.port)
        procs: list[subprocess.Popen[bytes]] = [ub]
        try:
            md, md_port, hows["mcdns"] = start_mcdns(knot.port, metrics=not args.no_metrics)
            procs.append(md)
            ports = {"unbound": ub_port, "mcdns": md_port}
            if args.baseline:
                bl, ports["baseline"], hows["baseline"] = start_mcdns(
                    knot.port, str(Path(args.baseline).resolve()), not args.no_metrics)
                procs.append(bl)
            for port in ports.values():
                prime(port)
            upstream_before = knot.queries()
            for _ in range(args.rounds):  # alternate, so a change in machine load hits both
                for server, port in ports.items():
                    runs[server].append(dnsperf(port, queries, args.seconds, args.edns))
            upstream_during = knot.queries() - upstream_before
        finally:
            for proc in procs:
                stop_process(proc)
    figures = [Figure(server, hows[server], *median_run(rs)) for server, rs in runs.items()]
    ratio = figures[1].qps / figures[0].qps if figures[0].qps else 0.0
    per_round = {n: [r[0] / u[0] for r, u in zip(runs[n], runs["unbound"], strict=True)]
                 for n in names[1:]}
    print(f"cached-answer throughput, {len(NAMES)} names, median of {args.rounds} "
          f"alternating run(s) of {args.seconds:g}s per server, "
          f"EDNS {'on' if args.edns else 'off'}, servers on CPU {SERVER_CPU}, "
          f"dnsperf on CPU {CLIENT_CPU} ({os.cpu_count()} CPUs)")
    print(f"{'server':8} {'QPS':>10} {'completed':>10} {'lost':>6} {'avg ms':>8}  how")
    for f in figures:
        print(f"{f.server:8} {f.qps:10.0f} {f.completed:10d} {f.lost:6d} "
              f"{f.avg_latency_ms:8.3f}  {f.how}")
    for server, rs in runs.items():
        print(f"{server} runs (QPS): " + ", ".join(f"{r[0]:.0f}" for r in rs))
    for n, ratios in per_round.items():
        print(f"{n}/unbound per round: " + ", ".join(f"{r:.2f}" for r in ratios)
              + f" (median {sorted(ratios)[len(ratios) // 2]:.2f})")
    print(f"ratio mcdns/unbound = {ratio:.2f} (goal >= 0.9); "
          f"upstream queries during the runs: {upstream_during}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"figures": [asdict(f) for f in figures], "ratio": ratio,
             "seconds": args.seconds, "edns": args.edns,
             "rounds": args.rounds, "per_round_ratios": per_round,
             "runs": runs, "upstream_queries_during_runs": upstream_during}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
