"""A served zone: its SOA, its negative answers, and where names fall in it.

Negative answers (NXDOMAIN/NODATA) share one body per zone: its SOA, uncompressed,
valid behind any question. ``ZoneIndex.find`` is the longest-match lookup the table and
the query path use; ``ancestors`` lists the names above a name, down to its zone's apex
(they exist: NODATA, not NXDOMAIN).

A zone is *claimed* (mcdns is authoritative: NXDOMAIN for names it does not know) or
not: ``in-addr.arpa`` and ``ip6.arpa`` are always in the table, unclaimed, so that the
PTR names of every address mcdns hands out are indexed, but only the reverse zones of
the cluster's networks (``cidr_zones``, as CoreDNS expands a CIDR written as a zone)
are claimed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
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
    claimed: bool = True  # authoritative (SOA, NXDOMAIN); else only known PTR answers
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


_ARPA = b"\x04arpa\x00"


class ZoneIndex:
    """Longest-match zone lookup. The few forward zones are scanned (two, usually: the
    hot path's misses look here); the reverse zones, which a CIDR can make a hundred
    of, are found by walking the name's suffixes through a dict."""

    __slots__ = ("_arpa", "_other")

    def __init__(self, zones: Iterable[Zone]) -> None:
        zones = sorted(zones, key=lambda z: -len(z.wire))
        self._other = [z for z in zones if not z.wire.endswith(_ARPA)]
        self._arpa = {z.wire: z for z in zones if z.wire.endswith(_ARPA)}

    def find(self, wire_name: bytes) -> Zone | None:
        for zone in self._other:  # find_zone inlined: no arpa name is in these zones
            if wire_name.endswith(zone.wire) and (
                len(wire_name) == len(zone.wire) or is_label_boundary(wire_name, zone.wire)
            ):
                return zone
        if not wire_name.endswith(_ARPA):
            return None
        arpa, i, n = self._arpa, 0, len(wire_name) - 1
        while i < n:
            found = arpa.get(wire_name[i:])
            if found is not None:
                return found
            i += wire_name[i] + 1
        return None


def cidr_zones(cidr: str) -> list[str]:
    """The reverse zones of a network, as CoreDNS makes them of a CIDR written as a zone
    (``plugin/pkg/cidr``: Class, then Reverse): the prefix rounded up to a multiple of 8
    bits (IPv4) or 4 bits (IPv6, one nibble), one zone per resulting network, lower
    case, no trailing dot. ``10.96.0.0/12`` is ``96.10.in-addr.arpa`` ...
    ``111.10.in-addr.arpa``; ``0.0.0.0/0`` is ``in-addr.arpa``."""
    net = ipaddress.ip_network(cidr, strict=False)
    step = 8 if net.version == 4 else 4
    prefix = -(-net.prefixlen // step) * step  # rounded up to the label size
    out = []
    for sub in net.subnets(new_prefix=prefix):
        labels = sub.network_address.reverse_pointer.split(".")
        out.append(".".join(labels[(net.max_prefixlen - prefix) // step:]))
    return out


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
