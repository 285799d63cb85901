"""The metrics CoreDNS exports, in CoreDNS's shape: names after the prefix, labels, buckets.

A CoreDNS dashboard or alert works on mcdns once ``coredns_`` reads ``mcdns_``
(docs/metrics.md has the table). The query counters come from the answer table's slots
(mcdns.answers.slots: zone, type, rcode, tag, protocol, family, sizes, time), the cache
and forwarding ones from the resolver's counters; everything is summed into CoreDNS's
label sets here, at scrape time. Label values follow CoreDNS:

- ``server``: ``dns://`` and the configured listen address (CoreDNS's ``dns://:53``); a
  query counts under the listen address of its client's family (several of one family
  are joined with ","); the cache, shared by every listener, under all of them;
- ``zone``: the mcdns zone the name is in, with its trailing dot, else ".";
- ``family``: "1" IPv4, "2" IPv6; ``type``: CoreDNS's list, else "other";
- ``plugin``: "mcdns" (the answer table), "cache" and "forward" (resolver role),
  "chaos" (CHAOS class), "" when the server itself answered (errors, refusals).

CoreDNS's ``view`` label is left out: mcdns has no views, and Prometheus reads an absent
label as the empty one CoreDNS exports without the view plugin.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from mcdns import __version__
from mcdns.answers.slots import (
    GRID,
    GRID_CELLS,
    LAT,
    LAT_NS,
    LAT_SLOTS,
    PLUGINS,
    Q_BYTES,
    QTYPE_LABELS,
    R_BYTES,
    TAG_NAMES,
    Slots,
)
from mcdns.config import HostPort
from mcdns.histogram import SIZE_BUCKETS, SIZE_SLOTS, TIME_BUCKETS, Histogram, cumulative
from mcdns.proto import RCODE_NAMES
from mcdns.resolver.resolver import Resolver

Sums = dict[tuple[str, ...], list[int]]
"""Label values -> bucket counts with the sum last."""


def server_labels(listen: Sequence[HostPort]) -> tuple[str, str]:
    """The ``server`` label of IPv4 and of IPv6 clients' queries."""
    every = ",".join(f"dns://{hp}" for hp in listen)
    v4 = ",".join(f"dns://{hp}" for hp in listen if ":" not in hp.host)
    v6 = ",".join(f"dns://{hp}" for hp in listen if ":" in hp.host)
    return v4 or every, v6 or every


def zone_labels(zones: Sequence[str]) -> list[str]:
    return [z.rstrip(".") + "." for z in zones]


def rcode_label(rcode: int) -> str:
    return RCODE_NAMES.get(rcode, str(rcode))


def _add(into: Sums, key: tuple[str, ...], counts: Sequence[int], total: int) -> None:
    have = into.get(key)
    if have is None:
        into[key] = [*counts, total]
    else:
        for i, n in enumerate(counts):
            have[i] += n
        have[-1] += total


def _histogram(name: str, doc: str, labels: list[str], sums: Sums,
               bounds: tuple[float, ...], scale: float = 1.0) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=labels)
    for key, counts in sorted(sums.items()):
        fam.add_metric(list(key), cumulative(bounds, counts[:-1]), counts[-1] * scale)
    return fam


def dns_families(slots: Slots, zones: Sequence[str], listen: Sequence[HostPort]
                 ) -> Iterator[Metric]:
    """CoreDNS's plugin/metrics families, mcdns_answers_total and mcdns_panics_total."""
    zone_of = zone_labels(zones)
    servers = server_labels(listen)
    requests: dict[tuple[str, ...], int] = {}
    responses: dict[tuple[str, ...], int] = {}
    decisions = dict.fromkeys(TAG_NAMES.values(), 0)
    durations: Sums = {}
    req_sizes: Sums = {}
    resp_sizes: Sums = {}
    side = range(SIZE_SLOTS)
    for (zi, qtype, rcode, tag, tcp), v6, block in slots.blocks():
        server = servers[v6]
        zone = zone_of[zi] if 0 <= zi < len(zone_of) else "."
        proto = "tcp" if tcp else "udp"
        qtype_label = QTYPE_LABELS.get(qtype, "other")
        grid = block[GRID:GRID + GRID_CELLS]
        n = sum(grid)
        k = (server, zone, proto, "2" if v6 else "1", qtype_label)
        requests[k] = requests.get(k, 0) + n
        r = (server, zone, rcode_label(rcode), PLUGINS.get(tag, ""))
        responses[r] = responses.get(r, 0) + n
        if tag in TAG_NAMES:
            decisions[TAG_NAMES[tag]] += n
        _add(durations, (server, zone, qtype_label), block[LAT:LAT + LAT_SLOTS], block[LAT_NS])
        rows = [sum(grid[r * SIZE_SLOTS:(r + 1) * SIZE_SLOTS]) for r in side]
        _add(req_sizes, (server, zone, proto), rows, block[Q_BYTES])
        _add(resp_sizes, (server, zone, proto), [sum(grid[c::SIZE_SLOTS]) for c in side],
             block[R_BYTES])
    fam = CounterMetricFamily("mcdns_dns_requests", "Counter of DNS requests made per zone, "
                              "protocol and family.",
                              labels=["server", "zone", "proto", "family", "type"])
    for key, n in sorted(requests.items()):
        fam.add_metric(list(key), n)
    yield fam
    fam = CounterMetricFamily("mcdns_dns_responses", "Counter of response status codes.",
                              labels=["server", "zone", "rcode", "plugin"])
    for key, n in sorted(responses.items()):
        fam.add_metric(list(key), n)
    yield fam
    yield _histogram("mcdns_dns_request_duration_seconds", "Histogram of the time (in "
                     "seconds) each request took per zone.", ["server", "zone", "type"],
                     durations, TIME_BUCKETS, 1e-9)
    yield _histogram("mcdns_dns_request_size_bytes", "Size of the request in bytes per zone "
                     "and protocol.", ["server", "zone", "proto"], req_sizes, SIZE_BUCKETS)
    yield _histogram("mcdns_dns_response_size_bytes", "Size of the returned response in "
                     "bytes.", ["server", "zone", "proto"], resp_sizes, SIZE_BUCKETS)
    yield CounterMetricFamily("mcdns_panics", "A metrics that counts the number of panics "
                              "(exceptions while answering, answered SERVFAIL).",
                              value=slots.panics)
    fam = CounterMetricFamily("mcdns_answers", "Answers for service names by decision",
                              labels=["decision"])
    for decision, n in decisions.items():
        fam.add_metric([decision], n)
    yield fam


