"""Hostile DNS messages from a seeded ``random.Random``: fast, reproducible, structure-aware.

Hypothesis drives the CI pass; this generator drives the long run (a million inputs in
minutes). Both build messages by hand, not with a DNS library, so they can lie: counts
that do not match the sections, label lengths past the end, compression pointers that
loop or point forward, OPT records owned by a name or repeated, option lengths that
overrun, every opcode, qtype and class. Each input comes from one of: random bytes, a
well-formed query, a well-formed query with one to four mutations, or a splice of two.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence

# qtypes worth hitting by name; the rest of 0-65535 is sampled at random too
QTYPES = (0, 1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 39, 41, 43, 46, 47, 48, 50, 52, 64, 65,
          99, 249, 250, 251, 252, 253, 254, 255, 256, 257, 32768, 32769, 65280, 65535)
QCLASSES = (0, 1, 2, 3, 4, 254, 255, 256, 65535)
EDNS_OPTIONS = (3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 65001)
PAYLOADS = (0, 1, 511, 512, 513, 1000, 1232, 1233, 1400, 4096, 65535)
EXTRA_NAMES = (
    b"\x00",
    b"\x07example\x03com\x00",
    b"\x07version\x04bind\x00",
    b"\x08hostname\x04bind\x00",
    b"\x02id\x06server\x00",
    b"\x07version\x06server\x00",
    b"\x0alocalhost\x00",
    b"\x0810-1-2-3\x07default\x03pod\x07cluster\x05local\x00",
    b"\x09fd00--1-2\x07default\x03pod\x07cluster\x05local\x00",
    b"\x0210\x0210\x0296\x0210\x07in-addr\x04arpa\x00",
    b"\x09192-0-2-1\x06nosuch\x03pod\x07cluster\x05local\x00",
    b"\x09192-0-2-1\x01x\x07default\x03pod\x07cluster\x05local\x00",
    b"\x01x\x03pod\x07cluster\x05local\x00",
    b"\x07notanip\x07default\x03pod\x07cluster\x05local\x00",
    b"\x051-2-3\x07default\x03pod\x07cluster\x05local\x00",
    b"\x07in-addr\x04arpa\x00",
    b"\x03ip6\x04arpa\x00",
    b"\x07nothere\x07default\x03svc\x07cluster\x05local\x00",
    b"\x07nothere\x03svc\x07cluster\x05local\x00",
    b"\x0aclusterset\x05local\x00",
)

CHAOS_NAMES = frozenset((*EXTRA_NAMES[1:6], EXTRA_NAMES[-2]))


def header(qid: int, flags: int, qd: int, an: int, ns: int, ar: int) -> bytes:
    return struct.pack(">HHHHHH", qid, flags, qd, an, ns, ar)


def opt(payload: int = 1232, do: bool = False, version: int = 0, ext_rcode: int = 0,
        options: bytes = b"", owner: bytes = b"\x00", rdlen: int | None = None) -> bytes:
    ttl = (ext_rcode << 24) | (version << 16) | (0x8000 if do else 0)
    n = len(options) if rdlen is None else rdlen
    return owner + struct.pack(">HHIH", 41, payload, ttl, n) + options


class Gen:
    """Makes fuzz inputs: ``next()`` -> (message, over_tcp)."""

    def __init__(self, seed: int, names: Sequence[bytes]) -> None:
        self.r = random.Random(seed)
        self.names = list(names) + list(EXTRA_NAMES)
        self.mutations: list[Callable[[bytearray], bytearray]] = [
            self._flip, self._set_byte, self._insert, self._delete, self._truncate,
            self._append, self._lie_counts, self._opcode, self._flag_bits, self._hostile_name,
            self._add_records, self._hostile_opt, self._label_length,
        ]

    def next(self) -> tuple[bytes, bool]:
        r = self.r
        tcp = r.random() < 0.25
        pick = r.random()
        if pick < 0.12:
            return self.random_bytes(), tcp
        if pick < 0.30:
            return self.query(), tcp
        if pick < 0.92:
            msg = bytearray(self.query())
            for _ in range(r.randint(1, 4)):
                msg = r.choice(self.mutations)(msg)
            return bytes(msg), tcp
        a, b = self.query(), self.query()
        return a[:r.randint(0, len(a))] + b[r.randint(0, len(b)):], tcp

    # ---- building blocks ------------------------------------------------------------

    def random_bytes(self) -> bytes:
        r = self.r
        n = r.choice((r.randint(0, 16), r.randint(12, 64), r.randint(0, 700)))
        return r.randbytes(n)

    def name(self) -> bytes:
        r = self.r
        name = r.choice(self.names)
        if r.random() < 0.3:  # random letter case, as clients with 0x20 randomisation send
            name = bytes(c ^ 0x20 if 0x61 <= (c | 0x20) <= 0x7A and r.random() < 0.5 else c
                         for c in name)
        if r.random() < 0.1:
            label = r.randbytes(r.randint(1, 63))
            name = bytes([len(label)]) + label + name
        return name

    def qtype(self) -> int:
        r = self.r
        return r.choice(QTYPES) if r.random() < 0.8 else r.randint(0, 65535)

    def qclass(self) -> int:
        r = self.r
        if r.random() < 0.75:
            return 1
        return r.choice(QCLASSES) if r.random() < 0.7 else r.randint(0, 65535)

    def options(self) -> bytes:
        r = self.r
        out = b""
        for _ in range(r.choice((0, 0, 1, 1, 2, 5))):
            code = r.choice(EDNS_OPTIONS) if r.random() < 0.8 else r.randint(0, 65535)
            data = r.randbytes(r.choice((0, 2, 4, 8, 16, r.randint(0, 300))))
            out += struct.pack(">HH", code, len(data)) + data
        return out

    def query(self) -> bytes:
        """A well-formed query: one question, maybe EDNS with options."""
        r = self.r
        flags = r.choice((0x0000, 0x0100, 0x0100, 0x0110, 0x0120, 0x0130))
        edns = r.random() < 0.5
        name = self.name()
        if name in CHAOS_NAMES and r.random() < 0.7:
            q = name + struct.pack(">HH", 16, 3)
        else:
            q = name + struct.pack(">HH", self.qtype(), self.qclass())
        extra = b""
        if edns:
            version = 0 if r.random() < 0.9 else r.randint(1, 255)
            payload = r.choice(PAYLOADS) if r.random() < 0.8 else r.randint(0, 65535)
            extra = opt(payload, r.random() < 0.3, version,
                        options=self.options() if r.random() < 0.4 else b"")
        return header(r.randint(0, 65535), flags, 1, 0, 0, 1 if edns else 0) + q + extra

    # ---- mutations (each takes and returns a message) -------------------------------

    def _flip(self, m: bytearray) -> bytearray:
        if m:
            for _ in range(self.r.randint(1, 8)):
                m[self.r.randrange(len(m))] ^= 1 << self.r.randrange(8)
        return m

    def _set_byte(self, m: bytearray) -> bytearray:
        if m:
            m[self.r.randrange(len(m))] = self.r.choice((0, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFF,
                                                        self.r.randrange(256)))
        return m

    def _insert(self, m: bytearray) -> bytearray:
        i = self.r.randint(0, len(m))
        m[i:i] = self.r.randbytes(self.r.randint(1, 32))
        return m

    def _delete(self, m: bytearray) -> bytearray:
        if m:
            i = self.r.randrange(len(m))
            del m[i:i + self.r.randint(1, 16)]
        return m

    def _truncate(self, m: bytearray) -> bytearray:
        return m[:self.r.randint(0, len(m))]

    def _append(self, m: bytearray) -> bytearray:
        r = self.r
        return m + r.choice((b"\x00", b"\xc0\x0c", r.randbytes(r.randint(1, 64)), self.query()))

    def _lie_counts(self, m: bytearray) -> bytearray:
        r = self.r
        if len(m) >= 12:
            i = r.choice((4, 6, 8, 10))
            m[i:i + 2] = struct.pack(">H", r.choice((0, 1, 2, 3, 255, 256, 65535,
                                                     r.randint(0, 65535))))
        return m

    def _opcode(self, m: bytearray) -> bytearray:
        if len(m) >= 3:
            m[2] = (m[2] & 0x87) | (self.r.randrange(16) << 3)
        return m

    def _flag_bits(self, m: bytearray) -> bytearray:
        if len(m) >= 4:
            m[2] ^= self.r.choice((0x80, 0x04, 0x02, 0x01))
            m[3] ^= self.r.choice((0x80, 0x40, 0x20, 0x10, 0x0F, self.r.randrange(256)))
        return m

    def _hostile_name(self, m: bytearray) -> bytearray:
        """Replace the question name by a hostile one, keeping the rest."""
        r = self.r
        if len(m) < 12:
            return m
        end = _name_end(m, 12)
        tail = m[end:] if end is not None else m[12:]
        choice = r.randrange(12)
        if choice == 0:
            name = b"\xc0\x0c"  # points at itself
        elif choice == 1:
            name = b"\x01a\xc0\x0e"  # points at its own pointer
        elif choice == 2:
            name = b"\x01a\xc0" + bytes([r.randrange(256)])  # anywhere, even past the end
        elif choice == 3:
            name = b"\x3f" + b"a" * 63  # the label runs into the type and class
        elif choice == 4:
            name = b"".join(b"\x3f" + b"b" * 63 for _ in range(r.randint(4, 6))) + b"\x00"
        elif choice == 5:
            name = b"\x01x" * r.randint(100, 200) + b"\x00"
        elif choice == 6:
            name = bytes([r.choice((0x40, 0x41, 0x80, 0xBF))]) + r.randbytes(4) + b"\x00"
        elif choice == 7:
            label = bytes(r.choice((0, 0x2E, 0xFF, 0x41, 0x5C)) for _ in range(r.randint(1, 20)))
            name = bytes([len(label)]) + label + self.name()
        elif choice == 8:  # a served name made longer than 255 octets
            name = self.name()
            while len(name) <= 255 + r.randint(0, 8):
                name = b"\x01" + bytes([r.randint(0x61, 0x7A)]) + name
        elif choice == 9:  # a reserved label type or an over-long label before a served name
            label = r.randbytes(r.randint(0, 130)).replace(b"\x00", b"a")
            name = bytes([r.randint(0x40, 0xFF)]) + label + self.name()
        elif choice == 10:  # a label length that lies, ending on a served name's suffix
            name = self.name()
            name = bytes([r.randint(1, 63)]) + r.randbytes(r.randint(0, 6)).replace(
                b"\x00", b"a") + name
        else:
            name = b""  # no name at all
        return m[:12] + name + tail

    def _label_length(self, m: bytearray) -> bytearray:
        """Lie in one label length of the question name."""
        i = 12
        while i < len(m) and 0 < m[i] < 64 and self.r.random() < 0.6:
            i += m[i] + 1
        if i < len(m):
            m[i] = self.r.choice((1, 62, 63, 64, 200, min(m[i] + 1, 255), max(m[i] - 1, 0)))
        return m

    def _add_records(self, m: bytearray) -> bytearray:
        """Answer/authority/additional records, some with compressed or looping owners."""
        r = self.r
        if len(m) < 12:
            return m
        body = b""
        n = r.randint(1, 3)
        for _ in range(n):
            past_end = struct.pack(">H", 0xC000 | len(m) & 0x3FFF)
            owner = r.choice((b"\x00", b"\xc0\x0c", self.name(), past_end, b"\x01a\xc0\x0c"))
            rtype = r.choice((1, 5, 6, 41, 250, r.randint(0, 65535)))
            rdata = r.randbytes(r.randint(0, 40))
            rdlen = len(rdata) if r.random() < 0.8 else r.randint(0, 65535)
            body += owner + struct.pack(">HHIH", rtype, r.choice((1, 255, 254, 4096)),
                                        r.randint(0, 2**32 - 1), rdlen) + rdata
        which = r.choice((6, 8, 10))
        count = struct.unpack_from(">H", m, which)[0]
        m[which:which + 2] = struct.pack(">H", min(count + n, 65535))
        return m + body

    def _hostile_opt(self, m: bytearray) -> bytearray:
        r = self.r
        if len(m) < 12:
            return m
        choice = r.randrange(7)
        if choice == 0:
            rec = opt(owner=b"\xc0\x0c")  # OPT owned by the question name
        elif choice == 1:
            rec = opt() + opt(4096, True)  # two OPTs
        elif choice == 2:
            rec = opt(rdlen=r.choice((1, 4, 100, 65535)))  # rdlen past the end
        elif choice == 3:  # an option whose length runs past the record
            rec = opt(options=struct.pack(">HH", r.choice(EDNS_OPTIONS), 500) + b"xy")
        elif choice == 4:
            rec = opt(version=r.randint(1, 255), ext_rcode=r.randint(0, 255))
        elif choice == 5:
            rec = opt(payload=r.choice(PAYLOADS), do=True, options=self.options())
        else:
            rec = opt()[:r.randint(0, 10)]  # cut inside the record
        m[10:12] = struct.pack(">H", min(struct.unpack_from(">H", m, 10)[0] + 1, 65535))
        return m + rec


def _name_end(m: bytearray | bytes, i: int) -> int | None:
    """Index past the (uncompressed) name at ``i``, or None if it does not end cleanly."""
    while i < len(m):
        n = m[i]
        if n == 0:
            return i + 1
        if n > 63:
            return None
        i += n + 1
    return None
