"""/metrics in CoreDNS's shape: names, label sets and buckets as in CoreDNS's source, the
label values (server, zone with its dot, family, plugin), real query and response sizes,
the panic counter, process_* and python_*, and CoreDNS dashboard queries with the prefix
swapped.

CoreDNS's definitions are quoted below from coredns/coredns at commit
4b26cced32717eac6dd725e308d7415c8b9db147 (files named beside each quote) and parsed here,
so a difference shows as a difference from CoreDNS's own text.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import struct
import urllib.request
from collections import defaultdict
from collections.abc import Iterator

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest
from conftest import DEMO_STATE, Running, make_config, running
from knot import free_port
from prometheus_client.parser import text_string_to_metric_families

from mcdns import config
from mcdns.answers.slots import QTYPE_LABELS
from mcdns.ops.metrics import Parts, registry_for
from mcdns.resolver.resolver import Resolver

COREDNS = "coredns/coredns@4b26cced32717eac6dd725e308d7415c8b9db147"

# plugin/metrics/vars/vars.go (gofmt's tabs and alignment, the Help lines left out)
VARS_GO = '''
 RequestCount = promauto.NewCounterVec(prometheus.CounterOpts{
  Name:      "requests_total",
 }, []string{"server", "zone", "view", "proto", "family", "type"})
 RequestDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
  Name:                        "request_duration_seconds",
  Buckets:                     plugin.TimeBuckets,
 }, []string{"server", "zone", "view"})
 RequestSize = promauto.NewHistogramVec(prometheus.HistogramOpts{
  Name:                        "request_size_bytes",
  Buckets: []float64{0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3},
 }, []string{"server", "zone", "view", "proto"})
 ResponseSize = promauto.NewHistogramVec(prometheus.HistogramOpts{
  Name:                        "response_size_bytes",
  Buckets: []float64{0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3},
 }, []string{"server", "zone", "view", "proto"})
 ResponseRcode = promauto.NewCounterVec(prometheus.CounterOpts{
  Name:      "responses_total",
 }, []string{"server", "zone", "view", "rcode", "plugin"})
 Panic = promauto.NewCounter(prometheus.CounterOpts{
  Name:      "panics_total",
 })
'''  # Subsystem "dns" for all but panics_total
# plugin/plugin.go
PLUGIN_GO = "var TimeBuckets = prometheus.ExponentialBuckets(0.00025, 2, 16) // from 0.25ms to 8s"
# plugin/metrics/vars/monitor.go
MONITOR_GO = '''
 dns.TypeAAAA:   {}, dns.TypeA:      {}, dns.TypeCNAME:  {}, dns.TypeDNSKEY: {},
 dns.TypeDS:     {}, dns.TypeMX:     {}, dns.TypeNSEC3:  {}, dns.TypeNSEC:   {},
 dns.TypeNS:     {}, dns.TypePTR:    {}, dns.TypeRRSIG:  {}, dns.TypeSOA:    {},
 dns.TypeSRV:    {}, dns.TypeTXT:    {}, dns.TypeHTTPS:  {}, dns.TypeSVCB:   {},
 dns.TypeIXFR: {}, dns.TypeAXFR: {}, dns.TypeANY:  {},
'''
# plugin/cache/metrics.go (Subsystem "cache")
CACHE_GO = '''
  Name:      "entries",
 }, []string{"server", "type", "zones", "view"})
  Name:      "requests_total",
 }, []string{"server", "zones", "view"})
  Name:      "hits_total",
 }, []string{"server", "type", "zones", "view"})
  Name:      "misses_total",
 }, []string{"server", "zones", "view"})
  Name:      "served_stale_total",
 }, []string{"server", "zones", "view"})
  Name:      "evictions_total",
 }, []string{"server", "type", "zones", "view"})
'''
# plugin/pkg/proxy/metrics.go (Subsystem "proxy")
PROXY_GO = '''
  Name:                        "request_duration_seconds",
  Buckets:                     plugin.TimeBuckets,
 }, []string{"proxy_name", "to", "rcode"})
  Name:      "healthcheck_failures_total",
 }, []string{"proxy_name", "to"})
'''
# plugin/forward/metrics.go (Subsystem "forward"): counters without labels
FORWARD_GO = '''
  Name:      "healthcheck_broken_total",
  Name:      "max_concurrent_rejects_total",
'''
DECLARED = re.compile(r'Name:\s+"(\w+)",(?:\s+Buckets:\s+([^\n]+),)?\s+\}, \[\]string\{([^}]*)\}')


def declared(go: str, subsystem: str) -> dict[str, tuple[set[str], str]]:
    """Metric name (with CoreDNS's namespace and subsystem) -> (label names, buckets) of
    the vectors declared in ``go``."""
    out = {}
    for name, buckets, labels in DECLARED.findall(go):
        out[f"coredns_{subsystem}_{name}"] = (set(re.findall(r'"(\w+)"', labels)), buckets)
    return out


def go_buckets(text: str) -> list[float]:
    """A Go bucket list literal or plugin.TimeBuckets, as floats."""
    if "TimeBuckets" in text:
        m = re.search(r"ExponentialBuckets\(([\d.]+), ([\d.]+), (\d+)\)", PLUGIN_GO)
        assert m
        start, factor, count = float(m[1]), float(m[2]), int(m[3])
        return [start * factor ** i for i in range(count)]
    return [float(x) for x in re.search(r"\{([^}]*)\}", text)[1].split(",")]  # type: ignore[index]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return parse(r.read().decode())


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def series(m: Samples, name: str, **labels: str) -> Iterator[tuple[dict[str, str], float]]:
    """The samples of ``name`` whose labels include ``labels``."""
    for (n, ls), v in m.items():
        d = dict(ls)
        if n == name and all(d.get(k) == want for k, want in labels.items()):
            yield d, v


def total(m: Samples, name: str, **labels: str) -> float:
    return sum(v for _, v in series(m, name, **labels))


def label_names(m: Samples, name: str) -> set[str]:
    found = [set(d) - {"le"} for d, _ in series(m, name)]
    assert found, f"no {name} samples"
    assert all(f == found[0] for f in found)
    return found[0]


def resolver_parts(srv: Running) -> Parts:
    """The running server's parts with a resolver beside them (no upstream is asked):
    the cache and forward families get samples."""
    cfg = config.build({"listen": ["127.0.0.1:5353"], "role": "resolver",
                        "upstreams": ["127.0.0.1:9"]})
    res = Resolver(cfg)
    res.upstreams[0].stats.replied(0, 0.003)
    app = srv.app
    return Parts(zones=tuple(z.name for z in app.compiler.table.zones),
                 queries=app.compiler.table.slots, latency=None, compiler=app.compiler,
                 store=app.store, kube=None, resolver=res)


@pytest.fixture(scope="module")
def demo_http() -> Iterator[Running]:
    """The demo state on a fixed port (``server`` is the configured listen address)."""
    cfg = make_config(state=str(DEMO_STATE), http="127.0.0.1:0",
                      listen=[f"127.0.0.1:{free_port()}"])
    with running(cfg) as srv:
        for _ in range(2):
            srv.query("web.default.svc.cluster.local.", "A")
        srv.query("example.com.", "A")
        yield srv


def test_label_sets_and_buckets_are_coredns_s(demo_http: Running) -> None:
    from prometheus_client import generate_latest

    m = parse(generate_latest(registry_for(resolver_parts(demo_http))).decode())
    want = {**declared(VARS_GO, "dns"), **declared(CACHE_GO, "cache"),
            **declared(PROXY_GO, "proxy")}
    assert 'Panic = promauto.NewCounter(' in VARS_GO  # no labels, no subsystem
    want["coredns_panics_total"] = (set(), "")
    # CoreDNS's README lists the request duration with ``type``; its code has dropped it
    # (cardinality). mcdns keeps it: summing it away gives CoreDNS's series.
    want["coredns_dns_request_duration_seconds"][0].add("type")
    assert len(want) == 14
    for coredns_name, (labels, buckets) in sorted(want.items()):
        name = coredns_name.replace("coredns_", "mcdns_", 1)
        kind = "_bucket" if buckets else ""
        got = label_names(m, name + kind)
        assert got == labels - {"view"}, name  # no views in mcdns: see docs/metrics.md
        if buckets:
            le = sorted({d["le"] for d, _ in series(m, name + "_bucket")},
                        key=lambda x: float(x))
            assert [float(x) for x in le] == [*go_buckets(buckets), math.inf], name
            # written as Go writes them: 100 and 16000, not 100.0 and 16000.0
            assert all(x == "+Inf" or x == f"{float(x):g}" for x in le), le
    for name in re.findall(r'Name:\s+"(\w+)"', FORWARD_GO):
        assert label_names(m, f"mcdns_forward_{name}") == set()


def test_types_are_coredns_s_list() -> None:
    names = set(re.findall(r"dns\.Type(\w+):", MONITOR_GO))
    assert set(QTYPE_LABELS.values()) == names and len(names) == 19


def test_zone_has_its_dot_and_server_is_the_listen_address() -> None:
    """Queries over IPv4 and IPv6: each counts under its own listen address and family;
    zone ``cluster.local.`` inside, ``.`` outside; plugin mcdns, chaos, or "" (refused)."""
    port4, port6 = free_port(), _free_port6()
    cfg = make_config(state=str(DEMO_STATE), http="127.0.0.1:0",
                      listen=[f"127.0.0.1:{port4}", f"[::1]:{port6}"])
    with running(cfg) as srv:
        before = scrape(srv.app.http.port)
        q = dns.message.make_query("web.default.svc.cluster.local.", "A")
        dns.query.udp(q, "127.0.0.1", port=port4, timeout=3)
        dns.query.udp(q, "::1", port=port6, timeout=3)
        dns.query.tcp(q, "::1", port=port6, timeout=3)
        dns.query.udp(dns.message.make_query("example.com.", "AAAA"), "127.0.0.1",
                      port=port4, timeout=3)
        chaos = dns.message.make_query("version.bind.", "TXT", "CH")
        dns.query.udp(chaos, "127.0.0.1", port=port4, timeout=3)
        after = scrape(srv.app.http.port)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    v4, v6 = f"dns://127.0.0.1:{port4}", f"dns://[::1]:{port6}"
    zone = "cluster.local."
    assert moved("mcdns_dns_requests_total", server=v4, zone=zone, proto="udp",
                 family="1", type="A") == 1
    assert moved("mcdns_dns_requests_total", server=v6, zone=zone, proto="udp",
                 family="2", type="A") == 1
    assert moved("mcdns_dns_requests_total", server=v6, zone=zone, proto="tcp",
                 family="2", type="A") == 1
    assert moved("mcdns_dns_requests_total", server=v4, zone=".", type="AAAA") == 1
    assert moved("mcdns_dns_responses_total", server=v4, zone=zone, rcode="NOERROR",
                 plugin="mcdns") == 1
    assert moved("mcdns_dns_responses_total", zone=".", rcode="REFUSED", plugin="") == 1
    assert moved("mcdns_dns_responses_total", zone=".", rcode="NOERROR", plugin="chaos") == 1
    assert moved("mcdns_dns_request_duration_seconds_count", server=v6, zone=zone,
                 type="A") == 2
    zones = {d["zone"] for d, _ in series(after, "mcdns_dns_requests_total")}
    assert zones == {"cluster.local.", "."}
    servers = {d["server"] for d, _ in series(after, "mcdns_dns_requests_total")}
    assert servers == {v4, v6}


def _free_port6() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
        u.bind(("::1", 0))
        port: int = u.getsockname()[1]
    return port


def _exchange(srv: Running, wire: bytes, tcp: bool) -> bytes:
    """Send ``wire`` as it is and return the answer's bytes as they came."""
    if tcp:
        with socket.create_connection((srv.host, srv.port), timeout=3) as s:
            s.sendall(struct.pack(">H", len(wire)) + wire)
            head = s.recv(2, socket.MSG_WAITALL)
            return s.recv(struct.unpack(">H", head)[0], socket.MSG_WAITALL)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(wire, (srv.host, srv.port))
        return s.recv(65535)


def test_size_histograms_count_the_real_sizes(demo_http: Running) -> None:
    """dnspython's queries: plain, with EDNS (a COOKIE: off the hot path), over TCP; the
    answers' sizes fall on both sides of the 100-byte bound."""
    cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"\x01" * 8)
    queries = [(dns.message.make_query("web.default.svc.cluster.local.", "A"), False),
               (dns.message.make_query("_http._tcp.web.default.svc.cluster.local.", "SRV",
                                       use_edns=0, options=[cookie]), False),
               (dns.message.make_query("web.default.svc.cluster.local.", "A"), True)]
    before = scrape(demo_http.app.http.port)
    sent: dict[str, list[int]] = defaultdict(list)
    got: dict[str, list[int]] = defaultdict(list)
    for q, tcp in queries:
        wire = q.to_wire()
        resp = _exchange(demo_http, wire, tcp)
        assert dns.message.from_wire(resp).rcode() == dns.rcode.NOERROR
        sent["tcp" if tcp else "udp"].append(len(wire))
        got["tcp" if tcp else "udp"].append(len(resp))
    after = scrape(demo_http.app.http.port)
    for proto in ("udp", "tcp"):
        for metric, sizes in (("request", sent[proto]), ("response", got[proto])):
            name = f"mcdns_dns_{metric}_size_bytes"
            at = {"zone": "cluster.local.", "proto": proto}
            assert (total(after, name + "_sum", **at) - total(before, name + "_sum", **at)
                    == sum(sizes)), (metric, proto)
            assert (total(after, name + "_count", **at)
                    - total(before, name + "_count", **at)) == len(sizes)
            for le in ("100", "200", "511"):  # each size counts in the buckets above it
                moved = (total(after, name + "_bucket", le=le, **at)
                         - total(before, name + "_bucket", le=le, **at))
                assert moved == sum(1 for n in sizes if n <= float(le)), (metric, le)
    assert min(got["udp"]) <= 100 < max(got["udp"])  # the buckets tell them apart


