"""Encoding one answer: an RRset behind the question, its CNAME chain, its glue.

Every answer record is owned by the question's name and written with the compression
pointer 0xC00C; a query for that name (in any letter case) has a question of the same
length at offset 12, so the stored body is valid behind the client's own question. Names
inside record data and owners of additional records are written uncompressed.

The encoder reads other names' records (a CNAME's in-zone target, SRV and NS targets'
addresses for the additional section) through the ``lookup`` function it is given: the
table answers it from the write in progress (``Job``), else from what it serves.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field

from mcdns.answers import rdata as rd
from mcdns.answers.entry import Entry, make_entry
from mcdns.answers.owners import RRsets
from mcdns.proto import (
    QNAME_POINTER,
    RCODE_NOERROR,
    T_A,
    T_AAAA,
    T_ANY,
    T_CNAME,
    T_NS,
    T_PTR,
    T_SOA,
    T_SRV,
    T_TXT,
)

TYPES = (T_A, T_AAAA, T_CNAME, T_SRV, T_PTR, T_TXT, T_NS, T_SOA)  # the types owners give
GLUED = (T_SRV, T_NS)  # answers with target addresses in the additional section
LookupFn = Callable[[bytes, int], tuple[bytes, ...]]  # (name, type) -> rdata


@dataclass(slots=True)
class Job:
    """The inputs of one table write (or one lazy answer), passed explicitly: nothing of
    it outlives the call that made it.

    ``pending``: names being (re)compiled, with their new records ({} = gone).
    ``context``: the same owner's lazy names, for the glue of the names compiled now.
    ``tags``: metrics tags of the owner's names (answers.slots.TAG_*)."""

    pending: dict[bytes, RRsets] = field(default_factory=dict)
    context: Mapping[bytes, RRsets] = field(default_factory=dict)
    tags: Mapping[bytes, int] = field(default_factory=dict)

    def records(self, wire: bytes) -> RRsets | None:
        """The name's records as this job has them, or None when it has none (a name
        this job removes reads as served until it is recompiled)."""
        return self.pending.get(wire) or self.context.get(wire)


def encode(qtype: int, sets: RRsets, ttl: int, lookup: LookupFn, aliased: Container[bytes],
           slots: tuple[int, int]) -> Entry:
    """The answer to ``qtype`` from a name's records ``sets`` (every type for ANY; the
    CNAME and its in-zone target's addresses when the name is an alias), with glue.
    ``aliased`` holds the names that are themselves CNAMEs (a chain stops there)."""
    answers: list[bytes] = []
    if T_CNAME in sets:
        target = sets[T_CNAME][0]
        answers.append(rd.rr(QNAME_POINTER, T_CNAME, ttl, target))
        if qtype in (T_A, T_AAAA) and target not in aliased:
            answers += [rd.rr(target, qtype, ttl, x) for x in lookup(target, qtype)]
    else:
        for t in (TYPES if qtype == T_ANY else (qtype,)):
            answers += [rd.rr(QNAME_POINTER, t, ttl, x) for x in sets.get(t, ())]
    body = b"".join(answers)
    glue = [] if qtype not in GLUED or T_CNAME in sets else _glue(
        sets.get(qtype, ()), qtype, ttl, lookup)
    if not glue:
        return make_entry(RCODE_NOERROR, len(answers), 0, 0, body, -1, slots)
    return make_entry(RCODE_NOERROR, len(answers), 0, len(glue), body + b"".join(glue),
                      len(body), slots)


def _glue(rdatas: tuple[bytes, ...], qtype: int, ttl: int, lookup: LookupFn) -> list[bytes]:
    """A/AAAA of SRV and NS targets for the additional section, as CoreDNS adds them."""
    out: list[bytes] = []
    seen: set[bytes] = set()
    for x in rdatas:
        target = rd.target(qtype, x)
        if target is None or target in seen:
            continue
        seen.add(target)
        for t in (T_A, T_AAAA):
            out += [rd.rr(target, t, ttl, a) for a in lookup(target, t)]
    return out


def answer_rdata(e: Entry, qtype: int) -> tuple[bytes, ...]:
    """The ``qtype`` rdata in a stored answer's answer section."""
    an: int = int.from_bytes(e.counts[2:4], "big")
    return tuple(rd.answers_of(e.body, an, qtype))
