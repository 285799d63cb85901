"""The answer table: every servable (name, type) as a pre-encoded DNS response body.

Owners (one per service, plus the zone apexes and a few static names) hand in their
records; the table encodes each RRset once (``encode.py``) and keeps only bytes
(``entry.py``). The query path copies the client's ID and question in front of a stored
body: nothing is built per query. Negative answers come from the zones (``zone.py``).

The entries are the single copy of the data: a name held by one owner keeps nothing
else; only names held by several owners keep each owner's records, to merge them
(``owners.py``).

Not every name is kept compiled. An owner names its *hot* names (a service's own names,
which nearly every query asks for); its other names (endpoint names, ``_port._proto``
SRV names, PTR names) are *lazy*: nothing of them is kept but, for PTR names, which
owners hold them (``revindex.py``). A query for a lazy name asks the owner's records
again (``records_of``, from the compiler's last decision, so they are the records last
handed in) and encodes the answer then; the handler memoises it until the table changes.
A service's hot names are ~1 in 8 of its names, and the memory goes with it. Even a hot
name keeps only its address answers compiled: its SRV answer (``LAZY_TYPES``), asked far
less often and the largest body with its glue, is encoded the same way when first asked.

Every write (and every lazy answer) carries its inputs in a ``Job`` made for that call:
nothing of one write is left on the table for the next.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Collection, Iterable, Mapping

from cachetools import LRUCache

from mcdns.answers import rdata as rd
from mcdns.answers.encode import GLUED, TYPES, Job, answer_rdata, encode
from mcdns.answers.entry import Entry
from mcdns.answers.owners import Holders, Own, Owner, RRsets, Shared, hold, merge, unhold
from mcdns.answers.rdata import name_wire
from mcdns.answers.revindex import ReverseIndex, RevKey, rev_key, rev_wire
from mcdns.answers.slots import TAG_NONE, Slots
from mcdns.answers.zone import Zone, ZoneIndex, ancestors, is_label_boundary
from mcdns.proto import CLASS_IN, RCODE_NOERROR, T_A, T_AAAA, T_ANY, T_CNAME, T_NS, T_SOA, T_SRV

NEGATIVE_CACHE_MAX = 65536
_TYPE_SUFFIX = {t: struct.pack(">HH", t, CLASS_IN) for t in (*TYPES, T_ANY)}

Records = Mapping[str, Mapping[int, list[bytes]]]  # name text -> qtype -> rdata
OwnerOfFn = Callable[[bytes], "Owner | None"]  # the owner a lazy (forward) name would have
RecordsOfFn = Callable[[Owner], Records]  # an owner's records, as last handed in
TagsOfFn = Callable[[Owner], Mapping[str, int]]  # an owner's metrics tags, as last handed in
LAZY_TYPES = (T_SRV,)  # types a hot name answers on demand (when its owner is lazy)
BUILT_OWNERS = 64  # owners whose lazy records are kept decoded (an LRU)


class AnswerTable:
    """Pre-encoded answers by (name, type), merged from owners, with name existence."""

    def __init__(self, zones: Iterable[str], ttl: int, owner_of: OwnerOfFn | None = None,
                 records_of: RecordsOfFn | None = None,
                 tags_of: TagsOfFn | None = None, ptr_zone: str = "",
                 unclaimed: Iterable[str] = ()) -> None:
        """``zones`` are claimed (authoritative); ``unclaimed`` zones (not also claimed)
        only index the names in them (``zone.py``)."""
        self.ttl = ttl
        self.ptr_zone = name_wire(ptr_zone + ".") if ptr_zone else b""  # its PTR names win
        claimed = dict.fromkeys(zones, True)
        every = {**dict.fromkeys(unclaimed, False), **claimed}
        self.zones: list[Zone] = sorted(
            (Zone(z, name_wire(z + "."), ttl, reverse=z == "arpa" or z.endswith(".arpa"),
                  claimed=c) for z, c in every.items()), key=lambda z: -len(z.wire))
        self.zone_of = ZoneIndex(self.zones).find
        """The served zone a lower-case wire name falls in (longest match), if any."""
        self.owner_of = owner_of
        self.records_of = records_of
        self.tags_of = tags_of
        # Lazy reverse names -> owners, keyed by rev_key (the address as an int), in a
        # map made compact for IPv4: there is one per pod and ClusterIP.
        self.reverse: ReverseIndex[Owner | Holders] = ReverseIndex()
        self._owners: dict[Owner, Own] = {}
        self._built: LRUCache[Owner, dict[bytes, RRsets]] = LRUCache(BUILT_OWNERS)
        self.slots = Slots()
        for i, zone in enumerate(self.zones):
            zone.index = i
            zone.slots = self.slots
        self.entries: dict[bytes, Entry] = {}  # name wire + qtype + class -> entry
        self.aliases: dict[bytes, Entry] = {}  # CNAME owner name wire -> entry for any type
        self.names: dict[bytes, Owner | Shared] = {}  # names that hold records
        self.ents: dict[bytes, int] = {}  # names with records below them, or bare names
        # The query path's memo of negative answers (name + type + class -> entry);
        # emptied on every change to the table, bounded by NEGATIVE_CACHE_MAX.
        self.negative_cache: dict[bytes, Entry] = {}
        self._bare: dict[Owner, set[bytes]] = {}
        self._aliases_of: dict[bytes, set[bytes]] = {}  # CNAME target -> CNAME owners
        self._dirty_zones: set[Zone] = set()
        for zone in self.zones:
            zone.serial = int(time.time())
            zone.rebuild_negative()
            self._set_apex(zone)

    # ---- lookups ------------------------------------------------------------------------

    def rrsets(self, wire_name: bytes) -> RRsets:
        """The name's records as served (merged over owners)."""
        held = self.names.get(wire_name)
        if held is None or self._defers(held):
            return self._lazy_lookup(wire_name)[1]
        out: RRsets = {}
        for qtype in TYPES:
            e = self.entries.get(wire_name + _TYPE_SUFFIX[qtype])
            if e is not None:
                rds = answer_rdata(e, qtype)
                if rds:
                    out[qtype] = rds
        return out

    def lazy_entry(self, wire: bytes, qtype: int) -> tuple[bool, Entry | None]:
        """(exists, answer) for a name not kept compiled, or a hot name's deferred type:
        the answer is encoded now, with the owner's records at hand for the additional
        section; None when the name has no such records."""
        exists, sets, owner = self._lazy_lookup(wire)
        if qtype not in sets:
            return exists, None
        context = self._built_records(owner) if owner is not None else {}
        tags = ({name_wire(n): t for n, t in self.tags_of(owner).items()}
                if owner is not None and self.tags_of is not None else {})
        # the targets' addresses come from the owner's records, as during set_owner
        job = Job({wire: {**context.get(wire, {}), **sets}}, context, tags)
        return True, self._encode(wire, qtype, sets, job)

    def _lazy_lookup(self, wire: bytes) -> tuple[bool, RRsets, Owner | None]:
        """(exists, records, owner) of a name that is not kept compiled, or of a hot
        name whose owner defers some of its types; (False, {}, None) for names no owner
        has. ``owner`` is the lazy owner whose records hold the name (the first one for
        a reverse name held by several), or None."""
        named = self.names.get(wire)
        if named is not None:
            if isinstance(named, Shared) or not self._is_lazy(named):
                return True, {}, None  # every type compiled
            return True, self._built_records(named).get(wire, {}), named
        held = self.reverse.get(rev_key(wire))
        if held is not None:
            owners = held.owners if isinstance(held, Holders) else [held]
            by_owner = {o: self._built_records(o).get(wire, {}) for o in owners}
            sets = by_owner[owners[0]] if len(owners) == 1 else merge(by_owner, self.ptr_zone)
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
        return any(len(n) > len(wire) and n.endswith(wire) and is_label_boundary(n, wire)
                   for n in recs), {}, None

    def served_names(self) -> set[bytes]:
        """Every name with records, compiled or lazy (for tests and tools: it rebuilds
        every owner's records, so never on the query path)."""
        out = set(self.names) | {rev_wire(k) for k in self.reverse}
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

    def _defers(self, held: Owner | Shared) -> bool:
        """True when the name held by ``held`` keeps its LAZY_TYPES answers uncompiled:
        one owner, which can give its records back (names shared by owners, and owners
        without hot/lazy names, keep everything compiled)."""
        return not isinstance(held, Shared) and self._is_lazy(held)

    def _is_lazy(self, owner: Owner | None) -> bool:
        """True when ``owner`` has names (or types) answered from its records on demand."""
        own = self._owners.get(owner) if owner is not None else None
        return own is not None and own.zones != 0

    def any_entry(self, wire_name: bytes) -> Entry | None:
        """An answer with every record of the name (qtype ANY), built on demand."""
        sets = self.rrsets(wire_name)
        return self._encode(wire_name, T_ANY, sets, Job()) if sets else None

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
                rev.append(rev_key(wire))
        sig = hash((self.ttl, tuple(sorted(tag_of.items())), hot is None, tuple(sorted(
            (n, tuple(sorted((t, tuple(r)) for t, r in s.items() if r)))
            for n, s in records.items()))))
        own = self._owners.get(owner)
        if (own.sig == sig) if own is not None else not (new or zones):
            return False  # the same records again, or nothing from an owner never seen
        self.negative_cache.clear()
        self._built.pop(owner, None)
        old = own if own is not None else Own()
        self._set_lazy(owner, old, tuple(rev), zones)
        job = Job(context=lazy, tags=tag_of)
        gone = [n for n in old.names if n not in new]
        for wire in gone:
            self._release(wire, owner, job)
        for wire, sets in new.items():
            self._assign(wire, owner, sets, job)
        if new or zones:
            self._owners[owner] = old
            # The signature is set once the write is compiled: a write that fails part
            # way is applied again when the same records come back.
            old.keys, old.split, old.zones, old.sig = (*new, *rev), len(new), zones, 0
        else:
            self._owners.pop(owner, None)
        touched = gone + list(new)
        for glue_pass in (False, True):  # addresses first, then answers that glue them
            for wire in touched:
                self._compile(wire, glue_pass, job)
        self._refresh_lazy_aliases()
        old.sig = sig
        return True

    def _refresh_lazy_aliases(self) -> None:
        """Re-encode the CNAMEs whose in-zone target is a lazy name (say an endpoint
        name): their answers carry the target's addresses, and no compile of the target
        name reaches them. There are few (in-zone ExternalName targets)."""
        for target, aliases in list(self._aliases_of.items()):
            if target not in self.names:
                for alias in sorted(aliases):
                    self._compile_alias(alias, self.rrsets(alias), Job())

    def _set_lazy(self, owner: Owner, old: Own, rev: tuple[RevKey, ...], zones: int) -> None:
        """Index ``owner``'s lazy reverse names (their ancestors exist), and mark the zones
        its lazy names were and are in (those zones' serials move)."""
        for zone in self.zones:
            if (old.zones | zones) >> zone.index & 1:
                self._dirty_zones.add(zone)
        old_rev = old.rev
        if old_rev != rev:
            new_set = set(rev)
            for key in old_rev:
                if key not in new_set and unhold(self.reverse, key, owner):
                    self._ref_ancestors(rev_wire(key), -1)
            old_set = set(old_rev)
            for key in rev:
                if key not in old_set and hold(self.reverse, key, owner):
                    self._ref_ancestors(rev_wire(key), 1)

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

    def _assign(self, wire: bytes, owner: Owner, sets: RRsets, job: Job) -> None:
        held = self.names.get(wire)
        if held is None:
            self.names[wire] = owner
            job.pending[wire] = sets
            self._ref_ancestors(wire, 1)
            return
        if isinstance(held, Shared):
            held.by_owner[owner] = sets
        elif held == owner:
            job.pending[wire] = sets
            return
        else:  # a second owner: keep both owners' records from now on
            shared = Shared()
            shared.by_owner[held] = (job.pending.pop(wire) if wire in job.pending
                                     else self.rrsets(wire))
            shared.by_owner[owner] = sets
            self.names[wire] = held = shared
        job.pending[wire] = merge(held.by_owner, self.ptr_zone)

    def _release(self, wire: bytes, owner: Owner, job: Job) -> None:
        held = self.names.get(wire)
        if isinstance(held, Shared):
            held.by_owner.pop(owner, None)
            if len(held.by_owner) == 1:
                (last, sets), = held.by_owner.items()
                self.names[wire] = last
                job.pending[wire] = sets
            else:
                job.pending[wire] = merge(held.by_owner, self.ptr_zone)
        elif held == owner:
            del self.names[wire]
            job.pending[wire] = {}
            self._ref_ancestors(wire, -1)

    # ---- compiling ----------------------------------------------------------------------

    def _compile(self, wire: bytes, glue_pass: bool, job: Job) -> None:
        sets = job.pending.get(wire)
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
                self.entries[key] = self._encode(wire, qtype, sets, job)
            else:
                self.entries.pop(key, None)
        if glue_pass:
            return
        self._compile_alias(wire, sets, job)
        if T_A in sets or T_AAAA in sets or not sets:
            for alias in sorted(self._aliases_of.get(wire, ())):
                self._compile_alias(alias, self.rrsets(alias) if alias != wire else sets, job)

    def _compile_alias(self, wire: bytes, sets: RRsets, job: Job) -> None:
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
            self.entries[wire + _TYPE_SUFFIX[qtype]] = self._encode(wire, qtype, sets, job)
        alias = self.aliases[wire] = self._encode(wire, T_CNAME, sets, job)  # any other type
        self.entries[wire + _TYPE_SUFFIX[T_CNAME]] = alias
        target = sets[T_CNAME][0]
        if target != wire:
            self._aliases_of.setdefault(target, set()).add(wire)

    def _encode(self, wire: bytes, qtype: int, sets: RRsets, job: Job) -> Entry:
        zone = self.zone_of(wire)
        slots = self.slots.pair(zone.index if zone is not None else -1, qtype, RCODE_NOERROR,
                                job.tags.get(wire, TAG_NONE))
        return encode(qtype, sets, self.ttl, lambda n, t: self._rdata(n, t, job),
                      self.aliases, slots)

    def _rdata(self, wire: bytes, qtype: int, job: Job) -> tuple[bytes, ...]:
        """Current records of one name and type: in ``job``, else as served."""
        pending = job.records(wire)
        if pending is not None:
            return pending.get(qtype, ())
        e = self.entries.get(wire + _TYPE_SUFFIX[qtype])
        if e is None:  # not compiled: a lazy name's records, if it is one
            return self._lazy_lookup(wire)[1].get(qtype, ())
        return answer_rdata(e, qtype)

    def _set_apex(self, zone: Zone) -> None:
        if not zone.claimed:  # no SOA, NS: mcdns is not the zone's server
            return
        apex = zone.name + "."
        self.set_owner("apex:" + zone.name, {
            apex: {T_SOA: [zone.soa()], T_NS: [rd.name(f"ns.dns.{apex}")]}})
        self._dirty_zones.discard(zone)

    def _ref_ancestors(self, wire: bytes, delta: int) -> None:
        zone = self.zone_of(wire)
        for anc in ancestors(wire, zone):
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
