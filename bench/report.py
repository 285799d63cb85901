"""Summarise benchmark runs: medians, ratios, goals, and the files people read.

Pure functions from the list of runs to a summary dict, then writers for the JSON of
every run, the Markdown table, the PNG chart and the README's "Performance" section, so
the numbers in all four come from one computation.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

SERVERS = ("mcdns", "knot", "dnslib")
LABELS = {"mcdns": "mcdns", "knot": "Knot DNS", "dnslib": "dnslib DNSServer"}
MIXES = {"mix1": "1: A, existing names", "mix2": "2: pod mix (ndots:5, AAAA, SRV, EDNS)"}
PERIOD_US = 100_000  # cgroup CPU period (bench.servers)
GOALS = {"mix1_vs_knot": 0.7, "mix1_vs_dnslib": 25.0, "mix2_vs_knot": 0.6,
         "latency_ms": 0.15, "rss_per_name_b": 1024.0}


def summarise(runs: list[dict[str, Any]], memory: dict[str, dict[str, int]],
              names: dict[str, int]) -> dict[str, Any]:
    """Medians per (mix, server), ratios, memory growth and goal verdicts."""
    out: dict[str, Any] = {"mixes": {}, "memory": {}, "goals": []}
    for mix in MIXES:
        rows: dict[str, dict[str, Any]] = {}
        for srv in SERVERS:
            tp = [r for r in runs if r["mix"] == mix and r["server"] == srv
                  and r["kind"] == "throughput"]
            lat = [r for r in runs if r["mix"] == mix and r["server"] == srv
                   and r["kind"] == "latency"]
            if tp:
                rows[srv] = _row(tp, lat)
        for row in rows.values():
            for ref in ("knot", "dnslib"):
                base = rows.get(ref, {}).get("qps")
                row[f"vs_{ref}"] = row["qps"] / base if base else None
        out["mixes"][mix] = rows
    sizes = sorted(names, key=int)
    lo, hi = (sizes[0], sizes[-1]) if sizes else ("", "")
    growth = names[hi] - names[lo] if len(sizes) > 1 else 0
    out["memory_sizes"] = sizes
    for srv, rss in memory.items():
        per = (rss[hi] - rss[lo]) / growth if growth and {lo, hi} <= rss.keys() else None
        out["memory"][srv] = {"rss": rss, "per_name_b": per}
    out["goals"] = goals(out)
    return out


def _row(tp: list[dict[str, Any]], lat: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "qps": statistics.median(r["qps"] for r in tp),
        "qps_runs": [round(r["qps"]) for r in tp],
        "load_avg_ms": statistics.median(r["avg_latency_s"] for r in tp) * 1000,
    }
    capped = [100 * r["throttled"] / (r["seconds"] * 1e6 / PERIOD_US) for r in tp
              if r.get("throttled") is not None]
    row["capped_pct"] = min(100.0, statistics.median(capped)) if capped else None
    if lat:
        row["lat_qps"] = statistics.median(r["qps"] for r in lat)
        row["lat_avg_ms"] = statistics.median(r["avg_latency_s"] for r in lat) * 1000
        p99 = [r["p99_latency_s"] for r in lat if r["p99_latency_s"] is not None]
        row["lat_p99_ms"] = statistics.median(p99) * 1000 if p99 else None
    return row


def goals(s: dict[str, Any]) -> list[dict[str, Any]]:
    """Each benchmark goal with mcdns's figure and whether it is met (None: not measured)."""
    m1 = s["mixes"].get("mix1", {}).get("mcdns", {})
    m2 = s["mixes"].get("mix2", {}).get("mcdns", {})
    lat = [m.get("lat_avg_ms") for m in (m1, m2) if m.get("lat_avg_ms") is not None]
    rows = [
        ("mix 1 QPS vs Knot", ">=", GOALS["mix1_vs_knot"], m1.get("vs_knot"), "x"),
        ("mix 1 QPS vs dnslib", ">=", GOALS["mix1_vs_dnslib"], m1.get("vs_dnslib"), "x"),
        ("mix 2 QPS vs Knot", ">=", GOALS["mix2_vs_knot"], m2.get("vs_knot"), "x"),
        ("avg latency at 2,000 q/s (worse mix)", "<=", GOALS["latency_ms"],
         max(lat) if lat else None, " ms"),
        ("RSS growth per served name", "<=", GOALS["rss_per_name_b"],
         s["memory"].get("mcdns", {}).get("per_name_b"), " B"),
    ]
    out = []
    for name, op, target, value, unit in rows:
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        out.append({"goal": name, "op": op, "target": target, "value": value, "unit": unit,
                    "met": met})
    return out


# --- text --------------------------------------------------------------------------------


