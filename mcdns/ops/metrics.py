"""Prometheus metrics: cheap plain counters on the hot path, exported at scrape time.

Counting a query is one dict increment (plus a bucket increment for its latency): the
query path never touches prometheus-client objects. A custom collector turns the plain
counters, the compiler's decisions, the watch streams' and the resolver's counters into
metric families in CoreDNS's style when /metrics is scraped. Label sets are bounded:
zones, protocols, a fixed list of types and rcodes, resources.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from mcdns import __version__
from mcdns.answers.health import IMPORT, LOCAL
from mcdns.answers.table import TAG_DEGRADED, TAG_IMPORT, TAG_LOCAL
from mcdns.ops.histogram import Histogram

if TYPE_CHECKING:
    from mcdns.app import App

TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
         33: "SRV", 35: "NAPTR", 64: "SVCB", 65: "HTTPS", 255: "ANY"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
DECISIONS = {TAG_LOCAL: "local", TAG_IMPORT: "import", TAG_DEGRADED: "degraded"}

def cumulative_buckets(h: Histogram) -> list[tuple[str, float]]:
    """``h``'s counts as Prometheus buckets: (upper bound, count up to it), +Inf last."""
    cumulative: list[tuple[str, float]] = []
    total = 0
    for bound, n in zip((*h.bounds, float("inf")), h.counts, strict=True):
        total += n
        cumulative.append(("+Inf" if bound == float("inf") else repr(bound), total))
    return cumulative


def histogram_family(h: Histogram, name: str, doc: str) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=cumulative_buckets(h), sum_value=h.sum)


