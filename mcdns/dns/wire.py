"""Hand-rolled DNS wire parsing and response assembly for the query path.

dnslib builds the answers once, when data changes; this module is what runs per packet:
it finds the question and the EDNS OPT record with a few byte operations and glues a
stored answer body behind the client's own header and question. Anything unusual comes
back as a ``Query`` with ``error`` set, or is left to the slower, complete paths.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mcdns.proto import (
    MAX_NAME,
    OPCODE_QUERY,
    RCODE_BADVERS,
    RCODE_FORMERR,
    RCODE_NOTIMP,
    T_OPT,
    UDP_MIN,
)

EDNS_DO = 0x80  # in the first byte of the OPT TTL's flags
HEADER = struct.Struct(">HBBHHHH")
COUNTS_Q1 = b"\x00\x01\x00\x00\x00\x00\x00\x00"
COUNTS_Q1_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"


@dataclass(slots=True)
class Query:
    """A parsed query: where its question is and what it asks."""

    wire: bytes
    qend: int  # index just past the question (name + type + class)
    name: bytes  # lower-case wire-form qname
    qtype: int
    qclass: int
    edns: bool
    payload: int  # the client's EDNS UDP payload size (512 without EDNS)
    do: bool
    edns_version: int
    error: int  # 0, or the rcode the query earns (FORMERR, NOTIMP, BADVERS)

    @property
    def key(self) -> bytes:
        """The answer table key: lower-case name, type and class."""
        return self.name + self.wire[self.qend - 4:self.qend]


def read_name(wire: bytes, i: int) -> tuple[int, bytes] | None:
    """Parse an uncompressed name at ``i``: (index past it, lower-case wire) or None."""
    start, n = i, len(wire)
    while True:
        if i >= n:
            return None
        length = wire[i]
        if length == 0:
            i += 1
            break
        if length > 63:  # compression pointer or reserved label type
            return None
        i += length + 1
        if i - start >= MAX_NAME:  # with the root label to come: over 255 octets
            return None
    return i, wire[start:i].lower()


def is_plain_name(name: bytes) -> bool:
    """True when ``name`` (everything up to and including the first zero byte) is a
    valid uncompressed name: labels of 1-63 octets, 255 octets in all. The hot path
    finds the name end with one ``find(0)``; this is the check it owes before it answers
    for a name that is not in the table."""
    n = len(name) - 1
    if n > MAX_NAME - 1:
        return False
    i = 0
    while i < n:
        length = name[i]
        if length > 63:
            return False
        i += length + 1
    return i == n


def skip_name(wire: bytes, i: int) -> int | None:
    """Index past a possibly compressed name at ``i`` (pointers end a name), or None."""
    n, hops = len(wire), 0
    while i < n:
        length = wire[i]
        if length == 0:
            return i + 1
        if length & 0xC0 == 0xC0:
            return i + 2 if i + 2 <= n else None
        if length > 63:
            return None
        i += length + 1
        hops += 1
        if hops > 128:
            return None
    return None


def parse(wire: bytes) -> Query | None:
    """Parse a query completely; None when it must be dropped (short, or a response)."""
    n = len(wire)
    if n < 12:
        return None
    _id, b2, _b3, qd, an, ns, ar = HEADER.unpack_from(wire)
    if b2 & 0x80:  # QR set: a response, never answer it
        return None
    q = Query(wire, 12, b"", 0, 0, False, UDP_MIN, False, 0, 0)
    if (b2 >> 3) & 0x0F != OPCODE_QUERY:
        q.error = RCODE_NOTIMP
        return q
    if qd != 1:
        q.error = RCODE_FORMERR
        return q
    got = read_name(wire, 12)
    if got is None or got[0] + 4 > n:
        q.error = RCODE_FORMERR
        return q
    i, q.name = got
    q.qtype, q.qclass = struct.unpack_from(">HH", wire, i)
    q.qend = i = i + 4
    for _ in range(an + ns):
        i = _skip_rr(wire, i)
        if i < 0:
            q.error = RCODE_FORMERR
            return q
    for _ in range(ar):
        j = skip_name(wire, i)
        if j is None or j + 10 > n:
            q.error = RCODE_FORMERR
            return q
        rtype, rclass, ttl, rdlen = struct.unpack_from(">HHIH", wire, j)
        if rtype == T_OPT:
            if q.edns or j != i + 1:  # a second OPT, or an OPT not owned by the root
                q.error = RCODE_FORMERR
                return q
            q.edns, q.payload = True, max(UDP_MIN, rclass)
            q.edns_version = (ttl >> 16) & 0xFF
            q.do = bool((ttl >> 8) & EDNS_DO)
        i = j + 10 + rdlen
        if i > n:
            q.error = RCODE_FORMERR
            return q
    if i != n:
        q.error = RCODE_FORMERR
    elif q.edns and q.edns_version != 0:
        q.error = RCODE_BADVERS
    return q


def _skip_rr(wire: bytes, i: int) -> int:
    j = skip_name(wire, i)
    if j is None or j + 10 > len(wire):
        return -1
    (rdlen,) = struct.unpack_from(">H", wire, j + 8)
    end = j + 10 + rdlen
    return end if end <= len(wire) else -1


def opt_record(payload: int, do: bool, ext_rcode: int = 0) -> bytes:
    """Our OPT RR: root owner, our payload size, DO echoed (RFC 3225), version 0."""
    return struct.pack(">BHHBBBBH", 0, T_OPT, payload, ext_rcode, 0,
                       EDNS_DO if do else 0, 0, 0)


def flags(wire: bytes, rcode: int, aa: bool, ra: bool, tc: bool = False) -> bytes:
    """Response flag bytes: QR, the query's opcode and RD, AA/TC/RA as asked, CD echoed."""
    b2 = 0x80 | (wire[2] & 0x79) | (0x04 if aa else 0) | (0x02 if tc else 0)
    b3 = (0x80 if ra else 0) | (wire[3] & 0x10) | (rcode & 0x0F)
    return bytes((b2, b3))


def header_only(wire: bytes, rcode: int, ra: bool) -> bytes:
    """A response with no sections: FORMERR/NOTIMP for queries we cannot read."""
    return wire[:2] + flags(wire, rcode, False, ra) + b"\x00" * 8


def udp_limit(q: Query, tcp: bool, max_udp: int) -> int:
    if tcp:
        return 65535
    return min(q.payload, max_udp) if q.edns else UDP_MIN