def build_info() -> Metric:
    """CoreDNS's build_info, with Python's version where CoreDNS has Go's."""
    info = GaugeMetricFamily("mcdns_build_info", "A metric with a constant '1' value labeled "
                             "by version, revision, and python_version from which mcdns was "
                             "built.", labels=["version", "revision", "python_version"])
    info.add_metric([__version__, os.environ.get("MCDNS_REVISION", "unknown"),
                     platform.python_version()], 1)
    return info


def cache_families(res: Resolver, listen: Sequence[HostPort]) -> Iterator[Metric]:
    """CoreDNS's plugin/cache families for the resolver's cache (zones "."), and mcdns's
    stale hits and coalesced misses beside them."""
    server = ",".join(f"dns://{hp}" for hp in listen)
    at = [server, "."]
    st = res.stats
    denials = sum(1 for e in res.cache.stored() if e.denial)
    entries = GaugeMetricFamily("mcdns_cache_entries", "The number of elements in the "
                                "cache.", labels=["server", "type", "zones"])
    entries.add_metric([server, "success", "."], res.entries - denials)
    entries.add_metric([server, "denial", "."], denials)
    yield entries
    for name, doc, success, denial in (
            ("hits", "The count of cache hits.", st.hits - st.denial_hits, st.denial_hits),
            ("evictions", "The count of cache evictions.",
             res.evictions - res.cache.denial_evictions, res.cache.denial_evictions)):
        fam = CounterMetricFamily(f"mcdns_cache_{name}", doc,
                                  labels=["server", "type", "zones"])
        fam.add_metric([server, "success", "."], success)
        fam.add_metric([server, "denial", "."], denial)
        yield fam
    for name, doc, value in (
            ("requests", "The count of cache requests (hits, stale hits and misses).",
             st.hits + st.stale_hits + st.misses),
            ("misses", "The count of cache misses.", st.misses),
            ("served_stale", "The number of requests served from stale cache entries "
             "(RFC 8767): stale hits, and misses whose upstreams all failed.", st.stale_served),
            ("stale_hits", "mcdns: lookups answered with an expired entry at once, every "
             "upstream failing (hits + misses + stale hits = requests).", st.stale_hits),
            ("coalesced", "mcdns: cache misses that joined an identical upstream query in "
             "flight.", st.coalesced)):
        fam = CounterMetricFamily(f"mcdns_cache_{name}", doc, labels=["server", "zones"])
        fam.add_metric(at, value)
        yield fam


def forward_families(res: Resolver) -> Iterator[Metric]:
    """CoreDNS's plugin/forward and plugin/pkg/proxy families, proxy_name "forward"."""
    fam = HistogramMetricFamily("mcdns_proxy_request_duration_seconds", "Histogram of the "
                                "time each request took.", labels=["proxy_name", "to", "rcode"])
    fails = CounterMetricFamily("mcdns_proxy_healthcheck_failures", "Counter of the number "
                                "of failed healthchecks (mcdns: failed exchanges, each of "
                                "which puts the upstream back for 30 s).",
                                labels=["proxy_name", "to"])
    for up in res.upstreams:
        for rcode, h in sorted(up.stats.replies.items()):
            fam.add_metric(["forward", up.name, rcode_label(rcode)],
                           cumulative(h.bounds, h.counts), h.sum)
        fails.add_metric(["forward", up.name], up.stats.errors)
    yield fam
    yield fails
    yield CounterMetricFamily("mcdns_forward_healthcheck_broken", "Counter of the number of "
                              "complete failures of the healthchecks (mcdns: questions "
                              "forwarded while every upstream was failing).",
                              value=res.stats.broken)
    yield CounterMetricFamily("mcdns_forward_max_concurrent_rejects", "Counter of the number "
                              "of queries rejected because the concurrent queries were at "
                              "maximum.", value=res.stats.rejected)


def upstream_families(res: Resolver | None) -> Iterator[Metric]:
    """mcdns's own upstream counters: every exchange, failed ones included."""
    reqs = CounterMetricFamily("mcdns_upstream_requests", "Queries sent upstream",
                               labels=["upstream"])
    errs = CounterMetricFamily("mcdns_upstream_errors", "Upstream failures",
                               labels=["upstream"])
    fam = HistogramMetricFamily("mcdns_upstream_duration_seconds",
                                "Upstream answer time", labels=["upstream"])
    for up in res.upstreams if res is not None else ():
        reqs.add_metric([up.name], up.stats.requests)
        errs.add_metric([up.name], up.stats.errors)
        h: Histogram = up.stats.duration
        fam.add_metric([up.name], cumulative(h.bounds, h.counts), h.sum)
    yield reqs
    yield errs
    yield fam
