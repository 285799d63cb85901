"""Hand-written DNS wire scanning for the forwarding path.

The cache stores upstream replies as bytes and patches them in place on a hit, so it needs
byte offsets (of every TTL field, of the OPT record) that a parsing library does not give.
Walking a message to find them is a few dozen lines, done once per upstream reply; the
client side only needs its EDNS payload size and DO bit, found with a fast path for the
usual one-question-one-OPT query. Nothing here follows compression pointers: skipping a
name never needs to.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from mcdns.dns import wire as dns_wire
from mcdns.proto import T_OPT, T_SOA

HEADER = struct.Struct("!HHHHHH")
RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")


FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_CD = 0x0010

OPT_OWNER_TYPE = b"\x00\x00\x29"
"""Root owner name and type 41: the first bytes of an OPT record."""
ONLY_AR1 = b"\x00\x00\x00\x00\x00\x01"
"""Header counts AN, NS, AR of a query whose only extra record is (presumably) OPT."""
UPSTREAM_PAYLOAD = 1232
"""EDNS payload size mcdns advertises to its upstreams (the DNS flag day 2020 value)."""


class WireError(ValueError):
    """A message is too short or malformed to scan."""


def skip_name(buf: bytes, off: int) -> int:
    """Return the offset just past the (possibly compressed) name starting at ``off``
    (``mcdns.dns.wire.skip_name``, raising instead of returning None)."""
    end = dns_wire.skip_name(buf, off)
    if end is None:
        raise WireError(f"malformed name at offset {off}")
    return end


def opt_record(payload: int, do: bool) -> bytes:
    """An OPT pseudo-record: root name, type 41, ``payload`` as class, DO in the flags."""
    return dns_wire.opt_record(payload, do)


def opt_with_payload(opt: bytes, payload: int) -> bytes:
    """The OPT record ``opt`` (as ``opt_record`` makes them) advertising ``payload``."""
    return opt[:3] + U16.pack(payload) + opt[5:]


def client_edns(wire: bytes, qend: int) -> tuple[int, bool]:
    """Return (EDNS payload size or 0 without EDNS, DO bit) of a client query.

    ``qend`` is the offset just past the question. The common query (no answer or
    authority records, one OPT) is read without a loop; anything else is walked.
    A malformed tail counts as no EDNS: the handler has already accepted the header.
    """
    size = len(wire)
    if size == qend:
        return 0, False  # no EDNS, nothing after the question: the common plain query
    if size >= qend + 11 and wire[qend : qend + 3] == OPT_OWNER_TYPE and wire[6:12] == ONLY_AR1:
        payload = wire[qend + 3] << 8 | wire[qend + 4]
        return (payload if payload > 512 else 512), bool(wire[qend + 7] & 0x80)
    try:
        return _walk_edns(wire, qend)
    except (WireError, struct.error):
        return 0, False


def _walk_edns(wire: bytes, qend: int) -> tuple[int, bool]:
    _, _, _, an, ns, ar = HEADER.unpack_from(wire, 0)
    off = qend
    for _ in range(an + ns + ar):
        off = skip_name(wire, off)
        rtype, rclass, ttl, rdlen = RR_FIXED.unpack_from(wire, off)
        if rtype == T_OPT:
            return max(rclass, 512), bool(ttl & 0x8000)
        off += RR_FIXED.size + rdlen
    return 0, False


def make_query(qid: int, qkey: bytes, do: bool) -> bytes:
    """The query mcdns sends upstream: RD set, the question as keyed, EDNS with DO as asked."""
    return HEADER.pack(qid, FLAG_RD, 1, 0, 0, 1) + qkey + opt_record(UPSTREAM_PAYLOAD, do)


def matches(reply: bytes, qid: int, qkey: bytes) -> bool:
    """Whether ``reply`` answers the query ``qid`` for ``qkey`` (name compared caselessly)."""
    qend = 12 + len(qkey)
    if len(reply) < qend or U16.unpack_from(reply, 0)[0] != qid:
        return False
    if not reply[2] & 0x80 or reply[4:6] != b"\x00\x01":
        return False
    name_end = qend - 4
    return reply[12:name_end].lower() == qkey[:-4] and reply[name_end:qend] == qkey[-4:]


def short_reply(wire: bytes, qend: int, rcode: int, opt: bytes, tc: bool) -> bytes:
    """A reply with no records but ``opt`` (SERVFAIL, a truncated answer) to query ``wire``."""
    flags = FLAG_QR | FLAG_RA | (U16.unpack_from(wire, 2)[0] & (FLAG_RD | FLAG_CD)) | rcode
    if tc:
        flags |= FLAG_TC
    head = HEADER.pack(U16.unpack_from(wire, 0)[0], flags, 1, 0, 0, 1 if opt else 0)
    return head + wire[12:qend] + opt


@dataclass(slots=True)
class Scan:
    """What the cache needs to know about an upstream reply."""

    flags: int
    counts: tuple[int, int, int]
    ttl_offsets: list[int] = field(default_factory=list)
    """Offsets of the TTL fields of every record except OPT."""
    ttls: list[int] = field(default_factory=list)
    answer_ttl: int | None = None
    """Lowest TTL in the answer section (None: empty)."""
    negative_ttl: int | None = None
    """min(SOA TTL, SOA minimum) of an SOA in the authority section (RFC 2308)."""
    opt: tuple[int, int] | None = None
    """Start and end offsets of the OPT record."""
    ext_rcode: int = 0

    @property
    def rcode(self) -> int:
        return self.flags & 0x000F


def scan(reply: bytes, qend: int) -> Scan:
    """Walk every record of ``reply`` (one question ending at ``qend``)."""
    try:
        _, flags, _, an, ns, ar = HEADER.unpack_from(reply, 0)
        result = Scan(flags=flags, counts=(an, ns, ar))
        off = qend
        for index in range(an + ns + ar):
            section = 0 if index < an else 1 if index < an + ns else 2
            off = _scan_record(reply, off, section, result)
    except struct.error:
        raise WireError("record runs past the end") from None
    if off != len(reply):
        raise WireError("trailing bytes after the last record")
    return result


def _scan_record(reply: bytes, start: int, section: int, result: Scan) -> int:
    off = skip_name(reply, start)
    fields: tuple[int, int, int, int] = RR_FIXED.unpack_from(reply, off)
    rtype, _, ttl, rdlen = fields
    end = off + RR_FIXED.size + rdlen
    if end > len(reply):
        raise WireError("rdata runs past the end")
    if rtype == T_OPT:
        if section != 2 or result.opt is not None:
            raise WireError("misplaced or repeated OPT")
        result.opt = (start, end)
        result.ext_rcode = ttl >> 24
        return end
    if ttl & 0x80000000:  # RFC 2181 8: a TTL with the top bit set counts as zero
        ttl = 0
    result.ttl_offsets.append(off + 4)
    result.ttls.append(ttl)
    if section == 0:
        result.answer_ttl = ttl if result.answer_ttl is None else min(result.answer_ttl, ttl)
    elif section == 1 and rtype == T_SOA and rdlen >= 22:
        minimum: int = U32.unpack_from(reply, end - 4)[0]
        result.negative_ttl = min(ttl, minimum)
    return end