def _f(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def table(s: dict[str, Any]) -> str:
    """Markdown tables: throughput and latency, memory, goals."""
    lines = [
        "| mix | server | QPS (median) | runs | capped | vs Knot | vs dnslib "
        "| avg ms under load | avg ms @2k q/s | p99 ms @2k q/s |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mix, rows in s["mixes"].items():
        for srv, r in rows.items():
            note = "" if r.get("lat_qps", 2000) >= 1900 else f" (only {r['lat_qps']:.0f} q/s)"
            lines.append(
                f"| {MIXES[mix]} | {LABELS[srv]} | {r['qps']:,.0f} | "
                f"{', '.join(f'{q:,}' for q in r['qps_runs'])} | "
                f"{_f(r.get('capped_pct'), '.0f')}{'%' if r.get('capped_pct') is not None else ''}"
                f" | {_f(r['vs_knot'], '.2f')} | "
                f"{_f(r['vs_dnslib'], '.1f')} | {r['load_avg_ms']:.3f} | "
                f"{_f(r.get('lat_avg_ms'), '.3f')}{note} | {_f(r.get('lat_p99_ms'), '.3f')} |")
    sizes = s.get("memory_sizes", [])
    lines += ["", "| server | " + " | ".join(f"RSS, {int(n):,} services" for n in sizes)
              + " | growth per served name |", "|---|" + "---:|" * (len(sizes) + 1)]
    for srv, m in s["memory"].items():
        rss = " | ".join(_mib(m["rss"].get(n)) for n in sizes)
        lines.append(f"| {LABELS[srv]} | {rss} | {_f(m['per_name_b'], ',.0f')} B |")
    lines += ["", "| goal | target | mcdns | met |", "|---|---:|---:|---|"]
    for g in s["goals"]:
        verdict = {True: "yes", False: "**no**", None: "not measured"}[g["met"]]
        lines.append(f"| {g['goal']} | {g['op']} {g['target']:g}{g['unit']} | "
                     f"{_f(g['value'], '.3g')}{g['unit'] if g['value'] is not None else ''} | "
                     f"{verdict} |")
    return "\n".join(lines) + "\n"


def _mib(v: int | None) -> str:
    return "—" if v is None else f"{v / 2**20:.1f} MiB"


def write_json(path: Path, meta: dict[str, Any], runs: list[dict[str, Any]],
               summary: dict[str, Any]) -> None:
    path.write_text(json.dumps({"meta": meta, "runs": runs, "summary": summary}, indent=2) + "\n")


def chart(path: Path, s: dict[str, Any], meta: dict[str, Any]) -> None:
    """Grouped bars: median QPS per mix and server (log scale: the baseline is ~50x lower)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    mixes = list(s["mixes"])
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    width = 0.8 / len(SERVERS)
    colors = {"mcdns": "#2b7bba", "knot": "#7a7a7a", "dnslib": "#e08a2c"}
    for i, srv in enumerate(SERVERS):
        xs, ys = [], []
        for j, mix in enumerate(mixes):
            row = s["mixes"][mix].get(srv)
            if row:
                xs.append(j + (i - 1) * width)
                ys.append(row["qps"])
        bars = ax.bar(xs, ys, width, label=LABELS[srv], color=colors[srv])
        ax.bar_label(bars, labels=[f"{y / 1000:.1f}k" for y in ys], fontsize=8, padding=2)
    ax.set_yscale("log")
    top = max((r["qps"] for rows in s["mixes"].values() for r in rows.values()), default=1e5)
    ax.set_ylim(300, top * 3)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y / 1000:g}k"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: ""))
    ax.set_xticks(range(len(mixes)), [f"mix {MIXES[m]}" for m in mixes], fontsize=8)
    ax.set_ylabel("queries/s (median, server capped at 50% of one core)")
    ax.set_title(f"DNS throughput, {meta['services']:,} services — {meta['date']}, "
                 f"{meta['nproc']} x {meta['cpu']}", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", ncols=len(SERVERS))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def readme(s: dict[str, Any], meta: dict[str, Any]) -> str:
    """The README's "Performance" section."""
    cap = {"v1": "a cgroup v1 CFS quota", "v2": "a cgroup v2 `cpu.max`"}.get(
        meta["cap"], "**no CPU cap (no writable cgroup)**")
    runs = f"{meta['runs']} run{'s' if meta['runs'] != 1 else ''} of {meta['seconds']:g} s"
    return f"""## Performance

mcdns answers from pre-encoded answers and parses only the question on the hot path, so
a Python process stays within reach of a C authoritative server. `make bench` measures
it side by side with [Knot DNS](https://www.knot-dns.cz/) serving the equivalent zone
and with the naive Python approach (dnslib's own `DNSServer` with a resolver), all from
the same generated cluster of {meta['services']:,} services (`bench/gen.py`: ClusterIP
and headless Services, EndpointSlices, ServiceImports; the zone holds what mcdns's
`local-first` policy answers, and the servers' answers agree).

How it is measured: dnsperf runs on CPU 0; the server under test is pinned to CPU 1
and capped at 50% of one CPU with {cap}, so that the server, not dnsperf, is the
bottleneck: the QPS figures are *per half core*. Each server gets {runs} per mix,
servers alternating, and the median is shown; latency is measured separately at a fixed
{meta['rate']:,} queries/s ({meta['latency_seconds']:g} s, p99 over every query). Mix 1
is A queries for existing service names; mix 2 is what pods send with `ndots:5` (the
search path makes about half the queries NXDOMAIN), 20% AAAA, 5% SRV, with EDNS. RSS is
read once each server answers, at {' and '.join(f"{int(n):,}" for n in s.get('memory_sizes', []))}
services, the median of {meta.get('rss_runs', 1)} starts per size (each start's figure is in
results.json); growth is divided by the growth in served names. *capped* is the share of
100 ms quota periods in which the server was throttled: near 100% means the server was the
bottleneck; well below means something else (dnsperf, or a neighbour on CPU 1) limited
that run, and the QPS understates what the server does in half a core.

Latest run: {meta['date']}, {meta['nproc']} x {meta['cpu']} (`nproc` = {meta['nproc']},
shared with other jobs: expect noise), Linux {meta['kernel']}, dnsperf {meta['dnsperf']},
Knot {meta['knot']}, Python {meta['python']}, mcdns commit {meta['commit']}.

{table(s)}
![throughput chart](bench/results/chart.png)

Every run is in `bench/results/results.json`. `make bench` reproduces it (about
6 minutes); `.venv/bin/python -m bench.run --quick` takes about 2.
"""
