"""The benchmark's generators agree with each other (cheap: no servers, no dnsperf)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import dnsperf, gen, report


def local_first_a(items: list[dict[str, Any]]) -> dict[str, set[str]]:
    """A answers derived from the state objects alone, by the local-first policy."""
    services = {(o["metadata"]["namespace"], o["metadata"]["name"]): o
                for o in items if o["kind"] == "Service"}
    imports = {(o["metadata"]["namespace"], o["metadata"]["name"]): o
               for o in items if o["kind"] == "ServiceImport"}
    ready: dict[tuple[str, str], list[str]] = {}
    for o in items:
        if o["kind"] == "EndpointSlice":
            meta = o["metadata"]
            key = (meta["namespace"], meta["labels"]["kubernetes.io/service-name"])
            ready.setdefault(key, []).extend(
                a for e in o["endpoints"] if e["conditions"].get("ready", True)
                for a in e["addresses"])
    out: dict[str, set[str]] = {}
    for key in services.keys() | imports.keys():
        svc, imp = services.get(key), imports.get(key)
        local_ips: list[str] = []
        if svc is not None:
            headless = svc["spec"]["clusterIP"] == "None"
            local_ips = ready.get(key, []) if headless else svc["spec"]["clusterIPs"]
        if svc is not None and (ready.get(key) or imp is None):
            ips = local_ips
        else:
            ips = imp["spec"]["ips"] if imp is not None else []
        if ips:
            out[f"{key[1]}.{key[0]}.svc.cluster.local."] = set(ips)
    return out


def zone_a(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[3] == "A" and ".svc." in parts[0]:
            out.setdefault(parts[0], set()).add(parts[4])
    return out


def test_state_file_and_zone_agree_on_local_first_answers() -> None:
    c = gen.build(300)
    state = yaml.safe_load(gen.state_text(c))
    assert state["kind"] == "List"
    expected = local_first_a(state["items"])
    zone = {k: v for k, v in zone_a(gen.zone_text(c)).items() if k.count(".") == 5}
    assert zone == expected
    imported_unready = [s for s in c.services if s.import_ips and s.local and not s.ready]
    assert imported_unready
    assert all(zone[s.fqdn] == set(s.import_ips) for s in imported_unready)


def test_state_has_every_kind() -> None:
    kinds = {o["kind"] for o in gen.objects(gen.build(100))}
    assert kinds == {"Namespace", "Service", "EndpointSlice", "ServiceImport"}


def test_mix1_names_all_have_a_records() -> None:
    c = gen.build(200)
    zone = zone_a(gen.zone_text(c))
    names = [line.split()[0] for line in gen.mix_existing(c)]
    assert len(names) == len(set(names)) > 150
    assert all(n in zone for n in names)


def test_search_expansion_follows_ndots_5() -> None:
    assert gen.search_expansion("web", "a") == [
        "web.a.svc.cluster.local.", "web.svc.cluster.local.", "web.cluster.local."]
    fq = gen.search_expansion("web.b.svc.cluster.local", "a")
    assert fq[0] == "web.b.svc.cluster.local.a.svc.cluster.local."
    assert fq[-1] == "web.b.svc.cluster.local."
    assert len(fq) == 4
    assert gen.search_expansion("a.b.c.d.e.f", "a") == []


def test_mix2_is_mostly_negative_and_has_the_qtype_shares() -> None:
    c = gen.build(200)
    zone_names = {o for o, _, _ in gen.records(c)}
    queries = [line.split() for line in gen.mix_pod(c, lookups=2000)]
    missing = sum(1 for n, _ in queries if n not in zone_names)
    assert 0.4 < missing / len(queries) < 0.7
    types = [t for _, t in queries]
    assert 0.15 < types.count("AAAA") / len(types) < 0.25
    assert 0.02 < types.count("SRV") / len(types) < 0.08


def test_dnsperf_parse_reads_summary_and_verbose_latencies() -> None:
    out = """> NOERROR a.b.svc.cluster.local. A 0.000100
> NXDOMAIN x.b.svc.cluster.local. A 0.000300
  Queries sent:         2
  Queries completed:    2 (100.00%)
  Queries lost:         0 (0.00%)
  Response codes:       NOERROR 1 (50.00%), NXDOMAIN 1 (50.00%)
  Run time (s):         1.000100
  Queries per second:   1.999800
  Average Latency (s):  0.000200 (min 0.000100, max 0.000300)
"""
    r = dnsperf.parse(out, dnsperf.Result("knot", "mix1", "latency", 1.0))
    assert r.sent == 2 and r.lost == 0
    assert r.rcodes == {"NOERROR": 1, "NXDOMAIN": 1}
    assert r.p99_latency_s == 0.0003 and r.p50_latency_s == 0.0001
    assert abs(r.avg_latency_s - 0.0002) < 1e-12


def test_summary_ratios_medians_and_goals() -> None:
    runs = []
    for srv, qps in (("mcdns", [70.0, 80.0, 75.0]), ("knot", [100.0] * 3), ("dnslib", [2.0] * 3)):
        for q in qps:
            runs.append({"server": srv, "mix": "mix1", "kind": "throughput", "qps": q,
                         "avg_latency_s": 0.001})
    memory = {"mcdns": {"1000": 10_000_000, "10000": 19_000_000}}
    s = report.summarise(runs, memory, {"1000": 1000, "10000": 10000})
    row = s["mixes"]["mix1"]["mcdns"]
    assert row["qps"] == 75.0
    assert row["vs_knot"] == 0.75 and row["vs_dnslib"] == 37.5
    assert s["memory"]["mcdns"]["per_name_b"] == 1000.0
    met = {g["goal"]: g["met"] for g in s["goals"]}
    assert met["mix 1 QPS vs Knot"] is True
    assert met["mix 2 QPS vs Knot"] is None
    assert "| 75 |" in report.table(s)
