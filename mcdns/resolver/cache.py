"""The forwarding cache: upstream replies kept as bytes, patched per client on a hit.

A hit must cost little more than a dictionary lookup and a copy, so an ``Entry`` holds
the reply without its OPT record, the offsets of its TTL fields and the TTLs as stored.
Once per second of age it re-renders the bytes with the TTLs counted down; each hit then
copies those bytes and patches the client's ID, RD/CD flags and question (its own letter
case) into the copy. No DNS parsing happens on a hit.

Eviction is cachetools' ``TLRUCache``: an entry lives until the end of its serve-stale
window, entries past that window are dropped first, and when the cache is still full the
least recently used entry goes. LRU rather than soonest-to-expire because a resolver's
names are short-lived and popular ones (the application's own dependencies) are asked
for over and over: evicting the soonest-to-expire would throw out exactly those hot
short-TTL names while keeping long-TTL names asked once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import dnslib
from cachetools import TLRUCache

from mcdns.resolver import wire
from mcdns.resolver.wire import U16, U32, WireError

log = logging.getLogger(__name__)

STALE_TTL = 30
"""TTL of a served stale answer (RFC 8767 section 4 recommends 30 seconds)."""

_KEEP_FLAGS = ~(wire.FLAG_AA | wire.FLAG_TC | wire.FLAG_RD | wire.FLAG_CD) & 0xFFFF


class Entry:
    """One upstream reply, ready to be rendered for any client that asked the same question."""

    __slots__ = (
        "_edns",
        "_flags_hi",
        "_flags_lo",
        "_plain",
        "_second",
        "arcount",
        "expires",
        "flags",
        "opt",
        "stale_until",
        "stored",
        "template",
        "ttl_offsets",
        "ttls",
    )

    def __init__(
        self,
        template: bytes,
        ttl_offsets: list[int],
        ttls: list[int],
        opt: bytes,
        stored: float,
        lifetime: int,
        stale: int,
    ) -> None:
        self.template = template
        self.ttl_offsets = ttl_offsets
        self.ttls = ttls
        self.opt = opt
        self.flags: int = U16.unpack_from(template, 2)[0]
        self._flags_hi = self.flags >> 8
        self._flags_lo = self.flags & 0xFF
        self.arcount: int = U16.unpack_from(template, 10)[0]
        self.stored = stored
        self.expires = stored + lifetime
        self.stale_until = self.expires + stale
        self._second = -1
        self._plain = template
        self._edns = template

    @property
    def rcode(self) -> int:
        return self.flags & 0x000F

    def render(
        self, query: bytes, qend: int, now: float, payload: int, tcp: bool, max_udp: int
    ) -> bytes:
        """This reply for the client ``query``, TTLs counted down to ``now``.

        The hot path of the resolver: one copy of pre-rendered bytes, then the client's
        ID, RD and CD bits and question (its own letter case) written over it.
        """
        elapsed = int(now - self.stored)
        if elapsed != self._second:
            self._refresh(elapsed)
        buf = bytearray(self._edns if payload else self._plain)
        buf[0:2] = query[0:2]
        buf[2] = self._flags_hi | (query[2] & 0x01)
        buf[3] = self._flags_lo | (query[3] & 0x10)
        buf[12:qend] = query[12:qend]
        if tcp or len(buf) <= (min(payload, max_udp) if payload else 512):
            return bytes(buf)
        return self._truncated(query, qend, payload)

    def render_stale(self, query: bytes, qend: int, payload: int, tcp: bool, max_udp: int) -> bytes:
        """This reply with every TTL set to ``STALE_TTL`` (RFC 8767 serve-stale)."""
        buf = self._with_ttls([STALE_TTL] * len(self.ttls), payload)
        buf[0:2] = query[0:2]
        U16.pack_into(buf, 2, self.flags | (U16.unpack_from(query, 2)[0] & 0x0110))
        buf[12:qend] = query[12:qend]
        if tcp or len(buf) <= (min(payload, max_udp) if payload else 512):
            return bytes(buf)
        return self._truncated(query, qend, payload)

    def _truncated(self, query: bytes, qend: int, payload: int) -> bytes:
        opt = self.opt if payload else b""
        return wire.short_reply(query, qend, self.rcode, opt, tc=True)

    def _refresh(self, elapsed: int) -> None:
        ttls = [ttl - elapsed if ttl > elapsed else 0 for ttl in self.ttls]
        self._plain = bytes(self._with_ttls(ttls, 0))
        self._edns = bytes(self._with_ttls(ttls, 1))
        self._second = elapsed

    def _with_ttls(self, ttls: list[int], payload: int) -> bytearray:
        buf = bytearray(self.template)
        for off, ttl in zip(self.ttl_offsets, ttls, strict=True):
            U32.pack_into(buf, off, ttl)
        if payload:
            U16.pack_into(buf, 10, self.arcount + 1)
            buf += self.opt
        return buf


def make_entry(
    reply: bytes, qend: int, opt: bytes, now: float, ttl_range: tuple[int, int], stale: int
) -> tuple[Entry, bool]:
    """Build an ``Entry`` from a validated upstream reply; also say whether to cache it.

    TTLs are clamped into ``ttl_range`` in the stored bytes. The lifetime is the lowest
    answer TTL, or for a negative answer min(SOA TTL, SOA minimum) (RFC 2308); a negative
    answer without an SOA, a zero lifetime, an rcode other than NOERROR/NXDOMAIN, an
    extended rcode or a truncated reply is not cached.
    """
    found = wire.scan(reply, qend)
    if found.opt is not None and found.opt[1] != len(reply):
        reply = _repack_without_opt(reply)
        found = wire.scan(reply, qend)
    elif found.opt is not None:
        stripped = bytearray(reply[: found.opt[0]])
        U16.pack_into(stripped, 10, found.counts[2] - 1)
        reply = bytes(stripped)
    lo, hi = ttl_range
    ttls = [min(max(ttl, lo), hi) for ttl in found.ttls]
    lifetime = _lifetime(found)
    lifetime = min(max(lifetime, lo), hi) if lifetime is not None else 0
    template = bytearray(reply)
    U16.pack_into(template, 2, found.flags & _KEEP_FLAGS | wire.FLAG_RA)
    entry = Entry(bytes(template), found.ttl_offsets, ttls, opt, now, lifetime, stale)
    cacheable = (
        lifetime > 0
        and found.rcode in (wire.RCODE_NOERROR, wire.RCODE_NXDOMAIN)
        and not found.ext_rcode
        and not found.flags & wire.FLAG_TC
    )
    return entry, cacheable


def _lifetime(found: wire.Scan) -> int | None:
    negative = found.rcode == wire.RCODE_NXDOMAIN or found.answer_ttl is None
    if not negative:
        return found.answer_ttl
    if found.negative_ttl is None:
        return None
    if found.answer_ttl is None:
        return found.negative_ttl
    return min(found.answer_ttl, found.negative_ttl)  # a CNAME chain ending in NXDOMAIN


def _repack_without_opt(reply: bytes) -> bytes:
    """Re-encode a reply whose OPT is not its last record, without the OPT (rare)."""
    try:
        record = dnslib.DNSRecord.parse(reply)
    except Exception as e:  # dnslib raises several types; all mean "malformed"
        raise WireError(f"unparsable reply: {e}") from None
    record.ar = [rr for rr in record.ar if rr.rtype != wire.TYPE_OPT]
    packed: bytes = record.pack()
    return packed


class AnswerCache(TLRUCache[bytes, Entry]):
    """A TLRU cache of entries that counts its evictions and expirations."""

    def __init__(self, maxsize: int, clock: Callable[[], float]) -> None:
        super().__init__(maxsize, ttu=_stale_until, timer=clock)
        self.evictions = 0
        self.expirations = 0

    def popitem(self) -> tuple[bytes, Entry]:
        item = super().popitem()
        self.evictions += 1
        return item

    def expire(self, time: float | None = None) -> list[tuple[bytes, Entry]]:
        expired = list(super().expire(time))
        self.expirations += len(expired)
        return expired


def _stale_until(_key: bytes, entry: Entry, _now: float) -> float:
    return entry.stale_until