def test_an_exception_while_answering_is_a_panic(demo_http: Running,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The test hook: the handler's one decision (``_resolve``) raises. The query is
    answered SERVFAIL, the traceback logged, mcdns_panics_total counts it."""
    caplog.set_level(logging.ERROR, logger="mcdns.dns")
    handler = demo_http.app.handler

    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("a bug")

    before = scrape(demo_http.app.http.port)
    demo_http.call(lambda: setattr(handler, "_resolve", broken))
    try:
        reply = demo_http.query("never-asked.default.svc.cluster.local.", "A")
    finally:
        demo_http.call(lambda: delattr(handler, "_resolve"))
    after = scrape(demo_http.app.http.port)
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert total(after, "mcdns_panics_total") - total(before, "mcdns_panics_total") == 1
    assert (total(after, "mcdns_dns_responses_total", rcode="SERVFAIL", plugin="")
            - total(before, "mcdns_dns_responses_total", rcode="SERVFAIL", plugin="")) == 1
    assert any("error answering a query; SERVFAIL" in r.getMessage() and r.exc_info
               for r in caplog.records)
    assert demo_http.query("web.default.svc.cluster.local.", "A").answer  # and goes on


def test_process_and_python_metrics_appear(demo_http: Running) -> None:
    m = scrape(demo_http.app.http.port)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "process_start_time_seconds",
                 "python_gc_collections_total"):
        assert total(m, name) > 0, name
    (info,) = series(m, "python_info")
    assert info[0]["implementation"] == "CPython"
    (build,) = series(m, "mcdns_build_info")
    assert set(build[0]) == {"version", "revision", "python_version"}


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's histogram_quantile over one group's cumulative buckets (le -> count)."""
    bounds = sorted(buckets)
    rank = q * buckets[math.inf]
    for i, b in enumerate(bounds):
        if buckets[b] >= rank:
            if b == math.inf:
                return bounds[-2]
            lo, below = (0.0, 0.0) if i == 0 else (bounds[i - 1], buckets[bounds[i - 1]])
            return lo + (b - lo) * (rank - below) / (buckets[b] - below)
    return math.nan


def test_coredns_dashboard_queries_with_the_prefix_swapped(demo_http: Running) -> None:
    """Two panels of the CoreDNS dashboard, evaluated over two scrapes (the increase
    stands for rate(...[5m])):

    - sum(rate(mcdns_dns_requests_total[5m])) by (type)
    - histogram_quantile(0.99, sum(rate(mcdns_dns_request_duration_seconds_bucket[5m]))
      by (server, zone, le))"""
    port = demo_http.app.http.port
    before = scrape(port)
    for _ in range(3):
        demo_http.query("web.default.svc.cluster.local.", "A")
    demo_http.query("web.default.svc.cluster.local.", "AAAA")
    demo_http.query("_http._tcp.web.default.svc.cluster.local.", "SRV")
    after = scrape(port)
    by_type: dict[str, float] = defaultdict(float)
    for labels, v in series(after, "mcdns_dns_requests_total"):
        key = tuple(sorted(labels.items()))
        by_type[labels["type"]] += v - before.get(("mcdns_dns_requests_total", key), 0.0)
    assert {t: n for t, n in by_type.items() if n} == {"A": 3, "AAAA": 1, "SRV": 1}
    groups: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for labels, v in series(after, "mcdns_dns_request_duration_seconds_bucket"):
        key = tuple(sorted(labels.items()))
        was = before.get(("mcdns_dns_request_duration_seconds_bucket", key), 0.0)
        groups[(labels["server"], labels["zone"])][float(labels["le"])] += v - was
    p99 = {g: histogram_quantile(0.99, b) for g, b in groups.items() if b[math.inf]}
    assert set(p99) == {(f"dns://127.0.0.1:{demo_http.port}", "cluster.local.")}
    assert all(0 < v <= 8.192 for v in p99.values()), p99


def test_slots_count_sizes_and_times_in_coredns_s_buckets() -> None:
    """The counters alone: one answer in each of three time buckets, sizes at the bounds
    (a size equal to a bound counts in it, as Prometheus's ``le``)."""
    from mcdns.answers.slots import GRID, GRID_CELLS, LAT, LAT_NS, Q_BYTES, R_BYTES, Slots
    from mcdns.histogram import SIZE_BUCKETS, SIZE_SLOTS, TIME_BUCKETS

    slots = Slots()
    s = slots.slot(0, 1, 0, 0, False)
    for qsize, rsize, ns in ((100, 101, 1_000), (101, 511, 300_000), (40, 65535, 10**10)):
        slots.record(s, False, qsize, rsize, ns)
    ((key, v6, block),) = slots.blocks()
    assert key == (0, 1, 0, 0, False) and not v6
    assert (block[Q_BYTES], block[R_BYTES], block[LAT_NS]) == (241, 66147, 10**10 + 301_000)
    times = block[LAT:LAT + len(TIME_BUCKETS) + 1]
    assert times[0] == times[1] == times[-1] == 1 and sum(times) == 3  # 250 us, 500 us, +Inf
    grid = block[GRID:GRID + GRID_CELLS]
    requests = [sum(grid[r * SIZE_SLOTS:(r + 1) * SIZE_SLOTS]) for r in range(SIZE_SLOTS)]
    responses = [sum(grid[c::SIZE_SLOTS]) for c in range(SIZE_SLOTS)]
    le = [*SIZE_BUCKETS, math.inf]
    assert {le[i]: n for i, n in enumerate(requests) if n} == {100: 2, 200: 1}
    assert {le[i]: n for i, n in enumerate(responses) if n} == {200: 1, 511: 1, math.inf: 1}
