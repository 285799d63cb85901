"""The query counters: metrics label combinations as small ints.

Every compiled answer carries its (UDP, TCP) counter index, so counting a query on the
hot path is one list increment. The table owns the registry (it hands the indices to
the answers it encodes); the handler counts into ``counts``; the metrics collector
reads ``totals()`` at scrape time. Bounded: zones x counted types x rcodes x decision
tags x protocols.
"""

from __future__ import annotations

from collections.abc import Iterator

from mcdns.proto import TYPE_NAMES

SlotKey = tuple[int, int, int, int, bool]
"""Zone index (-1: outside every zone), qtype (0: other), rcode, tag, over TCP."""

TAG_NONE, TAG_LOCAL, TAG_IMPORT, TAG_DEGRADED = 0, 1, 2, 3
"""What a service name's answer is, for ``mcdns_answers_total{decision=...}``."""
TAG_NAMES = {TAG_LOCAL: "local", TAG_IMPORT: "import", TAG_DEGRADED: "degraded"}

COUNTED_TYPES = frozenset(TYPE_NAMES)  # types that get their own label; others are 0


class Slots:
    """Label combinations -> counter index, and the counters themselves."""

    def __init__(self) -> None:
        self.index: dict[SlotKey, int] = {}
        self.labels: list[SlotKey] = []
        self.counts: list[int] = []
        self._pairs: dict[tuple[int, int], tuple[int, int]] = {}

    def slot(self, zone: int, qtype: int, rcode: int, tag: int, tcp: bool) -> int:
        key = (zone, qtype if qtype in COUNTED_TYPES else 0, rcode & 0x0F, tag, tcp)
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.labels)
            self.labels.append(key)
            self.counts.append(0)
        return i

    def pair(self, zone: int, qtype: int, rcode: int, tag: int) -> tuple[int, int]:
        """(UDP slot, TCP slot): one tuple per combination, shared by every entry."""
        pair = (self.slot(zone, qtype, rcode, tag, False),
                self.slot(zone, qtype, rcode, tag, True))
        return self._pairs.setdefault(pair, pair)


    def totals(self) -> Iterator[tuple[SlotKey, int]]:
        """(labels, count) of every combination counted at least once."""
        for key, n in zip(list(self.labels), list(self.counts), strict=False):
            if n:
                yield key, n
