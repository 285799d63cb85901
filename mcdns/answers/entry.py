"""Answers as stored: a response body and the header bytes that go with it.

An ``Entry`` is what the query path reads for a compiled name (or a memoised lazy or
negative answer): the body after the question, and the header bytes 2-11 for every
combination of the client's RD and CD bits and the server's RA, shared by every entry
with the same rcode and counts (a few dozen objects in all, whatever the table's size).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_COUNTS: dict[tuple[int, int, int], bytes] = {}
_HEADS: dict[tuple[int, int, int, int], tuple[bytes, ...]] = {}


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

