"""What counting costs: mcdns with metrics on against metrics off, same harness, one run.

The bar: with metrics on, throughput is at least 0.9x of metrics off. Both variants serve
the same generated cluster, pinned and capped like ``bench.run``, from one snapshot of the
code; they alternate, the order swapped every run, and two figures are compared: the
medians of each, and the median of each run's own on/off ratio (the two servers of a run
are measured a minute apart at most, so a neighbour's load shared by both cancels out).
On a machine others use too, both still move with the neighbours; the server's CPU time
per answered query (utime + stime of its threads over the run, divided by the answers)
moves much less, so its ratio (off / on) is printed as well: what throughput would be
with the CPU to itself. ``python -m bench.metrics_overhead`` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench import dnsperf, gen
from bench.servers import Data, mcdns_command, snapshot_mcdns, start

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "metrics_overhead.json"
MIXES = {"mix1": False, "mix2": True}  # EDNS per mix, as in bench.run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--mcdns-from", choices=("tree", "head"), default="tree",
                    help="run a copy of the working tree (default) or of the last commit")
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mcdns-metrics-"))
    src = snapshot_mcdns(ROOT, work / "src", a.mcdns_from == "head")  # edits change nothing
    files = gen.write(work / "data", a.services)
    meta = json.loads(files.meta.read_text())
    data = Data(files.state, files.zone, meta["probe"])
    variants = {"metrics on": mcdns_command([], src),
                "metrics off": mcdns_command(["--no-metrics"], src)}
    qps: dict[str, dict[str, list[float]]] = {v: {m: [] for m in MIXES} for v in variants}
    cpu: dict[str, dict[str, list[float]]] = {v: {m: [] for m in MIXES} for v in variants}
    for run in range(a.runs):
        for name in sorted(variants, reverse=run % 2 == 1):  # on first, then off first
            cmd = variants[name]
            srv = start("mcdns", cmd, data, work / f"{name.replace(' ', '-')}-{run}")
            try:
                for mix, edns in MIXES.items():
                    queries = files.mix1 if mix == "mix1" else files.mix2
                    used = cpu_seconds(srv.pid)
                    r = dnsperf.run(name, srv.port, mix, queries, a.seconds, edns)
                    us = (cpu_seconds(srv.pid) - used) / max(r.completed, 1) * 1e6
                    qps[name][mix].append(r.qps)
                    cpu[name][mix].append(us)
                    print(f"run {run + 1} {name:11} {mix}: {r.qps:9,.0f} q/s, {us:5.2f} us "
                          "CPU a query", flush=True)
            finally:
                srv.stop()
    summary = {mix: {name: statistics.median(qps[name][mix]) for name in variants}
               for mix in MIXES}
    for mix, s in summary.items():
        s["ratio"] = s["metrics on"] / s["metrics off"]
        s["paired ratio"] = statistics.median(
            on / off for on, off in zip(qps["metrics on"][mix], qps["metrics off"][mix],
                                        strict=True))
        s["cpu us on"], s["cpu us off"] = (statistics.median(cpu[v][mix]) for v in
                                           ("metrics on", "metrics off"))
        s["cpu ratio"] = s["cpu us off"] / s["cpu us on"]
        print(f"{mix}: on {s['metrics on']:,.0f} / off {s['metrics off']:,.0f} q/s "
              f"= {s['ratio']:.3f}, paired {s['paired ratio']:.3f}; CPU a query off "
              f"{s['cpu us off']:.2f} / on {s['cpu us on']:.2f} us = {s['cpu ratio']:.3f} "
              "(goal >= 0.9)")
    a.results.parent.mkdir(exist_ok=True)
    a.results.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                     "mcdns": a.mcdns_from, "services": a.services,
                                     "runs": qps, "cpu_us_per_query": cpu,
                                     "summary": summary}, indent=2))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of ``pid`` so far."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{task}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
