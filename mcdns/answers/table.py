"""The answer table: every servable (name, type) as a pre-encoded DNS response body.

Owners (one per service, plus the zone apexes) hand in their records; the table merges
records by name, encodes each RRset once with dnslib, and keeps the bytes. The query path
then copies the client's ID and question in front of a stored body: no dnslib per query.

A stored body was packed behind a question for the canonical name at offset 12. A query
for the same name (in any letter case) has a question of the same length, so the name
compression pointers in the body stay valid when it follows the client's own question.

Negative answers (NXDOMAIN/NODATA) share one body per zone: the zone's SOA, encoded
without compression so it is valid behind any question.
"""

from __future__ import annotations

import struct
import time
from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from dnslib import NS, QTYPE, RD, RR, SOA, TXT, DNSHeader, DNSQuestion, DNSRecord
from dnslib.label import DNSBuffer

from mcdns.answers.records import Records

CLASS_IN = 1
RCODE_NOERROR = 0
RCODE_NXDOMAIN = 3
T_ANY = 255
T_CNAME = QTYPE.CNAME
T_SOA = QTYPE.SOA
T_SRV = QTYPE.SRV

Owner = Hashable


@dataclass(frozen=True, slots=True)
class Entry:
    """A ready response body and what the header needs to go with it."""

    rcode: int
    counts: bytes  # QD, AN, NS, AR (8 bytes) without EDNS
    counts_edns: bytes  # the same with one more additional record (OPT)
    body: bytes  # sections after the question
    size: int  # header + question + body, without OPT (for the canonical question)
    tail: int  # the response's size minus the index past the query's name
    minimal: Entry | None = None  # the same without the additional section, if any


def name_wire(name: str) -> bytes:
    """Lower-case wire form of an absolute name ("a.b." -> b"\\x01a\\x01b\\x00")."""
    out = bytearray()
    for label in name.lower().rstrip(".").split("."):
        if label:
            raw = label.encode("idna") if not label.isascii() else label.encode()
            out.append(len(raw))
            out += raw
    out.append(0)
    return bytes(out)


def make_entry(rcode: int, an: int, ns: int, ar: int, body: bytes, qlen: int,
               minimal: Entry | None = None) -> Entry:
    return Entry(rcode, struct.pack(">HHHH", 1, an, ns, ar),
                 struct.pack(">HHHH", 1, an, ns, ar + 1), body, 12 + qlen + len(body),
                 len(body) + 4, minimal)


@dataclass(slots=True, eq=False)
class Zone:
    """A zone mcdns is authoritative for, with its SOA and negative answers."""

    name: str  # lower case, no trailing dot
    wire: bytes
    ttl: int
    serial: int = 0
    negative: bytes = b""  # authority section: the SOA, uncompressed
    nxdomain: Entry | None = None  # negative answers with that authority section
    nodata: Entry | None = None

    def soa(self) -> SOA:
        return SOA(f"ns.dns.{self.name}.", f"hostmaster.{self.name}.",
                   (self.serial, 7200, 1800, 86400, self.ttl))

    def rebuild_negative(self) -> None:
        buf = DNSBuffer()
        RR(self.name + ".", T_SOA, rdata=self.soa(), ttl=self.ttl).pack(_NoCompress(buf))
        self.negative = bytes(buf.data)
        self.nxdomain = make_entry(RCODE_NXDOMAIN, 0, 1, 0, self.negative, 0)
        self.nodata = make_entry(RCODE_NOERROR, 0, 1, 0, self.negative, 0)


class _NoCompress:
    """A DNSBuffer facade that never compresses names (bodies shared across qnames)."""

    def __init__(self, buf: DNSBuffer) -> None:
        self._buf = buf

    def encode_name(self, name: object) -> None:
        self._buf.encode_name_nocompress(name)

    def __getattr__(self, attr: str) -> object:
        return getattr(self._buf, attr)