class MetricsCollector(Collector):
    """Everything under /metrics, read from the running App's parts."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        yield from self._dns()
        yield from self._decisions()
        yield from self._kube()
        yield from self._resolver()
        info = GaugeMetricFamily("mcdns_build_info", "mcdns version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

    def _dns(self) -> Iterator[Metric]:
        app = self.app
        zones = [z.name for z in app.compiler.table.zones]
        requests: dict[tuple[str, str, str], int] = {}
        responses: dict[tuple[str, str], int] = {}
        decisions = dict.fromkeys(DECISIONS.values(), 0)
        slots = app.compiler.table.slots
        counts = app.handler.stats or []
        for (zi, qtype, rcode, tag, tcp), n in zip(list(slots.labels), list(counts),
                                                    strict=False):
            if not n:
                continue
            zone = zones[zi] if 0 <= zi < len(zones) else "other"
            t = TYPES.get(qtype, "other")
            k1 = (zone, "tcp" if tcp else "udp", t)
            requests[k1] = requests.get(k1, 0) + n
            k2 = (zone, RCODES.get(rcode, str(rcode)))
            responses[k2] = responses.get(k2, 0) + n
            if tag in DECISIONS:
                decisions[DECISIONS[tag]] += n
        fam = CounterMetricFamily("mcdns_dns_requests", "DNS requests by zone, protocol, type",
                                  labels=["zone", "proto", "type"])
        for key, n in sorted(requests.items()):
            fam.add_metric(list(key), n)
        yield fam
        fam = CounterMetricFamily("mcdns_dns_responses", "DNS responses by zone and rcode",
                                  labels=["zone", "rcode"])
        for key2, n in sorted(responses.items()):
            fam.add_metric(list(key2), n)
        yield fam
        fam = CounterMetricFamily("mcdns_answers", "Answers for service names by decision",
                                  labels=["decision"])
        for decision, n in decisions.items():
            fam.add_metric([decision], n)
        yield fam
        if app.latency is not None:
            yield histogram_family(app.latency, "mcdns_dns_request_duration_seconds",
                                   "Time to answer a DNS request")

    def _decisions(self) -> Iterator[Metric]:
        states = {"healthy": 0, "fallback": 0, "degraded": 0}
        for d in list(self.app.compiler.decisions.values()):
            if d.degraded:
                states["degraded"] += 1
            elif d.choice == IMPORT and d.service is not None:
                states["fallback"] += 1
            elif d.choice == LOCAL:
                states["healthy"] += 1
        fam = GaugeMetricFamily("mcdns_services", "Services by state of their answer",
                                labels=["state"])
        for state, n in states.items():
            fam.add_metric([state], n)
        yield fam
        yield histogram_family(
            self.app.compiler.programming, "mcdns_programming_duration_seconds",
            "Time from a watch event (or state file change) to the changed answer")

    def _kube(self) -> Iterator[Metric]:
        store = self.app.store
        synced = GaugeMetricFamily("mcdns_kube_synced", "1 once a source completed its "
                                   "first list", labels=["resource"])
        for source, ok in sorted(store.synced_sources.items()):
            synced.add_metric([source], 1 if ok else 0)
        yield synced
        kube = self.app.kube
        events = CounterMetricFamily("mcdns_kube_events", "Watch events by resource and type",
                                     labels=["resource", "type"])
        restarts = CounterMetricFamily("mcdns_kube_watch_restarts", "Watch restarts by "
                                       "resource and reason", labels=["resource", "reason"])
        age = GaugeMetricFamily("mcdns_kube_last_event_age_seconds",
                                "Seconds since the last watch event", labels=["resource"])
        if kube is not None:
            now = time.time()
            for (res, etype), n in sorted(kube.stats.events.items()):
                events.add_metric([res, etype], n)
            for (res, reason), n in sorted(kube.stats.restarts.items()):
                restarts.add_metric([res, reason], n)
            for res, when in sorted(kube.stats.last_event.items()):
                age.add_metric([res], now - when)
        yield events
        yield restarts
        yield age

    def _resolver(self) -> Iterator[Metric]:
        fwd = self.app.forwarder
        hits = getattr(fwd, "hits", 0)
        misses = getattr(fwd, "misses", 0)
        yield CounterMetricFamily("mcdns_cache_hits", "Forwarding cache hits", value=hits)
        yield CounterMetricFamily("mcdns_cache_misses", "Forwarding cache misses", value=misses)
        yield CounterMetricFamily(
            "mcdns_cache_stale_hits", "Forwarding cache lookups answered with an expired "
            "entry at once, every upstream failing (hits + misses + stale hits = lookups)",
            value=getattr(fwd, "stale_hits", 0))
        yield CounterMetricFamily(
            "mcdns_cache_stale_served", "Stale answers served (RFC 8767): stale hits, and "
            "misses whose upstreams all failed", value=getattr(fwd, "stale_served", 0))
        yield CounterMetricFamily(
            "mcdns_cache_coalesced", "Forwarding cache misses that joined an identical "
            "upstream query in flight", value=getattr(fwd, "coalesced", 0))
        yield GaugeMetricFamily("mcdns_cache_entries", "Entries in the forwarding cache",
                                value=getattr(fwd, "entries", 0))
        yield CounterMetricFamily("mcdns_cache_evictions", "Forwarding cache evictions",
                                  value=getattr(fwd, "evictions", 0))
        reqs = CounterMetricFamily("mcdns_upstream_requests", "Queries sent upstream",
                                   labels=["upstream"])
        errs = CounterMetricFamily("mcdns_upstream_errors", "Upstream failures",
                                   labels=["upstream"])
        durations = []
        for up in getattr(fwd, "upstreams", ()):
            reqs.add_metric([up.name], up.stats.requests)
            errs.add_metric([up.name], up.stats.errors)
            durations.append(up)
        yield reqs
        yield errs
        fam = HistogramMetricFamily("mcdns_upstream_duration_seconds",
                                    "Upstream answer time", labels=["upstream"])
        for up in durations:
            h = up.stats.duration
            fam.add_metric([up.name], cumulative_buckets(h), h.sum)
        yield fam


def registry_for(app: App) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(app))
    return registry
