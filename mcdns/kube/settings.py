"""Timings of the watch machinery and the Event recorder, and the counters they keep.

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


@dataclass(frozen=True, slots=True)
class EventSettings:
    """How the Event recorder (``mcdns.kube.events``) paces its writes. One line a field."""

    queue_size: int = 1000
    """Switches waiting to be sent; more are dropped (and counted)."""
    min_interval: float = 1.0
    """Seconds between two writes of one series: counts seen in between are coalesced."""
    rate: float = 10.0
    """Writes per second to the API, all series together (a token bucket)."""
    burst: int = 20
    """Writes the bucket allows at once."""
    finish: float = 360.0
    """A series with no occurrence for this long is over: the next one is a new Event."""
    retry_delay: float = 10.0
    """Seconds before retrying a write the API could not take (jittered by 25%)."""
    max_tries: int = 12
    """Attempts of one write before it is given up."""
    timeout: float = 10.0
    """Seconds one request may take."""


@dataclass(slots=True)
class EventStats:
    """Counters of the Event recorder (``mcdns_events_total{result}``)."""

    created: int = 0
    """Events created (the first occurrence of a series)."""
    updated: int = 0
    """Series updates: PATCHes of an existing Event's series count."""
    dropped: int = 0
    """Switches dropped because the queue was full."""
    errors: int = 0
    """Requests the API refused or that failed."""


class ClientConfigError(Exception):
    """Neither the kubeconfig nor the in-cluster config could be loaded. (Defined here,
    not beside the loader, so the CLI can name it without importing the API client.)"""
