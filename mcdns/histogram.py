"""Plain-int histogram buckets: cheap enough to observe on the query path.

Kept free of prometheus-client so the DNS, answer and resolver layers can record without
importing it; the metrics collector turns these into Prometheus histograms at scrape
time. The bucket bounds of the metrics CoreDNS exports live here too, copied from its
source, so mcdns's histograms line up with CoreDNS's dashboards bucket for bucket.
"""

from __future__ import annotations

from bisect import bisect_left

TIME_BUCKETS = tuple(0.00025 * 2 ** i for i in range(16))
"""CoreDNS's ``plugin.TimeBuckets`` (plugin/plugin.go): prometheus.ExponentialBuckets(
0.00025, 2, 16), 0.25 ms to 8.192 s; the request and proxy durations use them."""
TIME_BUCKETS_NS = tuple(250_000 << i for i in range(16))
"""The same bounds in nanoseconds, for the query path's integer clock."""
TIME_FIRST_NS = TIME_BUCKETS_NS[0]
SIZE_BUCKETS = (0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0,
                16e3, 32e3, 48e3, 64e3)
"""CoreDNS's request and response size buckets (plugin/metrics/vars/vars.go)."""
QUERY_CLOCK = [0]
"""The query path's clock (``time.perf_counter_ns``) at the start of the answer being
built: a listener sets it as it takes a datagram (a batch of them: once, for the first),
the handler reads it as the answer's start and leaves its own end in it, where the next
answer of a batch starts. One clock read an answer, not two; one per process, as the
clock itself (servers on several threads of one process, as in tests, share it and their
times can be off by each other's)."""
PROGRAMMING_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                      10.0)

SIZE_SLOTS = len(SIZE_BUCKETS) + 1  # +Inf last
SIZE_INDEX = bytes(bisect_left(SIZE_BUCKETS, n) for n in range(65536))
"""A DNS message's size (at most 65,535 octets) -> its size bucket, one lookup."""


class Histogram:
    """Non-cumulative counts per bound (the last one is +Inf) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


def le_text(bound: float) -> str:
    """A bucket bound as Go's Prometheus client writes ``le``: 100 not 100.0, 0.00025."""
    if bound == float("inf"):
        return "+Inf"
    return str(int(bound)) if bound == int(bound) else repr(bound)


def cumulative(bounds: tuple[float, ...], counts: list[int] | tuple[int, ...]
               ) -> list[tuple[str, float]]:
    """Non-cumulative ``counts`` per bound (+Inf last) as Prometheus buckets."""
    out: list[tuple[str, float]] = []
    total = 0
    for bound, n in zip((*bounds, float("inf")), counts, strict=True):
        total += n
        out.append((le_text(bound), total))
    return out
