"""The answer table: every servable (name, type) as a pre-encoded DNS response body.

Owners (one per service, plus the zone apexes and a few static names) hand in their
records; the table encodes each RRset once and keeps only bytes. The query path copies
the client's ID and question in front of a stored body: nothing is built per query.

Every answer record is owned by the question's name and written with the compression
pointer 0xC00C; a query for that name (in any letter case) has a question of the same
length at offset 12, so the stored body is valid behind the client's own question. Names
inside record data and owners of additional records are written uncompressed.

The entries are the single copy of the data: a name held by one owner keeps nothing
else; only names held by several owners keep each owner's records, to merge them.
Negative answers (NXDOMAIN/NODATA) share one body per zone: its SOA, uncompressed,
valid behind any question.

Not every name is kept compiled. An owner names its *hot* names (a service's own names,
which nearly every query asks for); its other names (endpoint names, ``_port._proto``
SRV names, PTR names) are *lazy*: nothing of them is kept but, for PTR names, which
owners hold them. A query for a lazy name asks the owner's records again
(``records_of``, from the compiler's last decision, so they are the records last handed
in) and encodes the answer then; the handler memoises it until the table changes. A
service's hot names are ~1 in 8 of its names, and the memory goes with it. Even a hot
name keeps only its address answers compiled: its SRV answer (``LAZY_TYPES``), asked far
less often and the largest body with its glue, is encoded the same way when first asked.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass, field

from cachetools import LRUCache

from mcdns.answers import rdata as rd
from mcdns.answers.rdata import (
    CLASS_IN,
    QNAME_POINTER,
    T_A,
    T_AAAA,
    T_ANY,
    T_CNAME,
    T_NS,
    T_PTR,
    T_SOA,
    T_SRV,
    T_TXT,
    name_wire,
)
from mcdns.answers.revindex import ReverseIndex, RevKey

NEGATIVE_CACHE_MAX = 65536
RCODE_NOERROR = 0
TYPES = (T_A, T_AAAA, T_CNAME, T_SRV, T_PTR, T_TXT, T_NS, T_SOA)  # the types owners give
GLUED = (T_SRV, T_NS)  # answers with target addresses in the additional section
_TYPE_SUFFIX = {t: struct.pack(">HH", t, CLASS_IN) for t in (*TYPES, T_ANY)}
_COUNTS: dict[tuple[int, int, int], bytes] = {}
_HEADS: dict[tuple[int, int, int, int], tuple[bytes, ...]] = {}

Owner = Hashable
Records = Mapping[str, Mapping[int, list[bytes]]]  # name text -> qtype -> rdata
OwnerOfFn = Callable[[bytes], "Owner | None"]  # the owner a lazy (forward) name would have
RecordsOfFn = Callable[[Owner], Records]  # an owner's records, as last handed in
TagsOfFn = Callable[[Owner], Mapping[str, int]]  # an owner's metrics tags, as last handed in
LAZY_TYPES = (T_SRV,)  # types a hot name answers on demand (when its owner is lazy)
BUILT_OWNERS = 64  # owners whose lazy records are kept decoded (an LRU)
TAG_NONE, TAG_LOCAL, TAG_IMPORT, TAG_DEGRADED = 0, 1, 2, 3
RRsets = dict[int, tuple[bytes, ...]]  # qtype -> rdata


@dataclass(frozen=True, slots=True)
class Entry:
    """A ready response body and what the header needs to go with it.

    One per compiled answer, so it holds only what the query path reads; rcode and
    counts are read back from the shared header bytes when the slow path needs them."""

    heads: tuple[bytes, ...]  # header bytes 2-11 (flags, counts), see _heads()
    heads_edns: tuple[bytes, ...]  # the same with one more additional record (OPT)
    body: bytes  # sections after the question
    tail: int  # the response's size minus the index past the query's name
    answers_len: int = -1  # bytes of ``body`` before the additional section (-1: no glue)
    slots: tuple[int, int] = (0, 0)  # metrics counter index for (UDP, TCP)

    @property
    def rcode(self) -> int:
        return self.heads[0][1] & 0x0F

    @property
    def counts(self) -> bytes:
        """QD, AN, NS, AR (8 bytes) without EDNS."""
        return self.heads[0][2:]

    def size(self, name_len: int) -> int:
        """The response's size (without OPT) behind a question for a name of
        ``name_len`` octets (every question an entry answers has its name's length)."""
        return 12 + name_len + self.tail

    def minimal(self) -> Entry | None:
        """The same answer without its additional section (None when it has none)."""
        if self.answers_len < 0:
            return None
        an, ns = struct.unpack_from(">HH", self.counts, 2)
        return make_entry(self.rcode, an, ns, 0, self.body[:self.answers_len], -1,
                          self.slots)


def _heads(rcode: int, an: int, ns: int, ar: int) -> tuple[bytes, ...]:
    """Header bytes 2-11 of an authoritative answer, shared by every entry with the same
    rcode and counts (a few dozen combinations). Index: bit 0 the query's RD, bit 1 its
    CD (both copied), bit 2 the server's RA."""
    key = (rcode, an, ns, ar)
    got = _HEADS.get(key)
    if got is None:
        counts = _counts(an, ns, ar)
        got = _HEADS[key] = tuple(
            bytes((0x84 | (i & 1), (0x80 if i & 4 else 0) | (0x10 if i & 2 else 0) | rcode))
            + counts for i in range(8))
    return got


def _counts(an: int, ns: int, ar: int) -> bytes:
    key = (an, ns, ar)
    got = _COUNTS.get(key)
    if got is None:
        got = _COUNTS[key] = struct.pack(">HHHH", 1, an, ns, ar)
    return got


def make_entry(rcode: int, an: int, ns: int, ar: int, body: bytes,
               answers_len: int = -1, slots: tuple[int, int] = (0, 0)) -> Entry:
    return Entry(_heads(rcode, an, ns, ar), _heads(rcode, an, ns, ar + 1), body,
                 len(body) + 4, answers_len, slots)


# Types that get their own metrics label; others count as type 0 ("other").
COUNTED_TYPES = frozenset({1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 64, 65, 255})
SlotKey = tuple[int, int, int, int, bool]  # zone index, qtype, rcode, tag, tcp


class Slots:
    """Metrics label combinations as small ints: counting a query is one list increment.

    Bounded: zones x counted types x rcodes x tags x protocols.
    """

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


class _Shared:
    """Records of a name held by several owners, kept per owner to merge them."""

    __slots__ = ("by_owner",)

    def __init__(self) -> None:
        self.by_owner: dict[Owner, RRsets] = {}


class _Own:
    """What one owner contributes, kept to replace it on its next set_owner.

    Its compiled names and its lazy reverse names share one tuple (one per owner, and
    there is an owner per service): ``keys[:split]`` and ``keys[split:]``."""

    __slots__ = ("keys", "sig", "split", "zones")

    def __init__(self) -> None:
        self.keys: tuple[RevKey, ...] = ()
        self.split = 0
        self.zones = 0  # bit i: lazy names (or deferred types) in zones[i]
        self.sig = 0  # hash of the records last handed in

    @property
    def names(self) -> tuple[bytes, ...]:
        """Compiled (hot) names."""
        return self.keys[:self.split]  # type: ignore[return-value]

    @property
    def rev(self) -> tuple[RevKey, ...]:
        """Lazy reverse names, by _rev_key."""
        return self.keys[self.split:]


class _Holders:
    """Owners of a lazy reverse name held by more than one owner."""

    __slots__ = ("owners",)

    def __init__(self, *owners: Owner) -> None:
        self.owners: list[Owner] = list(owners)


class AnswerTable:
    """Pre-encoded answers by (name, type), merged from owners, with name existence."""

    def __init__(self, zones: Iterable[str], ttl: int, owner_of: OwnerOfFn | None = None,
                 records_of: RecordsOfFn | None = None,
                 tags_of: TagsOfFn | None = None, ptr_zone: str = "") -> None:
        self.ttl = ttl
        self.ptr_zone = name_wire(ptr_zone + ".") if ptr_zone else b""  # its PTR names win
        self.zones: list[Zone] = sorted(
            (Zone(z, name_wire(z + "."), ttl, reverse=z == "arpa" or z.endswith(".arpa"))
             for z in zones), key=lambda z: -len(z.wire))
        self.owner_of = owner_of
        self.records_of = records_of
        self.tags_of = tags_of
        # Lazy reverse names -> owners, keyed by _rev_key (the address as an int), in a
        # map made compact for IPv4: there is one per pod and ClusterIP.
        self.reverse: ReverseIndex[Owner | _Holders] = ReverseIndex()
        self._owners: dict[Owner, _Own] = {}
        self._built: LRUCache[Owner, dict[bytes, RRsets]] = LRUCache(BUILT_OWNERS)
        self.slots = Slots()
        for i, zone in enumerate(self.zones):
            zone.index = i
            zone.slots = self.slots
        self.entries: dict[bytes, Entry] = {}  # name wire + qtype + class -> entry
        self.aliases: dict[bytes, Entry] = {}  # CNAME owner name wire -> entry for any type
        self.names: dict[bytes, Owner | _Shared] = {}  # names that hold records
        self.ents: dict[bytes, int] = {}  # names with records below them, or bare names
        # The query path's memo of negative answers (name + type + class -> entry);
        # emptied on every change to the table, bounded by NEGATIVE_CACHE_MAX.
        self.negative_cache: dict[bytes, Entry] = {}
        self._bare: dict[Owner, set[bytes]] = {}
        self._aliases_of: dict[bytes, set[bytes]] = {}  # CNAME target -> CNAME owners
        self._dirty_zones: set[Zone] = set()
        self._pending: dict[bytes, RRsets] = {}  # names being recompiled by set_owner
        self._lazy_context: dict[bytes, RRsets] = {}  # the same owner's lazy names (glue)
        self._tags: dict[bytes, int] = {}  # their metrics tags
        for zone in self.zones:
            zone.serial = int(time.time())
            zone.rebuild_negative()
            self._set_apex(zone)

    # ---- lookups ------------------------------------------------------------------------

    def zone_of(self, wire_name: bytes) -> Zone | None:
        """The served zone a lower-case wire name falls in (longest match), if any."""
        for zone in self.zones:
            if wire_name.endswith(zone.wire) and (
                len(wire_name) == len(zone.wire) or _is_label_boundary(wire_name, zone.wire)
            ):
                return zone
        return None

    def rrsets(self, wire_name: bytes) -> RRsets:
        """The name's records as served (merged over owners)."""
        held = self.names.get(wire_name)
        if held is None or self._defers(held):
            return self._lazy_lookup(wire_name)[1]
        out: RRsets = {}
        for qtype in TYPES:
            e = self.entries.get(wire_name + _TYPE_SUFFIX[qtype])
            if e is not None:
                rds = rd.answers_of(e.body, struct.unpack_from(">H", e.counts, 2)[0], qtype)
                if rds:
                    out[qtype] = tuple(rds)
        return out

    def lazy_entry(self, wire: bytes, qtype: int) -> tuple[bool, Entry | None]:
        """(exists, answer) for a name not kept compiled, or a hot name's deferred type:
        the answer is encoded now, with the owner's records at hand for the additional
        section; None when the name has no such records."""
        exists, sets, owner = self._lazy_lookup(wire)
        if qtype not in sets:
            return exists, None
        context = self._built_records(owner) if owner is not None else {}
        self._lazy_context = context  # the targets' addresses, as during set_owner
        self._pending = {wire: {**context.get(wire, {}), **sets}}
        if owner is not None and self.tags_of is not None:
            self._tags = {name_wire(n): t for n, t in self.tags_of(owner).items()}
        try:
            return True, self._encode(wire, qtype, sets)
        finally:
            self._pending, self._lazy_context, self._tags = {}, {}, {}

    def _lazy_lookup(self, wire: bytes) -> tuple[bool, RRsets, Owner | None]:
        """(exists, records, owner) of a name that is not kept compiled, or of a hot
        name whose owner defers some of its types; (False, {}, None) for names no owner
        has. ``owner`` is the lazy owner whose records hold the name (the first one for
        a reverse name held by several), or None."""
        named = self.names.get(wire)
        if named is not None:
            if not self._defers(named):
                return True, {}, None
            return True, self._built_records(named).get(wire, {}), named
        held = self.reverse.get(_rev_key(wire))
        if held is not None:
            owners = held.owners if isinstance(held, _Holders) else [held]
            by_owner = {o: self._built_records(o).get(wire, {}) for o in owners}
            sets = by_owner[owners[0]] if len(owners) == 1 else _merge(by_owner, self.ptr_zone)
            return True, sets, owners[0]
        if self.owner_of is None or self.records_of is None:
            return False, {}, None
        owner = self.owner_of(wire)
        if owner is None or not self._is_lazy(owner):
            return False, {}, None
        recs = self._built_records(owner)
        found = recs.get(wire)
        if found:
            return True, found, owner
        # An empty non-terminal of this owner (``_tcp.<svc>``, ``<cluster>.<svc>``)?
        return any(len(n) > len(wire) and n.endswith(wire) and _is_label_boundary(n, wire)
                   for n in recs), {}, None

    def served_names(self) -> set[bytes]:
        """Every name with records, compiled or lazy (for tests and tools: it rebuilds
        every owner's records, so never on the query path)."""
        out = set(self.names) | {_rev_wire(k) for k in self.reverse}
        if self.records_of is not None:
            for owner in [o for o in self._owners if self._is_lazy(o)]:
                out.update(name_wire(n) for n, types in self.records_of(owner).items()
                           if any(types.values()))
        return out

    def _built_records(self, owner: Owner) -> dict[bytes, RRsets]:
        recs = self._built.get(owner)
        if recs is None:
            raw = self.records_of(owner) if self.records_of is not None else {}
            recs = {}
            for name, types in raw.items():
                sets = {t: tuple(rds) for t, rds in types.items() if rds}
                if sets:
                    recs[name_wire(name)] = sets
            self._built[owner] = recs
        return recs

    def _defers(self, held: Owner | _Shared) -> bool:
        """True when the name held by ``held`` keeps its LAZY_TYPES answers uncompiled:
        one owner, which can give its records back (names shared by owners, and owners
        without hot/lazy names, keep everything compiled)."""
        return not isinstance(held, _Shared) and self._is_lazy(held)

    def _is_lazy(self, owner: Owner | None) -> bool:
        """True when ``owner`` has names (or types) answered from its records on demand."""
        own = self._owners.get(owner) if owner is not None else None
        return own is not None and own.zones != 0

    def any_entry(self, wire_name: bytes) -> Entry | None:
        """An answer with every record of the name (qtype ANY), built on demand."""
        sets = self.rrsets(wire_name)
        return self._encode(wire_name, T_ANY, sets) if sets else None

    # ---- writers ------------------------------------------------------------------------

    def set_owner(self, owner: Owner, records: Records, tags: Mapping[str, int] | None = None,
                  hot: Collection[str] | None = None) -> bool:
        """Replace everything ``owner`` contributes; False when nothing changed.

        ``tags`` marks names whose answers count as a decision (TAG_*) in the metrics.
        ``hot`` names are kept compiled, the others answered lazily (see the module
        docstring); None keeps every name compiled. Lazy names need ``records_of`` to
        give back these records for ``owner`` until its next set_owner.
        """
        tag_of = {name_wire(n): t for n, t in (tags or {}).items()}
        new: dict[bytes, RRsets] = {}
        lazy: dict[bytes, RRsets] = {}  # glue targets among the lazy names (for answers
        # still compiled with glue, e.g. a name shared with another owner)
        rev: list[RevKey] = []
        zones = 0  # bit i: lazy names in self.zones[i]
        for name, types in records.items():
            sets = {t: tuple(rds) for t, rds in types.items() if rds}
            if not sets:
                continue
            wire = name_wire(name)
            deferred = hot is not None and any(t in sets for t in LAZY_TYPES)
            if hot is None or name in hot:
                new[wire] = sets
                if not deferred:
                    continue
            else:
                lazy[wire] = sets
            zone = self.zone_of(wire)
            if zone is None:
                continue  # outside the served zones: never asked
            zones |= 1 << zone.index
            if zone.reverse and wire not in new:
                rev.append(_rev_key(wire))
        sig = hash((self.ttl, tuple(sorted(tag_of.items())), hot is None, tuple(sorted(
            (n, tuple(sorted((t, tuple(r)) for t, r in s.items() if r)))
            for n, s in records.items()))))
        own = self._owners.get(owner)
        if (own.sig == sig) if own is not None else not (new or zones):
            return False  # the same records again, or nothing from an owner never seen
        self.negative_cache.clear()
        self._built.pop(owner, None)
        old = own if own is not None else _Own()
        self._set_lazy(owner, old, tuple(rev), zones)
        gone = [n for n in old.names if n not in new]
        for wire in gone:
            self._release(wire, owner)
        for wire, sets in new.items():
            self._assign(wire, owner, sets)
        if new or zones:
            own = self._owners[owner] = old
            own.keys, own.split, own.zones, own.sig = (*new, *rev), len(new), zones, sig
        else:
            self._owners.pop(owner, None)
        touched = gone + list(new)
        self._tags = tag_of
        self._lazy_context = lazy
        for glue_pass in (False, True):  # addresses first, then answers that glue them
            for wire in touched:
                self._compile(wire, glue_pass)
        self._pending.clear()
        self._lazy_context = {}
        self._tags = {}
        self._refresh_lazy_aliases()
        return True

    def _refresh_lazy_aliases(self) -> None:
        """Re-encode the CNAMEs whose in-zone target is a lazy name (say an endpoint
        name): their answers carry the target's addresses, and no compile of the target
        name reaches them. There are few (in-zone ExternalName targets)."""
        for target, aliases in list(self._aliases_of.items()):
            if target not in self.names:
                for alias in sorted(aliases):
                    self._compile_alias(alias, self.rrsets(alias))

    def _set_lazy(self, owner: Owner, old: _Own, rev: tuple[RevKey, ...], zones: int) -> None:
        """Index ``owner``'s lazy reverse names (their ancestors exist), and mark the zones
        its lazy names were and are in (those zones' serials move)."""
        for zone in self.zones:
            if (old.zones | zones) >> zone.index & 1:
                self._dirty_zones.add(zone)
        old_rev = old.rev
        if old_rev != rev:
            new_set = set(rev)
            for key in old_rev:
                if key not in new_set:
                    self._unhold(key, owner)
            old_set = set(old_rev)
            for key in rev:
                if key not in old_set:
                    self._hold(key, owner)

    def _hold(self, key: RevKey, owner: Owner) -> None:
        held = self.reverse.get(key)
        if held is None:
            self.reverse[key] = owner
            self._ref_ancestors(_rev_wire(key), 1)
        elif isinstance(held, _Holders):
            held.owners.append(owner)
        elif held != owner:
            self.reverse[key] = _Holders(held, owner)

    def _unhold(self, key: RevKey, owner: Owner) -> None:
        held = self.reverse.get(key)
        if isinstance(held, _Holders):
            if owner in held.owners:
                held.owners.remove(owner)
            if len(held.owners) == 1:
                self.reverse[key] = held.owners[0]
        elif held == owner:
            del self.reverse[key]
            self._ref_ancestors(_rev_wire(key), -1)

    def set_bare_names(self, owner: Owner, names: Iterable[str]) -> None:
        """Names that exist without records of their own (NODATA, not NXDOMAIN)."""
        new = {name_wire(n) for n in names}
        old = self._bare.get(owner, set())
        if new != old:
            self.negative_cache.clear()
            for wire in old ^ new:  # NXDOMAIN <-> NODATA: the zone's data changed
                zone = self.zone_of(wire)
                if zone is not None:
                    self._dirty_zones.add(zone)
        for wire in old - new:
            self._unref(wire)
        for wire in new - old:
            self.ents[wire] = self.ents.get(wire, 0) + 1
        if new:
            self._bare[owner] = new
        else:
            self._bare.pop(owner, None)

    def set_ttl(self, ttl: int) -> None:
        """A new TTL: every owner recompiles on its next set_owner (the TTL is in the
        signature), the zones' SOAs now."""
        self.ttl = ttl
        for zone in self.zones:
            zone.ttl = ttl
            self._dirty_zones.add(zone)

    def flush(self) -> None:
        """Bump the serial of every zone whose data changed, and rebuild its SOA answers."""
        now = int(time.time())
        dirty, self._dirty_zones = self._dirty_zones, set()
        for zone in dirty:
            zone.serial = max(zone.serial + 1, now) & 0xFFFFFFFF
            zone.rebuild_negative()
            self._set_apex(zone)

    # ---- ownership ----------------------------------------------------------------------

    def _assign(self, wire: bytes, owner: Owner, sets: RRsets) -> None:
        held = self.names.get(wire)
        if held is None:
            self.names[wire] = owner
            self._pending[wire] = sets
            self._ref_ancestors(wire, 1)
            return
        if isinstance(held, _Shared):
            held.by_owner[owner] = sets
        elif held == owner:
            self._pending[wire] = sets
            return
        else:  # a second owner: keep both owners' records from now on
            shared = _Shared()
            shared.by_owner[held] = (self._pending.pop(wire) if wire in self._pending
                                     else self.rrsets(wire))
            shared.by_owner[owner] = sets
            self.names[wire] = held = shared
        self._pending[wire] = _merge(held.by_owner, self.ptr_zone)

    def _release(self, wire: bytes, owner: Owner) -> None:
        held = self.names.get(wire)
        if isinstance(held, _Shared):
            held.by_owner.pop(owner, None)
            if len(held.by_owner) == 1:
                (last, sets), = held.by_owner.items()
                self.names[wire] = last
                self._pending[wire] = sets
            else:
                self._pending[wire] = _merge(held.by_owner, self.ptr_zone)
        elif held == owner:
            del self.names[wire]
            self._pending[wire] = {}
            self._ref_ancestors(wire, -1)

    # ---- compiling ----------------------------------------------------------------------

    def _compile(self, wire: bytes, glue_pass: bool) -> None:
        sets = self._pending.get(wire)
        if sets is None:
            return
        zone = self.zone_of(wire)
        if zone is not None:
            self._dirty_zones.add(zone)
        types = [t for t in TYPES if (t in GLUED) == glue_pass]
        held = self.names.get(wire)
        deferred = LAZY_TYPES if held is not None and self._defers(held) else ()
        for qtype in types:
            key = wire + _TYPE_SUFFIX[qtype]
            if qtype in sets and T_CNAME not in sets and qtype not in deferred:
                self.entries[key] = self._encode(wire, qtype, sets)
            else:
                self.entries.pop(key, None)
        if glue_pass:
            return
        self._compile_alias(wire, sets)
        if T_A in sets or T_AAAA in sets or not sets:
            for alias in sorted(self._aliases_of.get(wire, ())):
                self._compile_alias(alias, self.rrsets(alias) if alias != wire else sets)

    def _compile_alias(self, wire: bytes, sets: RRsets) -> None:
        old = self.aliases.pop(wire, None)
        if old is not None:
            target = rd.answers_of(old.body, 1, T_CNAME)[0]
            owners = self._aliases_of.get(target)
            if owners is not None:
                owners.discard(wire)
                if not owners:
                    del self._aliases_of[target]
        if T_CNAME not in sets:
            return
        for qtype in (T_A, T_AAAA):  # the CNAME plus the in-zone target's addresses
            self.entries[wire + _TYPE_SUFFIX[qtype]] = self._encode(wire, qtype, sets)
        alias = self.aliases[wire] = self._encode(wire, T_CNAME, sets)  # any other type
        self.entries[wire + _TYPE_SUFFIX[T_CNAME]] = alias
        target = sets[T_CNAME][0]
        if target != wire:
            self._aliases_of.setdefault(target, set()).add(wire)

    def _encode(self, wire: bytes, qtype: int, sets: RRsets) -> Entry:
        ttl = self.ttl
        answers: list[bytes] = []
        if T_CNAME in sets:
            target = sets[T_CNAME][0]
            answers.append(rd.rr(QNAME_POINTER, T_CNAME, ttl, target))
            if qtype in (T_A, T_AAAA) and target not in self.aliases:
                answers += [rd.rr(target, qtype, ttl, x) for x in self._rdata(target, qtype)]
        else:
            for t in (TYPES if qtype == T_ANY else (qtype,)):
                answers += [rd.rr(QNAME_POINTER, t, ttl, x) for x in sets.get(t, ())]
        body = b"".join(answers)
        zone = self.zone_of(wire)
        zi = zone.index if zone is not None else -1
        slots = self.slots.pair(zi, qtype, RCODE_NOERROR, self._tags.get(wire, TAG_NONE))
        glue = [] if qtype not in GLUED or T_CNAME in sets else self._glue(
            sets.get(qtype, ()), qtype)
        if not glue:
            return make_entry(RCODE_NOERROR, len(answers), 0, 0, body, -1, slots)
        return make_entry(RCODE_NOERROR, len(answers), 0, len(glue), body + b"".join(glue),
                          len(body), slots)

    def _glue(self, rdatas: tuple[bytes, ...], qtype: int) -> list[bytes]:
        """A/AAAA of SRV and NS targets for the additional section, as CoreDNS adds them."""
        out: list[bytes] = []
        seen: set[bytes] = set()
        for x in rdatas:
            target = rd.target(qtype, x)
            if target is None or target in seen:
                continue
            seen.add(target)
            for t in (T_A, T_AAAA):
                out += [rd.rr(target, t, self.ttl, a) for a in self._rdata(target, t)]
        return out

    def _rdata(self, wire: bytes, qtype: int) -> tuple[bytes, ...]:
        """Current records of one name and type: being compiled, else as served."""
        pending = self._pending.get(wire) or self._lazy_context.get(wire)
        if pending is not None:
            return pending.get(qtype, ())
        e = self.entries.get(wire + _TYPE_SUFFIX[qtype])
        if e is None:  # not compiled: a lazy name's records, if it is one
            return self._lazy_lookup(wire)[1].get(qtype, ())
        return tuple(rd.answers_of(e.body, struct.unpack_from(">H", e.counts, 2)[0], qtype))

    def _set_apex(self, zone: Zone) -> None:
        apex = zone.name + "."
        self.set_owner("apex:" + zone.name, {
            apex: {T_SOA: [zone.soa()], T_NS: [rd.name(f"ns.dns.{apex}")]}})
        self._dirty_zones.discard(zone)

    def _ref_ancestors(self, wire: bytes, delta: int) -> None:
        zone = self.zone_of(wire)
        for anc in _ancestors(wire, zone):
            if delta > 0:
                self.ents[anc] = self.ents.get(anc, 0) + 1
            else:
                self._unref(anc)

    def _unref(self, wire: bytes) -> None:
        n = self.ents.get(wire, 0) - 1
        if n > 0:
            self.ents[wire] = n
        else:
            self.ents.pop(wire, None)


def _merge(by_owner: Mapping[Owner, RRsets], ptr_zone: bytes) -> RRsets:
    """One name's records from several owners. The PTR names of an address held by
    several (a derived Service's ClusterIP is also its import's clusterset address; a
    pod IP can be mirrored by an import): the cluster zone's win (rdata.ptr_targets)."""
    out: dict[int, dict[bytes, None]] = {}
    for owner in sorted(by_owner, key=repr):
        for qtype, rds in by_owner[owner].items():
            out.setdefault(qtype, {}).update(dict.fromkeys(rds))
    merged = {t: tuple(v) for t, v in out.items()}
    if len(merged.get(T_PTR, ())) > 1:
        merged[T_PTR] = tuple(rd.ptr_targets(merged[T_PTR], ptr_zone))
    return merged


def _is_label_boundary(wire_name: bytes, suffix: bytes) -> bool:
    """True when ``suffix`` starts at a label boundary of ``wire_name``."""
    i, cut = 0, len(wire_name) - len(suffix)
    while i < cut:
        i += wire_name[i] + 1
    return i == cut


def _ancestors(wire: bytes, zone: Zone | None) -> list[bytes]:
    """The ancestors of ``wire`` down to (and including) the zone apex."""
    out = []
    stop = len(zone.wire) if zone is not None else 1
    i = 0
    while len(wire) - i > stop:
        i += wire[i] + 1
        out.append(wire[i:])
    return out


_V4_ARPA = name_wire("in-addr.arpa.")
_V6_ARPA = name_wire("ip6.arpa.")
_V6_BASE = 1 << 128  # IPv6 keys sit above every IPv4 key
_HEX = b"0123456789abcdef"


def _rev_key(wire: bytes) -> RevKey:
    """The reverse index's key for a lower-case wire name: the address as an int for a
    full, canonical in-addr.arpa / ip6.arpa name (IPv6 offset by 2**128), else the name
    itself. One-to-one, and _rev_wire inverts it."""
    if wire.endswith(_V4_ARPA):
        end, i, value, shift = len(wire) - len(_V4_ARPA), 0, 0, 0
        while i < end and shift < 32:
            n = wire[i]
            label = wire[i + 1:i + 1 + n]
            if not (0 < n <= 3 and label.isdigit() and (n == 1 or label[0] != 0x30)):
                return wire
            octet = int(label)
            if octet > 255:
                return wire
            value |= octet << shift
            shift += 8
            i += n + 1
        return value if i == end and shift == 32 else wire
    if wire.endswith(_V6_ARPA) and len(wire) == 64 + len(_V6_ARPA):
        nibbles = wire[1:64:2]
        if wire[0:64:2] == b"\x01" * 32 and not nibbles.translate(None, _HEX):
            return _V6_BASE + int(nibbles[::-1], 16)
    return wire


def _rev_wire(key: RevKey) -> bytes:
    """The wire name of a reverse index key."""
    if isinstance(key, bytes):
        return key
    if key >= _V6_BASE:
        digits = f"{key - _V6_BASE:032x}"[::-1]
        return b"".join(b"\x01" + d.encode() for d in digits) + _V6_ARPA
    octets = [str(key >> s & 0xFF).encode() for s in (0, 8, 16, 24)]
    return b"".join(bytes((len(o),)) + o for o in octets) + _V4_ARPA
