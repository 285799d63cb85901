"""A served zone: its SOA, its negative answers, and where names fall in it.

Negative answers (NXDOMAIN/NODATA) share one body per zone: its SOA, uncompressed,
valid behind any question. ``find_zone`` is the longest-match lookup the table and the
query path use; ``ancestors`` lists the names above a name, down to its zone's apex
(they exist: NODATA, not NXDOMAIN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mcdns.answers import rdata as rd
from mcdns.answers.entry import Entry, make_entry
from mcdns.answers.slots import TAG_NONE, Slots
from mcdns.proto import T_SOA


@dataclass(slots=True, eq=False)
class Zone:
    """A zone mcdns is authoritative for, with its SOA and negative answers."""

    name: str  # lower case, no trailing dot
    wire: bytes
    ttl: int
    index: int = -1  # position in AnswerTable.zones
    reverse: bool = False  # in-addr.arpa / ip6.arpa: lazy names are indexed by name
    serial: int = 0
    negative: bytes = b""  # authority section: the SOA, uncompressed
    slots: Slots | None = None
    _negatives: dict[tuple[int, int], Entry] = field(default_factory=dict)

    def soa(self) -> bytes:
        return rd.soa(self.name, self.serial, self.ttl)

    def rebuild_negative(self) -> None:
        self.negative = rd.rr(self.wire, T_SOA, self.ttl, self.soa())
        self._negatives = {}

    def negative_entry(self, rcode: int, qtype: int) -> Entry:
        """NXDOMAIN or NODATA with this zone's SOA (one entry per rcode and type, for the
        metrics labels; the body is the same)."""
        key = (rcode, qtype)
        e = self._negatives.get(key)
        if e is None:
            slots = self.slots.pair(self.index, qtype, rcode, TAG_NONE) if self.slots else (0, 0)
            e = self._negatives[key] = make_entry(rcode, 0, 1, 0, self.negative, -1, slots)
        return e


def find_zone(zones: Sequence[Zone], wire_name: bytes) -> Zone | None:
    """The zone a lower-case wire name falls in (``zones`` longest first), if any."""
    for zone in zones:
        if wire_name.endswith(zone.wire) and (
            len(wire_name) == len(zone.wire) or is_label_boundary(wire_name, zone.wire)
        ):
            return zone
    return None


def is_label_boundary(wire_name: bytes, suffix: bytes) -> bool:
    """True when ``suffix`` starts at a label boundary of ``wire_name``."""
    i, cut = 0, len(wire_name) - len(suffix)
    while i < cut:
        i += wire_name[i] + 1
    return i == cut


def ancestors(wire: bytes, zone: Zone | None) -> list[bytes]:
    """The ancestors of ``wire`` down to (and including) the zone apex."""
    out = []
    stop = len(zone.wire) if zone is not None else 1
    i = 0
    while len(wire) - i > stop:
        i += wire[i] + 1
        out.append(wire[i:])
    return out