class AnswerTable:
    """Pre-encoded answers by (name, type), merged from owners, with name existence."""

    def __init__(self, zones: Iterable[str], ttl: int) -> None:
        self.ttl = ttl
        self.zones: list[Zone] = sorted(
            (Zone(z, name_wire(z + "."), ttl) for z in zones), key=lambda z: -len(z.wire))
        self.entries: dict[bytes, Entry] = {}  # name wire + qtype + qclass -> entry
        self.aliases: dict[bytes, Entry] = {}  # CNAME owner name wire -> entry for any type
        self.exists: dict[bytes, int] = {}  # name wire -> records here or below (ENTs too)
        self._owned: dict[Owner, Records] = {}
        self._owners_of: dict[str, set[Owner]] = defaultdict(set)
        self._merged: dict[str, dict[int, list[RD]]] = {}
        self._types: dict[str, set[int]] = {}
        self._dirty_zones: set[Zone] = set()
        self._present: set[bytes] = set()  # names that hold records themselves
        self._bare: dict[Owner, set[bytes]] = {}
        self._alias_target: dict[str, str] = {}  # CNAME owner -> target
        self._aliases_of: dict[str, set[str]] = {}  # target -> CNAME owners
        for zone in self.zones:
            zone.serial = int(time.time())
            zone.rebuild_negative()
            self._set_apex(zone)

    # ---- lookups used by the handler --------------------------------------------------

    def zone_of(self, wire_name: bytes) -> Zone | None:
        """The served zone a lower-case wire name falls in (longest match), if any."""
        for zone in self.zones:
            if wire_name.endswith(zone.wire) and (
                len(wire_name) == len(zone.wire) or _is_label_boundary(wire_name, zone.wire)
            ):
                return zone
        return None

    # ---- writers ------------------------------------------------------------------------

    def set_owner(self, owner: Owner, records: Records) -> bool:
        """Replace everything ``owner`` contributes; False when nothing changed."""
        old = self._owned.get(owner, {})
        if old == records:
            return False
        if records:
            self._owned[owner] = records
        else:
            self._owned.pop(owner, None)
        names = set(old) | set(records)
        for name in names:
            owners = self._owners_of[name]
            if name in records:
                owners.add(owner)
            else:
                owners.discard(owner)
            self._merge(name)
        for name in names:
            self._compile(name)
        return True

    def flush(self) -> None:
        """Bump the serial of every zone whose data changed, and rebuild its SOA answers."""
        now = int(time.time())
        dirty, self._dirty_zones = self._dirty_zones, set()
        for zone in dirty:
            zone.serial = max(zone.serial + 1, now) & 0xFFFFFFFF
            zone.rebuild_negative()
            self._set_apex(zone)

    # ---- internals ----------------------------------------------------------------------

    def _set_apex(self, zone: Zone) -> None:
        apex = zone.name + "."
        recs: Records = {apex: {T_SOA: [zone.soa()], QTYPE.NS: [NS(f"ns.dns.{apex}")]}}
        owner = ("apex", zone.name)
        self._owned[owner] = recs
        self._owners_of[apex].add(owner)
        self._merge(apex)
        self._compile(apex, bump=False)

    def set_txt(self, owner: Owner, name: str, text: str) -> None:
        self.set_owner(owner, {name: {QTYPE.TXT: [TXT(text)]}})

    def set_bare_names(self, owner: Owner, names: Iterable[str]) -> None:
        """Names that exist without records of their own (NODATA, not NXDOMAIN)."""
        new = {name_wire(n) for n in names}
        old = self._bare.get(owner, set())
        for wire in old - new:
            self._unref(wire)
        for wire in new - old:
            self.exists[wire] = self.exists.get(wire, 0) + 1
        if new:
            self._bare[owner] = new
        else:
            self._bare.pop(owner, None)

    def _unref(self, wire: bytes) -> None:
        n = self.exists.get(wire, 0) - 1
        if n > 0:
            self.exists[wire] = n
        else:
            self.exists.pop(wire, None)

    def _merge(self, name: str) -> None:
        merged: dict[int, list[RD]] = {}
        for owner in sorted(self._owners_of.get(name, ()), key=repr):
            for qtype, rds in self._owned[owner].get(name, {}).items():
                into = merged.setdefault(qtype, [])
                into.extend(rd for rd in rds if rd not in into)
        if merged:
            self._merged[name] = merged
        else:
            self._merged.pop(name, None)
            self._owners_of.pop(name, None)

    def _compile(self, name: str, bump: bool = True) -> None:
        wire = name_wire(name)
        zone = self.zone_of(wire)
        for qtype in self._types.pop(name, ()):
            self.entries.pop(wire + struct.pack(">HH", qtype, CLASS_IN), None)
        self.aliases.pop(wire, None)
        self._set_alias_target(name, None)
        merged = self._merged.get(name)
        if bump and zone is not None:
            self._dirty_zones.add(zone)
        if not merged:
            self._unpresent(wire, zone)
        else:
            self._present_add(wire, zone)
            types = set(merged) | {T_ANY}
            if T_CNAME in merged:
                self.aliases[wire] = self._encode(name, T_CNAME, merged)
                self._set_alias_target(name, str(merged[T_CNAME][0].label).lower())
                types |= {QTYPE.A, QTYPE.AAAA}  # chased in-zone (CoreDNS does the same)
            for qtype in types:
                self.entries[wire + struct.pack(">HH", qtype, CLASS_IN)] = self._encode(
                    name, qtype, merged)
            self._types[name] = types
        for alias in sorted(self._aliases_of.get(name, ())):
            self._compile(alias, bump)

    def _set_alias_target(self, name: str, target: str | None) -> None:
        old = self._alias_target.pop(name, None)
        if old is not None:
            self._aliases_of[old].discard(name)
            if not self._aliases_of[old]:
                del self._aliases_of[old]
        if target is not None and target != name:
            self._alias_target[name] = target
            self._aliases_of.setdefault(target, set()).add(name)

    # A name with records counts once for itself and each ancestor up to the zone apex,
    # so ``exists`` answers "NODATA, not NXDOMAIN" for empty non-terminals too.

    def _present_add(self, wire: bytes, zone: Zone | None) -> None:
        if wire in self._present:
            return
        self._present.add(wire)
        for anc in _ancestors(wire, zone):
            self.exists[anc] = self.exists.get(anc, 0) + 1

    def _unpresent(self, wire: bytes, zone: Zone | None) -> None:
        if wire not in self._present:
            return
        self._present.discard(wire)
        for anc in _ancestors(wire, zone):
            self._unref(anc)

    def _encode(self, name: str, qtype: int, merged: dict[int, list[RD]]) -> Entry:
        rec = DNSRecord(DNSHeader(id=0, qr=1, aa=1, rd=0), q=DNSQuestion(name, qtype))
        if T_CNAME in merged:
            self._answer(rec, name, T_CNAME, merged[T_CNAME])
            target = str(merged[T_CNAME][0].label).lower()
            chased = self._merged.get(target, {})
            if qtype in (QTYPE.A, QTYPE.AAAA) and T_CNAME not in chased:
                self._answer(rec, target, qtype, chased.get(qtype, ()))
        else:
            for t in sorted(merged) if qtype == T_ANY else [qtype]:
                self._answer(rec, name, t, merged.get(t, ()))
        minimal = None
        if qtype in (T_SRV, QTYPE.NS) and T_CNAME not in merged:
            minimal = self._pack(rec, name, None)
            self._add_targets(rec, merged.get(qtype, ()))
            if not rec.ar:
                minimal = None
        return self._pack(rec, name, minimal)

    def _answer(self, rec: DNSRecord, name: str, qtype: int, rds: Iterable[RD]) -> None:
        for rd in rds:
            rec.add_answer(RR(name, qtype, rdata=rd, ttl=self.ttl))

    def _pack(self, rec: DNSRecord, name: str, minimal: Entry | None) -> Entry:
        packed = rec.pack()
        qlen = len(name_wire(name)) + 4
        return make_entry(RCODE_NOERROR, len(rec.rr), len(rec.auth), len(rec.ar),
                          packed[12 + qlen:], qlen, minimal)

    def _add_targets(self, rec: DNSRecord, rds: Iterable[RD]) -> None:
        """A/AAAA of SRV and NS targets in the additional section, as CoreDNS adds them."""
        seen: set[str] = set()
        for rd in rds:
            target = str(rd.target if hasattr(rd, "target") else rd.label).lower()
            if target in seen:
                continue
            seen.add(target)
            for t in (QTYPE.A, QTYPE.AAAA):
                for addr in self._merged.get(target, {}).get(t, ()):
                    rec.add_ar(RR(target, t, rdata=addr, ttl=self.ttl))


def _is_label_boundary(wire_name: bytes, suffix: bytes) -> bool:
    """True when ``suffix`` starts at a label boundary of ``wire_name``."""
    i, cut = 0, len(wire_name) - len(suffix)
    while i < cut:
        i += wire_name[i] + 1
    return i == cut


def _ancestors(wire: bytes, zone: Zone | None) -> list[bytes]:
    """``wire`` and its ancestors down to (and including) the zone apex."""
    out = [wire]
    stop = len(zone.wire) if zone is not None else 1
    i = 0
    while len(wire) - i > stop:
        i += wire[i] + 1
        out.append(wire[i:])
    return out

