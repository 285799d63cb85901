"""Timings of the watch machinery and the counters it keeps, as plain dataclasses.

Settings are separate from ``Config`` because they are not user keys: production uses
the defaults, tests shrink them so a fault-injection test runs in milliseconds.
Counters are read by the operations code (metrics) and by tests.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """How the watchers pace themselves. One line a field."""

    backoff_base: float = 0.5
    """Seconds before the first retry after an error; doubles each failure."""
    backoff_max: float = 30.0
    """Cap of the retry delay."""
    page_size: int = 500
    """Objects per list page (limit/continue)."""
    list_timeout: float = 60.0
    """Seconds one list page may take."""
    connect_timeout: float = 10.0
    """Seconds to connect and get the headers of a watch."""
    server_timeout: int = 300
    """timeoutSeconds asked of the server for one watch stream (jittered up to +10%)."""
    inactivity: float = 150.0
    """A watch stream silent this long is dropped and reopened (bookmarks count)."""
    discovery_interval: float = 30.0
    """Seconds between checks whether an absent CRD has been installed."""

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (0-based): capped exponential, jittered."""
        delay = min(self.backoff_max, self.backoff_base * (2 ** min(attempt, 30)))
        return random.uniform(delay / 2, delay)

    def watch_timeout(self) -> int:
        return self.server_timeout + random.randint(0, max(0, self.server_timeout // 10))


@dataclass(slots=True)
class KubeStats:
    """Counters of the watch streams, by stream name (e.g. ``endpointslices``)."""

    events: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Watch events by (stream, type): ADDED, MODIFIED, DELETED, BOOKMARK."""
    restarts: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Watch restarts by (stream, reason): gone, timeout, connect, http_500, ..."""
    lists: Counter[str] = field(default_factory=Counter)
    """Complete lists by stream."""
    reduce_errors: Counter[str] = field(default_factory=Counter)
    """Objects skipped because they could not be reduced, by stream."""
    last_event: dict[str, float] = field(default_factory=dict)
    """Wall time of the last event (bookmarks included) by stream."""


class ClientConfigError(Exception):
    """Neither the kubeconfig nor the in-cluster config could be loaded. (Defined here,
    not beside the loader, so the CLI can name it without importing the API client.)"""
