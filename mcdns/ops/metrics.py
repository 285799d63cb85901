"""Prometheus metrics: cheap plain counters on the hot path, exported at scrape time.

Counting a query is one list increment (plus a bucket increment for its latency): the
query path never touches prometheus-client objects. Each part owns its counters (the
answer table's query slots, the compiler's decisions, the watch streams' ``KubeStats``,
the Event recorder's ``EventStats``, the resolver's ``CacheStats`` and upstream stats,
the listeners' latency histogram); ``Parts`` names them with their types, and the
collector turns them into metric families in CoreDNS's style when /metrics is scraped.
Label sets are bounded: zones, protocols, a fixed list of types and rcodes, resources.
With workers, the first process's /metrics adds every worker's counters (mcdns.ops.merge).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from mcdns import __version__
from mcdns.answers.compiler import Compiler
from mcdns.answers.slots import TAG_NAMES, Slots
from mcdns.answers.switch import DIRECTIONS
from mcdns.histogram import Histogram
from mcdns.kube.settings import EventStats, KubeStats
from mcdns.ops.merge import MergedCollector, WorkerTotals
from mcdns.proto import RCODE_NAMES, TYPE_NAMES
from mcdns.resolver.resolver import Resolver
from mcdns.state.store import Store


@dataclass(frozen=True, slots=True)
class Parts:
    """What /metrics reads, each part's counters with their types."""

    zones: Sequence[str]  # the answer table's zones, by index
    queries: Slots  # answers by zone, type, rcode, decision, protocol
    latency: Histogram | None  # listeners: time to answer (None: metrics off)
    compiler: Compiler  # decisions, and watch event -> changed answer
    store: Store  # which sources completed their first list
    kube: KubeStats | None  # watch streams (None: state file or no sources)
    resolver: Resolver | None  # resolver role: the cache and its upstreams
    events: EventStats | None = None  # the Event recorder (None: not running)


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
    """Everything under /metrics, read from the running server's parts."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        yield from self._dns()
        yield from self._decisions()
        yield from self._kube()
        yield from self._resolver()
        info = GaugeMetricFamily("mcdns_build_info", "mcdns version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

    def _dns(self) -> Iterator[Metric]:
        parts = self.parts
        zones = parts.zones
        requests: dict[tuple[str, str, str], int] = {}
        responses: dict[tuple[str, str], int] = {}
        decisions = dict.fromkeys(TAG_NAMES.values(), 0)
        for (zi, qtype, rcode, tag, tcp), n in parts.queries.totals():
            zone = zones[zi] if 0 <= zi < len(zones) else "other"
            k1 = (zone, "tcp" if tcp else "udp", TYPE_NAMES.get(qtype, "other"))
            requests[k1] = requests.get(k1, 0) + n
            k2 = (zone, RCODE_NAMES.get(rcode, str(rcode)))
            responses[k2] = responses.get(k2, 0) + n
            if tag in TAG_NAMES:
                decisions[TAG_NAMES[tag]] += n
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
        if parts.latency is not None:
            yield histogram_family(parts.latency, "mcdns_dns_request_duration_seconds",
                                   "Time to answer a DNS request")

    def _decisions(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily("mcdns_services", "Services by state of their answer",
                                labels=["state"])
        for state, n in self.parts.compiler.service_states().items():
            fam.add_metric([state], n)
        yield fam
        compiler = self.parts.compiler
        switches = CounterMetricFamily(
            "mcdns_answer_switches", "Switches of a service's answer: to_import (failed "
            "over), to_local (failed back), tier", labels=["direction"])
        for direction in DIRECTIONS:
            switches.add_metric([direction], compiler.switches[direction])
        yield switches
        yield GaugeMetricFamily("mcdns_failback_pending", "Services answered by their "
                                "import while the local side's failback hold-down runs",
                                value=len(compiler.failbacks.since))
        yield histogram_family(
            self.parts.compiler.programming, "mcdns_programming_duration_seconds",
            "Time from a watch event (or state file change) to the changed answer")

    def _kube(self) -> Iterator[Metric]:
        synced = GaugeMetricFamily("mcdns_kube_synced", "1 once a source completed its "
                                   "first list", labels=["resource"])
        for source, ok in sorted(self.parts.store.synced_sources.items()):
            synced.add_metric([source], 1 if ok else 0)
        yield synced
        stats = self.parts.kube
        events = CounterMetricFamily("mcdns_kube_events", "Watch events by resource and type",
                                     labels=["resource", "type"])
        restarts = CounterMetricFamily("mcdns_kube_watch_restarts", "Watch restarts by "
                                       "resource and reason", labels=["resource", "reason"])
        age = GaugeMetricFamily("mcdns_kube_last_event_age_seconds",
                                "Seconds since the last watch event", labels=["resource"])
        if stats is not None:
            now = time.time()
            for (res, etype), n in sorted(stats.events.items()):
                events.add_metric([res, etype], n)
            for (res, reason), n in sorted(stats.restarts.items()):
                restarts.add_metric([res, reason], n)
            for res, when in sorted(stats.last_event.items()):
                age.add_metric([res], now - when)
        yield events
        yield restarts
        yield age
        recorded = CounterMetricFamily(
            "mcdns_events", "Kubernetes Events of answer switches: created, updated (a "
            "series count PATCHed), dropped (queue full), error (failed writes)",
            labels=["result"])
        ev = self.parts.events
        if ev is not None:
            for result, n in (("created", ev.created), ("updated", ev.updated),
                              ("dropped", ev.dropped), ("error", ev.errors)):
                recorded.add_metric([result], n)
        yield recorded

    def _resolver(self) -> Iterator[Metric]:
        res = self.parts.resolver
        cache = res.stats if res is not None else None
        yield CounterMetricFamily("mcdns_cache_hits", "Forwarding cache hits",
                                  value=cache.hits if cache else 0)
        yield CounterMetricFamily("mcdns_cache_misses", "Forwarding cache misses",
                                  value=cache.misses if cache else 0)
        yield CounterMetricFamily(
            "mcdns_cache_stale_hits", "Forwarding cache lookups answered with an expired "
            "entry at once, every upstream failing (hits + misses + stale hits = lookups)",
            value=cache.stale_hits if cache else 0)
        yield CounterMetricFamily(
            "mcdns_cache_stale_served", "Stale answers served (RFC 8767): stale hits, and "
            "misses whose upstreams all failed", value=cache.stale_served if cache else 0)
        yield CounterMetricFamily(
            "mcdns_cache_coalesced", "Forwarding cache misses that joined an identical "
            "upstream query in flight", value=cache.coalesced if cache else 0)
        yield GaugeMetricFamily("mcdns_cache_entries", "Entries in the forwarding cache",
                                value=res.entries if res else 0)
        yield CounterMetricFamily("mcdns_cache_evictions", "Forwarding cache evictions",
                                  value=res.evictions if res else 0)
        reqs = CounterMetricFamily("mcdns_upstream_requests", "Queries sent upstream",
                                   labels=["upstream"])
        errs = CounterMetricFamily("mcdns_upstream_errors", "Upstream failures",
                                   labels=["upstream"])
        fam = HistogramMetricFamily("mcdns_upstream_duration_seconds",
                                    "Upstream answer time", labels=["upstream"])
        for up in res.upstreams if res is not None else ():
            reqs.add_metric([up.name], up.stats.requests)
            errs.add_metric([up.name], up.stats.errors)
            h = up.stats.duration
            fam.add_metric([up.name], cumulative_buckets(h), h.sum)
        yield reqs
        yield errs
        yield fam


def registry_for(parts: Parts, workers: WorkerTotals | None = None) -> CollectorRegistry:
    """What /metrics serves: this process's metrics, with the ``workers``' counters added
    (mcdns.ops.merge) and the workers' own metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MergedCollector(MetricsCollector(parts), workers))
    return registry


def process_registry(parts: Parts) -> CollectorRegistry:
    """This process's metrics alone: what a worker hands the first process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(parts))
    return registry
