"""Several processes' metrics as one /metrics: counters and histograms summed, gauges
from the first process.

With ``workers: N`` every process counts the queries it answers, but only the first
serves /metrics. At scrape time the supervisor (mcdns.ops.workers) asks each worker for
its own exposition text; ``parse_totals`` reads it into plain sums, and
``MergedCollector`` adds them to the first process's families. Gauges are the first
process's alone (every process holds the same answers and sources), and so is
``mcdns_answer_switches_total``: every process switches the same answers at the same
moment, and one failover counted N times would be wrong. A family only a worker has is
left out (every process runs the same config, so the first has the same families).

The same rules give prometheus-client's process metrics a meaning for the whole server:
``process_cpu_seconds_total`` (a counter) is every process's CPU, as CoreDNS's is of its
one process, while ``process_resident_memory_bytes`` and the other gauges are the first
process's; ``python_gc_*`` counters are summed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

SampleKey = tuple[str, tuple[tuple[str, str], ...]]
"""A sample's name (``x_total``, ``x_bucket`` ...) and its sorted labels."""
Totals = dict[str, dict[SampleKey, float]]
"""Family name -> sample -> value, for the families that are summed."""

SUMMED_TYPES = frozenset({"counter", "histogram"})
FIRST_ONLY = frozenset({"mcdns_answer_switches"})


class WorkerTotals(Protocol):
    """What the merged /metrics reads from the supervisor."""

    @property
    def running(self) -> int:
        """DNS processes serving now, the first one included."""

    @property
    def restarts(self) -> int:
        """Workers started again after one exited."""

    @property
    def snapshot_misses(self) -> int:
        """Snapshots a worker did not send in time."""

    def totals(self) -> Totals:
        """Every worker's sums: the running ones' last snapshots and the retired ones'."""


def summed_family(name: str, kind: str) -> bool:
    return kind in SUMMED_TYPES and name not in FIRST_ONLY


def _key(sample: Sample) -> SampleKey:
    return sample.name, tuple(sorted(sample.labels.items()))


def parse_totals(text: str) -> Totals:
    """A worker's exposition text, the summed families only."""
    out: Totals = {}
    for fam in text_string_to_metric_families(text):
        if not summed_family(fam.name, fam.type):
            continue
        samples = out.setdefault(fam.name, {})
        for s in fam.samples:
            if s.name.endswith("_created"):  # a timestamp, not a count
                continue
            key = _key(s)
            samples[key] = samples.get(key, 0.0) + s.value
    return out


def add_totals(into: Totals, more: Totals) -> None:
    """``into`` += ``more``, sample by sample (``more`` is left as it is)."""
    for name, samples in more.items():
        mine = into.setdefault(name, {})
        for key, value in samples.items():
            mine[key] = mine.get(key, 0.0) + value


def with_added(fam: Metric, more: Mapping[SampleKey, float]) -> Metric:
    """A copy of ``fam`` with ``more`` added; samples only the workers have come last."""
    out = Metric(fam.name, fam.documentation, fam.type, fam.unit)
    left = dict(more)
    for s in fam.samples:
        extra = left.pop(_key(s), 0.0)
        out.samples.append(s._replace(value=s.value + extra) if extra else s)
    for (name, labels), value in left.items():
        out.samples.append(Sample(name, dict(labels), value))
    return out


class MergedCollector(Collector):
    """This process's families with the workers' sums added, and the workers' own metrics.

    Without workers (``workers: 1``) it is the process's families, ``mcdns_workers`` 1 and
    no restarts."""

    def __init__(self, own: Collector, workers: WorkerTotals | None = None) -> None:
        self.own = own
        self.workers = workers

    def collect(self) -> Iterator[Metric]:
        workers = self.workers
        extra = workers.totals() if workers is not None else {}
        for fam in self.own.collect():
            more = extra.get(fam.name)
            yield with_added(fam, more) if more and summed_family(fam.name, fam.type) else fam
        yield GaugeMetricFamily("mcdns_workers", "DNS processes running (the first included; "
                                "a restarted worker counts once it serves)",
                                value=workers.running if workers is not None else 1)
        yield CounterMetricFamily("mcdns_worker_restarts", "Workers started again after one "
                                  "exited", value=workers.restarts if workers else 0)
        yield CounterMetricFamily(
            "mcdns_worker_snapshot_misses", "Scrapes at which a worker did not send its "
            "counters in time (its previous snapshot was used)",
            value=workers.snapshot_misses if workers else 0)
