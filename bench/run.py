"""The benchmark: mcdns against Knot DNS and a naive dnslib server.

One command runs everything in order: generate the data (``bench.gen``), measure each
server's memory at 1,000 and 10,000 services, then throughput runs (alternating servers,
the median of ``--runs``) and fixed-rate latency runs for both query mixes, and write
``bench/results/`` (results.json, results.md, chart.png) and the README section
``bench/results/performance.md`` (paste it into the README). It installs nothing:
missing tools are named with the
apt line that provides them.

Usage: ``.venv/bin/python -m bench.run`` (about 6 minutes) or ``--quick`` (about 2).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import dnsperf, gen, report
from bench.servers import (
    CommandFn,
    Data,
    Running,
    dnslib_command,
    knot_command,
    mcdns_available,
    mcdns_command,
    rss_bytes,
    snapshot_mcdns,
    start,
    warn,
)

ROOT = Path(__file__).resolve().parent.parent
TOOLS = {"dnsperf": "dnsperf", "knotd": "knot", "taskset": "util-linux"}
MIX_EDNS = {"mix1": False, "mix2": True}


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def check_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pkgs = " ".join(sorted({TOOLS[t] for t in missing}))
        sys.exit(f"bench: missing {', '.join(missing)}; install with:\n"
                 f"  sudo apt-get install -y {pkgs}")
    if (os.cpu_count() or 1) < 2:
        warn("fewer than 2 CPUs: dnsperf and the server share one")


def commands(names: list[str], mcdns_args: list[str], src: Path | None
             ) -> dict[str, CommandFn]:
    table: dict[str, CommandFn] = {"mcdns": mcdns_command(mcdns_args, src),
                                   "knot": knot_command, "dnslib": dnslib_command}
    return {n: table[n] for n in names}


def generate(work: Path, sizes: list[int]) -> tuple[dict[int, Data], dict[int, gen.Files]]:
    data, files = {}, {}
    for n in sorted(set(sizes)):
        t = time.monotonic()
        f = gen.write(work / "data", n)
        meta = json.loads(f.meta.read_text())
        data[n], files[n] = Data(f.state, f.zone, meta["probe"]), f
        log(f"generated {n:,} services ({meta['served_names']:,} names) "
            f"in {time.monotonic() - t:.1f} s")
    return data, files


def measure_memory(cmds: dict[str, CommandFn], data: dict[int, Data], sizes: list[int],
                   work: Path, runs: int) -> tuple[dict[str, dict[str, int]],
                                                   dict[str, dict[str, list[int]]]]:
    """RSS of each server once it answers, per data size (uncapped, one at a time):
    ``runs`` starts per size, sizes alternating; returns (medians, every sample). A
    Python server's RSS after a load moves by a few hundred KiB from start to start
    (how its heap fragments), so one start is not a figure."""
    samples: dict[str, dict[str, list[int]]] = {}
    for name, cmd in cmds.items():
        for run in range(runs):
            for n in sizes:
                t = time.monotonic()
                srv = start(name, cmd, data[n], work / f"{name}-rss-{n}-{run}", cap=False)
                try:
                    time.sleep(0.5)
                    rss = rss_bytes(srv.pid)
                finally:
                    srv.stop()
                samples.setdefault(name, {}).setdefault(str(n), []).append(rss)
                log(f"{name} with {n:,} services: RSS {rss / 2**20:.1f} MiB, "
                    f"ready in {time.monotonic() - t:.1f} s")
    medians = {name: {n: int(statistics.median(v)) for n, v in by_size.items()}
               for name, by_size in samples.items()}
    return medians, samples


def one_run(srv: Running, mix: str, queries: Path, seconds: float,
            rate: int | None) -> dict[str, Any]:
    before = srv.cap.throttled()
    r = dnsperf.run(srv.name, srv.port, mix, queries, seconds, MIX_EDNS[mix], rate)
    after = srv.cap.throttled()
    r.throttled = None if before is None or after is None else after - before
    tail = "" if rate is None else f", p99 {(r.p99_latency_s or 0) * 1000:.3f} ms"
    log(f"{srv.name:6} {mix} {r.kind:10} {r.qps:9,.0f} q/s, avg "
        f"{r.avg_latency_s * 1000:.3f} ms{tail}, lost {r.lost}, {r.rcodes}")
    return r.as_dict()


def measure_speed(servers: list[Running], files: gen.Files, runs: int, seconds: float,
                  latency_seconds: float, rate: int) -> list[dict[str, Any]]:
    """Throughput runs (servers alternating, order rotated per round), then latency runs."""
    out: list[dict[str, Any]] = []
    mixes = {"mix1": files.mix1, "mix2": files.mix2}
    for mix, queries in mixes.items():
        for i in range(runs):
            for srv in servers[i % len(servers):] + servers[: i % len(servers)]:
                out.append(one_run(srv, mix, queries, seconds, None))
    for mix, queries in mixes.items():
        for srv in servers:
            out.append(one_run(srv, mix, queries, latency_seconds, rate))
    return out


def check_agreement(runs: list[dict[str, Any]]) -> None:
    """Warn when servers answer a mix with different rcode shares (the data differ)."""
    for mix in MIX_EDNS:
        shares: dict[str, float] = {}
        for r in runs:
            if r["mix"] == mix and r["kind"] == "throughput" and r["completed"]:
                shares.setdefault(r["server"], r["rcodes"].get("NXDOMAIN", 0) / r["completed"])
        if shares and max(shares.values()) - min(shares.values()) > 0.02:
            warn(f"{mix}: NXDOMAIN share differs between servers: {shares}")


def machine(args: argparse.Namespace, cap: str) -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    p = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True)
    dnsperf_v = re.search(r"Version (\S+)", p.stdout + p.stderr)
    knot_v = subprocess.run(["knotd", "--version"], capture_output=True, text=True).stdout
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "mcdns"],
                           capture_output=True, text=True).stdout.strip()
    if dirty and args.mcdns_from == "tree":
        commit += "+uncommitted"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "nproc": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dnsperf": dnsperf_v.group(1) if dnsperf_v else "?",
        "knot": knot_v.strip().rsplit(" ", 1)[-1],
        "commit": commit,
        "services": args.services,
        "runs": args.runs,
        "rss_runs": args.rss_runs,
        "seconds": args.seconds,
        "latency_seconds": args.latency_seconds,
        "rate": args.rate,
        "cap": cap,
        "servers": args.servers,
        "mcdns_args": args.mcdns_args,
        "mcdns_from": args.mcdns_from,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=1000, help="services for the speed runs")
    ap.add_argument("--rss-sizes", default="1000,10000", help="service counts for RSS")
    ap.add_argument("--rss-runs", type=int, default=3, help="starts per size (median)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=2000, help="queries/s of the latency runs")
    ap.add_argument("--quick", action="store_true", help="1 run of 3 s each")
    ap.add_argument("--servers", default="mcdns,knot,dnslib")
    ap.add_argument("--mcdns-args", default="", help="extra arguments for `mcdns serve`")
    ap.add_argument("--mcdns-from", choices=("tree", "head"), default="tree",
                    help="run mcdns from a copy of the working tree or of git HEAD")
    ap.add_argument("--no-cap", action="store_true", help="do not cap the server's CPU")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--readme", type=Path, default=ROOT / "bench" / "results" / "performance.md")
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--from-json", type=Path, help="only re-render a saved results.json")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args(argv)
    if a.quick:
        a.runs, a.seconds, a.latency_seconds, a.rss_runs = 1, 3.0, 3.0, 1
    a.servers = [s for s in a.servers.split(",") if s]
    unknown = set(a.servers) - set(report.SERVERS)
    if unknown:
        ap.error(f"unknown servers {sorted(unknown)}; choose from {report.SERVERS}")
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    if a.from_json:
        saved = json.loads(a.from_json.read_text())
        memory = {k: v["rss"] for k, v in saved["summary"]["memory"].items()}
        names = saved["meta"].get("served_names", {})
        write_results(a, saved["meta"], saved["runs"],
                      report.summarise(saved["runs"], memory, names))
        return
    check_tools()
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mcdns-bench-"))
    try:
        a.src = snapshot_mcdns(ROOT, work / "src", a.mcdns_from == "head")
        if "mcdns" in a.servers and (why := mcdns_available(a.src)):
            warn(f"skipping mcdns: {why}")
            a.servers.remove("mcdns")
        write_results(a, *bench(a, work))
    finally:
        if a.keep:
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log(f"done in {time.monotonic() - t0:.0f} s")


def bench(a: argparse.Namespace, work: Path
          ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    sizes = [int(s) for s in a.rss_sizes.split(",") if s]
    data, files = generate(work, [a.services, *sizes])
    cmds = commands(a.servers, a.mcdns_args.split(), a.src)
    memory, rss_samples = measure_memory(cmds, data, sizes, work, a.rss_runs)
    servers: list[Running] = []
    try:
        for name, cmd in cmds.items():
            servers.append(start(name, cmd, data[a.services], work / name, cap=not a.no_cap))
        cap = servers[0].cap.mode if servers else "none"
        runs = measure_speed(servers, files[a.services], a.runs, a.seconds,
                             a.latency_seconds, a.rate)
    finally:
        for srv in servers:
            srv.stop()
    check_agreement(runs)
    names = {str(n): json.loads(files[n].meta.read_text())["served_names"] for n in sizes}
    meta = machine(a, cap)
    meta["served_names"] = names
    meta["rss_samples"] = rss_samples
    return meta, runs, report.summarise(runs, memory, names)


def write_results(a: argparse.Namespace, meta: dict[str, Any], runs: list[dict[str, Any]],
                  summary: dict[str, Any]) -> None:
    a.out.mkdir(parents=True, exist_ok=True)
    report.write_json(a.out / "results.json", meta, runs, summary)
    (a.out / "results.md").write_text(report.table(summary))
    report.chart(a.out / "chart.png", summary, meta)
    if not a.no_readme:
        a.readme.parent.mkdir(parents=True, exist_ok=True)
        a.readme.write_text(report.readme(summary, meta))
    print(report.table(summary))
    log(f"results in {a.out}")


if __name__ == "__main__":
    main()
