"""What counting costs: mcdns with metrics on against metrics off, same harness, one run.

Issue 5's bar: with metrics on, throughput is at least 0.9x of metrics off. Both variants
serve the same generated cluster, pinned and capped like ``bench.run``; runs alternate and
the medians are compared. ``python -m bench.metrics_overhead`` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench import dnsperf, gen
from bench.servers import Data, mcdns_command, start

RESULTS = Path(__file__).resolve().parent / "results" / "metrics_overhead.json"
MIXES = {"mix1": False, "mix2": True}  # EDNS per mix, as in bench.run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mcdns-metrics-"))
    files = gen.write(work / "data", a.services)
    meta = json.loads(files.meta.read_text())
    data = Data(files.state, files.zone, meta["probe"])
    variants = {"metrics on": mcdns_command([]), "metrics off": mcdns_command(["--no-metrics"])}
    qps: dict[str, dict[str, list[float]]] = {v: {m: [] for m in MIXES} for v in variants}
    for run in range(a.runs):
        for name, cmd in variants.items():
            srv = start("mcdns", cmd, data, work / f"{name.replace(' ', '-')}-{run}")
            try:
                for mix, edns in MIXES.items():
                    queries = files.mix1 if mix == "mix1" else files.mix2
                    r = dnsperf.run(name, srv.port, mix, queries, a.seconds, edns)
                    qps[name][mix].append(r.qps)
                    print(f"run {run + 1} {name:11} {mix}: {r.qps:9,.0f} q/s", flush=True)
            finally:
                srv.stop()
    summary = {mix: {name: statistics.median(qps[name][mix]) for name in variants}
               for mix in MIXES}
    for mix, s in summary.items():
        s["ratio"] = s["metrics on"] / s["metrics off"]
        print(f"{mix}: on {s['metrics on']:,.0f} / off {s['metrics off']:,.0f} q/s "
              f"= {s['ratio']:.3f} (goal >= 0.9)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                   "services": a.services, "runs": qps, "summary": summary},
                                  indent=2))


if __name__ == "__main__":
    main()
