"""The query counters: metrics label combinations as small ints, and a block of counts each.

Every compiled answer carries its (UDP, TCP) slot, so counting a query on the hot path
is a few increments of one short list at fixed indices: no objects, no calls. The table
owns the registry (it hands the slots to the answers it encodes); the handler counts
into ``data``; the metrics collector reads ``blocks()`` at scrape time.

One slot is (zone index, qtype, rcode, tag, TCP); ``data[slot]`` is its block for IPv4
clients, ``data[slot + FAMILY]`` for IPv6 ones. A block holds:

- the request and the response bytes (``Q_BYTES``, ``R_BYTES``: the histograms' sums)
  and the nanoseconds the answers took (``LAT_NS``);
- ``LAT_SLOTS`` counts by time to answer (CoreDNS's time buckets) from ``LAT``; the first
  bucket's count is left at 0: it is the grid's sum minus the others' (nearly every answer
  takes less than its 250 us, and so costs no increment here);
- ``GRID_CELLS`` counts by request size bucket x response size bucket (CoreDNS's size
  buckets) from ``GRID``: a query is one count, so the block's requests are the grid's sum.

Bounded: zones x counted types x rcodes x tags x protocols, times two families.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from mcdns.histogram import SIZE_INDEX, SIZE_SLOTS, TIME_BUCKETS_NS, TIME_FIRST_NS

SlotKey = tuple[int, int, int, int, bool]
"""Zone index (-1: outside every zone), qtype (0: other), rcode, tag, over TCP."""

TAG_NONE, TAG_LOCAL, TAG_IMPORT, TAG_DEGRADED = 0, 1, 2, 3
"""What a service name's answer is, for ``mcdns_answers_total{decision=...}``."""
TAG_NAMES = {TAG_LOCAL: "local", TAG_IMPORT: "import", TAG_DEGRADED: "degraded"}
TAG_CACHE, TAG_FORWARD, TAG_SERVER, TAG_CHAOS = 4, 5, 6, 7
"""Answers not from the table: the resolver's cache, its upstreams, the server itself
(errors, refusals: CoreDNS's empty ``plugin``) and the CHAOS class names."""
PLUGINS = {TAG_NONE: "mcdns", TAG_LOCAL: "mcdns", TAG_IMPORT: "mcdns", TAG_DEGRADED: "mcdns",
           TAG_CACHE: "cache", TAG_FORWARD: "forward", TAG_SERVER: "", TAG_CHAOS: "chaos"}
"""A tag's ``plugin`` label of ``mcdns_dns_responses_total``: what wrote the answer."""

QTYPE_LABELS = {1: "A", 28: "AAAA", 5: "CNAME", 48: "DNSKEY", 43: "DS", 15: "MX", 50: "NSEC3",
                47: "NSEC", 2: "NS", 12: "PTR", 46: "RRSIG", 6: "SOA", 33: "SRV", 16: "TXT",
                65: "HTTPS", 64: "SVCB", 251: "IXFR", 252: "AXFR", 255: "ANY"}
"""The ``type`` label: CoreDNS's fixed list (plugin/metrics/vars/monitor.go); others
count as 0, "other"."""
COUNTED_TYPES = frozenset(QTYPE_LABELS)

Q_BYTES, R_BYTES, LAT_NS = 0, 1, 2
LAT = 3
LAT_SLOTS = len(TIME_BUCKETS_NS) + 1  # +Inf last
GRID = LAT + LAT_SLOTS
GRID_CELLS = SIZE_SLOTS * SIZE_SLOTS
BLOCK = GRID + GRID_CELLS
FAMILY = 1  # from a slot's IPv4 block to its IPv6 one
GRID_ROW = bytes(GRID + i * SIZE_SLOTS for i in SIZE_INDEX)
"""A request's size (at most 65,535 octets) -> the start of its row in the grid."""
GRID_COL = SIZE_INDEX
"""A response's size -> its column."""


class Slots:
    """Label combinations -> slot (the index of its first block in ``data``), the counts."""

    def __init__(self) -> None:
        self.index: dict[SlotKey, int] = {}
        self.labels: list[SlotKey] = []
        self.data: list[list[int]] = []
        self.panics = 0
        """Exceptions caught while answering (the answer was SERVFAIL)."""
        self._pairs: dict[tuple[int, int], tuple[int, int]] = {}

    def slot(self, zone: int, qtype: int, rcode: int, tag: int, tcp: bool) -> int:
        key = (zone, qtype if qtype in COUNTED_TYPES else 0, rcode & 0x0F, tag, tcp)
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.data)
            self.labels.append(key)
            self.data.extend(([0] * BLOCK, [0] * BLOCK))  # in place: the handler holds it
        return i

    def pair(self, zone: int, qtype: int, rcode: int, tag: int) -> tuple[int, int]:
        """(UDP slot, TCP slot): one tuple per combination, shared by every entry."""
        pair = (self.slot(zone, qtype, rcode, tag, False),
                self.slot(zone, qtype, rcode, tag, True))
        return self._pairs.setdefault(pair, pair)

    def key(self, slot: int) -> SlotKey:
        return self.labels[slot // 2]

    def record(self, slot: int, v6: bool, qsize: int, rsize: int, ns: int) -> None:
        """Count one answer off the hot path (which does the same inline): its sizes in
        octets and the nanoseconds it took."""
        block = self.data[slot + FAMILY if v6 else slot]
        block[GRID_ROW[qsize] + GRID_COL[rsize]] += 1
        block[Q_BYTES] += qsize
        block[R_BYTES] += rsize
        block[LAT_NS] += ns
        if ns > TIME_FIRST_NS:
            late(block, ns)

    def blocks(self) -> Iterator[tuple[SlotKey, bool, list[int]]]:
        """(labels, IPv6, block) of every combination and family counted at least once;
        each block is a copy, its first time bucket filled in."""
        data = list(self.data)
        for n, key in enumerate(list(self.labels)):
            for v6 in (False, True):
                block = list(data[2 * n + v6])
                answers = sum(block[GRID:])
                if answers:
                    block[LAT] = answers - sum(block[LAT + 1:LAT + LAT_SLOTS])
                    yield key, v6, block


def late(block: list[int], ns: int) -> None:
    """Count an answer that took ``ns`` nanoseconds, more than the first time bucket's
    250 us, in its bucket of ``block`` (the last one is +Inf)."""
    block[LAT + bisect_left(TIME_BUCKETS_NS, ns)] += 1
