"""Run dnsperf on CPU 0 and turn its report into numbers.

Two kinds of run: *throughput* (as many queries as the server answers, 100 outstanding,
the summary's QPS and average latency) and *latency* (a fixed rate with ``-Q``, every
query's latency from ``-v`` lines, so the p99 is ours to compute: dnsperf 2.10 prints
only the average).
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CLIENT_CPU = "0"

_SUMMARY = {
    "sent": re.compile(r"Queries sent:\s+(\d+)"),
    "completed": re.compile(r"Queries completed:\s+(\d+)"),
    "lost": re.compile(r"Queries lost:\s+(\d+)"),
    "qps": re.compile(r"Queries per second:\s+([\d.]+)"),
    "avg_latency_s": re.compile(r"Average Latency \(s\):\s+([\d.]+)"),
    "run_time_s": re.compile(r"Run time \(s\):\s+([\d.]+)"),
}
_RCODES = re.compile(r"Response codes:\s+(.*)")
_VERBOSE = re.compile(r"^> (\S+) \S+ \S+ ([\d.]+)$")


@dataclass
class Result:
    """One dnsperf run against one server."""

    server: str
    mix: str
    kind: str  # "throughput" or "latency"
    seconds: float
    qps: float = 0.0
    sent: int = 0
    completed: int = 0
    lost: int = 0
    avg_latency_s: float = 0.0
    p50_latency_s: float | None = None
    p99_latency_s: float | None = None
    run_time_s: float = 0.0
    rcodes: dict[str, int] = field(default_factory=dict)
    throttled: int | None = None  # cgroup periods throttled during the run

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def command(port: int, queries: Path, seconds: float, edns: bool, rate: int | None) -> list[str]:
    argv = ["taskset", "-c", CLIENT_CPU, "dnsperf", "-s", "127.0.0.1", "-p", str(port),
            "-d", str(queries), "-l", f"{seconds:g}", "-t", "2", "-q", "100"]
    if edns:
        argv.append("-e")
    if rate is not None:
        argv += ["-Q", str(rate), "-v"]
    return argv


def parse(out: str, r: Result) -> Result:
    """Fill ``r`` from dnsperf's output (summary, and per-query lines if verbose)."""
    for key, rx in _SUMMARY.items():
        m = rx.search(out)
        if m is None:
            raise ValueError(f"dnsperf output has no {key!r}:\n{out[-1500:]}")
        setattr(r, key, type(getattr(r, key))(float(m.group(1))))
    m = _RCODES.search(out)
    if m:
        for code, count in re.findall(r"(\w+) (\d+) \(", m.group(1)):
            r.rcodes[code] = int(count)
    lat = sorted(float(m.group(2)) for m in map(_VERBOSE.match, out.splitlines()) if m)
    if lat:
        r.p50_latency_s = percentile(lat, 50)
        r.p99_latency_s = percentile(lat, 99)
    return r


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, min(len(sorted_values), math.ceil(pct / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def run(server: str, port: int, mix: str, queries: Path, seconds: float, edns: bool,
        rate: int | None = None) -> Result:
    argv = command(port, queries, seconds, edns, rate)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stderr[-1500:]}")
    kind = "throughput" if rate is None else "latency"
    return parse(p.stdout, Result(server, mix, kind, seconds))
