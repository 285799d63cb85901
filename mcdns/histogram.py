"""Plain-int histogram buckets: cheap enough to observe on the query path.

Kept free of prometheus-client so the DNS, answer and resolver layers can record without
importing it; the metrics collector turns these into Prometheus histograms at scrape
time. ``timed`` is the one way a call's duration is recorded.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

LATENCY_BOUNDS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                  0.1, 0.25, 0.5, 1.0, 2.5)
PROGRAMMING_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                      10.0)


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


def timed(fn: Callable[P, R], histogram: Histogram) -> Callable[P, R]:
    """``fn`` with the time of every call recorded in ``histogram`` (seconds)."""
    clock, observe = time.perf_counter, histogram.observe

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        start = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            observe(clock() - start)

    return run
