"""Prometheus metrics: cheap plain counters on the hot path, exported at scrape time.

Counting a query is a few list increments (mcdns.answers.slots): the query path never
touches prometheus-client objects. Each part owns its counters (the answer table's query
slots, the compiler's decisions, the watch streams' ``KubeStats``, the Event recorder's
``EventStats``, the resolver's ``CacheStats`` and upstream stats); ``Parts`` names them
with their types, and the collector turns them into metric families when /metrics is
scraped: CoreDNS's families in CoreDNS's shape (mcdns.ops.coredns_metrics, docs/metrics.md),
mcdns's own beside them, and prometheus-client's ``process_*`` and ``python_*``. Label sets
are bounded: zones, protocols, families, a fixed list of types and rcodes, resources.
With workers, the first process's /metrics adds every worker's counters (mcdns.ops.merge).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from mcdns.answers.compiler import Compiler
from mcdns.answers.slots import Slots
from mcdns.answers.switch import DIRECTIONS
from mcdns.histogram import Histogram, cumulative
from mcdns.kube.settings import EventStats, KubeStats
from mcdns.ops.coredns_metrics import (
    build_info,
    cache_families,
    dns_families,
    forward_families,
    upstream_families,
)
from mcdns.ops.merge import MergedCollector, WorkerTotals
from mcdns.resolver.resolver import Resolver
from mcdns.state.store import Store


@dataclass(frozen=True, slots=True)
class Parts:
    """What /metrics reads, each part's counters with their types."""

    zones: Sequence[str]  # the answer table's zones, by index
    queries: Slots  # answers by zone, type, rcode, tag, protocol, family: sizes, time
    latency: object | None  # unread: the handler times answers into ``queries`` now
    compiler: Compiler  # decisions, and watch event -> changed answer; the config
    store: Store  # which sources completed their first list
    kube: KubeStats | None  # watch streams (None: state file or no sources)
    resolver: Resolver | None  # resolver role: the cache and its upstreams
    events: EventStats | None = None  # the Event recorder (None: not running)


def histogram_family(h: Histogram, name: str, doc: str) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=cumulative(h.bounds, h.counts),
                                 sum_value=h.sum)


class MetricsCollector(Collector):
    """Everything under /metrics but the process's, read from the running server's parts."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        parts = self.parts
        listen = parts.compiler.cfg.listen
        yield from dns_families(parts.queries, parts.zones, listen)
        yield from self._decisions()
        yield from self._kube()
        if parts.resolver is not None:
            yield from cache_families(parts.resolver, listen)
            yield from forward_families(parts.resolver)
        yield from upstream_families(parts.resolver)
        yield build_info()

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


class Combined(Collector):
    """Several collectors as one (the merge sums what they yield together)."""

    def __init__(self, *parts: Collector) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        for c in self.parts:
            yield from c.collect()


def own_metrics(parts: Parts) -> Collector:
    """This process's metrics: mcdns's, and prometheus-client's process_* and python_*
    (CPU seconds are a counter, so /metrics sums them over the workers; the gauges, such
    as the resident memory, are the first process's)."""
    return Combined(MetricsCollector(parts), ProcessCollector(registry=None),
                    PlatformCollector(registry=None),
                    GCCollector(registry=CollectorRegistry()))  # it registers itself: aside


def registry_for(parts: Parts, workers: WorkerTotals | None = None) -> CollectorRegistry:
    """What /metrics serves: this process's metrics, with the ``workers``' counters added
    (mcdns.ops.merge) and the workers' own metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MergedCollector(own_metrics(parts), workers))
    return registry


def process_registry(parts: Parts) -> CollectorRegistry:
    """This process's metrics alone: what a worker hands the first process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(own_metrics(parts))
    return registry
