"""One entry point from bytes to bytes: ``Handler.handle(wire, peer, tcp)``.

Shared by UDP and TCP (and the fuzz harness). The first lines are the hot path: a
well-formed query for a compiled name is answered by gluing the stored body behind the
client's header and question, no parsing beyond finding the end of the name. Everything
else goes through ``wire.parse`` and the complete, slower path: negative answers, pods,
CNAMEs, chaos TXT, forwarding, and errors (short packet: drop; unparsable: FORMERR;
exception while answering: SERVFAIL).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections.abc import Awaitable
from typing import Protocol

from mcdns import __version__
from mcdns.answers.compiler import Compiler
from mcdns.answers.explain import explain
from mcdns.answers.rdata import name_text, name_wire
from mcdns.answers.table import LAZY_TYPES, NEGATIVE_CACHE_MAX, TAG_NONE, Entry, Zone
from mcdns.config import Config
from mcdns.dns import wire as w

log = logging.getLogger("mcdns.dns")

CLASS_IN, CLASS_CH, CLASS_ANY = 1, 3, 255
TCP_MAX = 65535  # a DNS message over TCP has a 16-bit length (RFC 1035 §4.2.2)
T_A, T_AAAA, T_TXT, T_SRV, T_ANY, T_AXFR, T_IXFR = 1, 28, 16, 33, 255, 252, 251
CHAOS_VERSION = (b"\x07version\x04bind\x00", b"\x07version\x06server\x00")
CHAOS_ID = (b"\x02id\x06server\x00", b"\x08hostname\x04bind\x00")

Response = bytes | None | Awaitable[bytes | None]
_FULL_PATH_TYPES = (struct.pack(">H", T_AXFR), struct.pack(">H", T_IXFR))


class Forwarder(Protocol):
    """The resolver role's engine (mcdns.resolver) as the handler sees it."""

    def allowed(self, peer_ip: str) -> bool: ...

    def answer(self, wire: bytes, qkey: bytes, tcp: bool) -> bytes | Awaitable[bytes | None]: ...


class Handler:
    """Answers DNS messages from the compiled table; see the module docstring."""

    def __init__(self, cfg: Config, compiler: Compiler, forwarder: Forwarder | None = None
                 ) -> None:
        self.cfg = cfg
        self.compiler = compiler
        self.table = compiler.table
        self.store = compiler.store
        self.forwarder = forwarder
        self.ra = forwarder is not None
        self._ra4 = 4 if self.ra else 0  # the RA bit's part of an index into Entry.heads
        self._entries = self.table.entries
        self._negatives = self.table.negative_cache
        self._slow_counted = False  # set by the slow path when it counted its own answer
        self.reconfigure(cfg)
        self._hostname = socket.gethostname().encode()[:255]
        self.stats: list[int] | None = None  # table.slots.counts when metrics are on

    def reconfigure(self, cfg: Config) -> None:
        """Take the settings the query path reads from a (reloaded) config."""
        self.cfg = cfg
        self._negatives.clear()
        self._outside_memo: dict[bytes, bool] = {}
        self.max_udp = cfg.max_udp_size
        self._opt = (w.opt_record(cfg.max_udp_size, False), w.opt_record(cfg.max_udp_size, True))
        self._pod_zone = name_wire(f"pod.{cfg.zone}.") if cfg.pods == "insecure" else None

    # ---- the hot path ------------------------------------------------------------------

    def handle(self, wire: bytes, peer: str, tcp: bool) -> Response:
        """Answer one message; None means drop it."""
        n = len(wire)
        if n < 12:
            return None
        fwd = self.forwarder
        if (wire[2] & 0xF8) == 0 and (fwd is None or fwd.allowed(peer)):
            # A query with one question, as sent (names are stored in lower case, so a
            # lower-case question is its own key); else the lower-cased key.
            qend = wire.find(0, 12) + 1
            if qend + 4 == n and wire.startswith(w.COUNTS_Q1, 4):
                edns = False
            # The same with an OPT record right after the question: root owner, type 41,
            # version 0, no options.
            elif (qend + 15 == n and wire.startswith(w.COUNTS_Q1_OPT, 4)
                  and wire.startswith(b"\x00\x00\x29", qend + 4) and wire[qend + 10] == 0
                  and wire.endswith(b"\x00\x00")):
                edns = True
            else:
                edns = None
            if edns is not None:
                question = wire[12:qend + 4]
                e = self._entries.get(question) or self._negatives.get(question)
                if e is None:
                    name = wire[12:qend].lower()
                    key = name + wire[qend:qend + 4]
                    e = self._entries.get(key) or self._negatives.get(key)
                    if e is None:
                        if fwd is not None and self._outside(name, key, wire, qend):
                            return self._forward(wire, key, tcp)
                        e = self._negative_entry(name, key, wire, qend)
                if e is not None:
                    if not edns:
                        if qend + e.tail <= (TCP_MAX if tcp else 512):
                            st = self.stats
                            if st is not None:
                                st[e.slots[tcp]] += 1
                            return (wire[:2] + e.heads[(wire[2] & 1) | ((wire[3] & 0x10) >> 3)
                                                       | self._ra4] + question + e.body)
                    else:
                        size = qend + e.tail + 11
                        if size <= 512 or (size <= TCP_MAX if tcp else size <= min(
                                max(512, (wire[qend + 7] << 8) | wire[qend + 8]),
                                self.max_udp)):
                            st = self.stats
                            if st is not None:
                                st[e.slots[tcp]] += 1
                            return (wire[:2] + e.heads_edns[(wire[2] & 1)
                                                            | ((wire[3] & 0x10) >> 3) | self._ra4]
                                    + question + e.body + self._opt[wire[qend + 11] >> 7])
        self._slow_counted = False
        try:
            resp = self._slow(wire, peer, tcp)
        except Exception:
            log.exception("error answering a query; SERVFAIL")
            resp = w.header_only(wire, w.RCODE_SERVFAIL, self.ra)
            self._slow_counted = False
        if self.stats is not None and type(resp) is bytes and not self._slow_counted:
            self.count(resp, tcp)
        return resp

    def count(self, resp: bytes, tcp: bool) -> None:
        """Count a response built off the hot path, reading zone, type and rcode from it."""
        st = self.stats
        assert st is not None
        zi, qtype = -1, 0
        if resp[4:6] == b"\x00\x01":
            end = resp.find(0, 12) + 1
            if end:
                qtype = int.from_bytes(resp[end:end + 2], "big")
                zone = self.table.zone_of(resp[12:end].lower())
                zi = zone.index if zone is not None else -1
        st[self.table.slots.slot(zi, qtype, resp[3] & 0x0F, TAG_NONE, tcp)] += 1

    def _forward(self, wire: bytes, qkey: bytes, tcp: bool) -> Response:
        """Hand a query for a name outside the zones to the forwarder; count the answer
        under zone "other" (the type is the last 4 bytes of the key but one)."""
        assert self.forwarder is not None
        resp = self.forwarder.answer(wire, qkey, tcp)
        if self.stats is None:
            return resp
        qtype = (qkey[-4] << 8) | qkey[-3]
        self._slow_counted = True  # here, or by _counted() once the answer comes
        if type(resp) is bytes:
            self._count_other(qtype, resp[3] & 0x0F, tcp)
            return resp
        return self._counted(resp, qtype, tcp)  # type: ignore[arg-type]

    def _count_other(self, qtype: int, rcode: int, tcp: bool) -> None:
        assert self.stats is not None
        self.stats[self.table.slots.slot(-1, qtype, rcode, TAG_NONE, tcp)] += 1

    async def _counted(self, resp: Awaitable[bytes | None], qtype: int, tcp: bool
                       ) -> bytes | None:
        data = await resp
        if data is not None:
            self._count_other(qtype, data[3] & 0x0F, tcp)
        return data

    def _outside(self, name: bytes, key: bytes, wire: bytes, qend: int) -> bool:
        """Resolver role: an IN query for a plain name outside every served zone.
        Zones are fixed for the process's life, so the verdict is remembered (bounded)."""
        known = self._outside_memo.get(key)
        if known is not None:
            return known
        verdict = (wire[qend + 2:qend + 4] == b"\x00\x01" and w.is_plain_name(name)
                   and self.table.zone_of(name) is None)
        if len(self._outside_memo) >= NEGATIVE_CACHE_MAX:
            self._outside_memo.clear()
        self._outside_memo[key] = verdict
        return verdict

    def _negative_entry(self, name: bytes, key: bytes, wire: bytes, qend: int) -> Entry | None:
        """NXDOMAIN/NODATA for an IN query of a plain name, or None for the full path
        (other classes, zone transfers, pods, CNAMEs, not yet synced, out of zone).
        Remembered in the table's negative cache until the table changes."""
        e = self._negative_lookup(name, wire, qend)
        if e is not None:
            cache = self._negatives
            if len(cache) >= NEGATIVE_CACHE_MAX:
                cache.clear()
            cache[key] = e
        return e

    def _negative_lookup(self, name: bytes, wire: bytes, qend: int) -> Entry | None:
        if wire[qend + 2:qend + 4] != b"\x00\x01" or wire[qend:qend + 2] in _FULL_PATH_TYPES:
            return None
        if not w.is_plain_name(name):  # over 255 octets or a label over 63: FORMERR
            return None
        zone = self.table.zone_of(name)
        if zone is None or name in self.table.aliases or not self.store.synced:
            return None
        if self._pod_zone is not None and name.endswith(self._pod_zone):
            return None
        qtype = int.from_bytes(wire[qend:qend + 2])
        exists = name in self.table.names or name in self.table.ents
        if not exists or qtype in LAZY_TYPES:
            # A name not kept compiled (endpoint, SRV and PTR names), or a service's SRV
            # answer: encoded now, and remembered with the negative answers until the
            # table changes.
            found, e = self.table.lazy_entry(name, qtype)
            if e is not None:
                return e
            exists = exists or found
        if exists:
            if qtype == T_ANY:
                return None  # built on demand, from every type of the name
            return zone.negative_entry(w.RCODE_NOERROR, qtype)
        if self.forwarder is not None and zone.reverse:
            return None
        return zone.negative_entry(w.RCODE_NXDOMAIN, qtype)

    # ---- everything else ---------------------------------------------------------------

    def _slow(self, wire: bytes, peer: str, tcp: bool) -> Response:
        q = w.parse(wire)
        if q is None:
            return None
        if q.error in (w.RCODE_FORMERR, w.RCODE_NOTIMP):
            return w.header_only(wire, q.error, self.ra)
        if q.error == w.RCODE_BADVERS:
            return self._respond(q, tcp, w.RCODE_NOERROR, b"\x00" * 6, b"", ext_rcode=1)
        if self.forwarder is not None and not self.forwarder.allowed(peer):
            return self._refused(q, tcp)
        if q.qclass == CLASS_CH:
            return self._chaos(q, tcp)
        zone = self.table.zone_of(q.name) if q.qclass in (CLASS_IN, CLASS_ANY) else None
        if zone is None:
            if self.forwarder is not None and q.qclass == CLASS_IN:
                return self._forward(wire, q.key, tcp)
            return self._refused(q, tcp)
        if q.qtype in (T_AXFR, T_IXFR):
            return self._refused(q, tcp)
        key = q.name + struct.pack(">HH", q.qtype, CLASS_IN)
        entry = (self.table.entries.get(key) or self.table.aliases.get(q.name)
                 or self._negatives.get(key))  # memoised: lazy, and negative answers
        exists = q.name in self.table.names or q.name in self.table.ents
        if entry is None and (not exists or q.qtype in LAZY_TYPES):
            found, entry = self.table.lazy_entry(q.name, q.qtype)
            exists = exists or found
        if entry is None and q.qtype == T_ANY:
            entry = self.table.any_entry(q.name)
        if entry is not None:
            return self._entry(q, tcp, entry)
        if self._pod_zone is not None and q.name.endswith(self._pod_zone):
            pod = self._pod(q, tcp, zone)
            if pod is not None:
                return pod
        if not exists and not self.store.synced:
            return self._respond(q, tcp, w.RCODE_SERVFAIL, b"\x00\x00\x00\x00", b"", aa=False)
        if not exists and self.forwarder is not None and zone.reverse:
            return self._forward(wire, q.key, tcp)
        return self._negative(q, tcp, zone, w.RCODE_NOERROR if exists else w.RCODE_NXDOMAIN)

    def _respond(self, q: w.Query, tcp: bool, rcode: int, counts: bytes, body: bytes,
                 aa: bool = True, ext_rcode: int = 0) -> bytes:
        """Header + question + body (+ OPT), or the truncated form if it does not fit.

        ``counts`` holds AN, NS, AR (6 bytes) without the OPT record.
        """
        wire = q.wire
        opt = w.opt_record(self.max_udp, q.do, ext_rcode) if q.edns else b""
        question = wire[12:q.qend]
        size = 12 + len(question) + len(body) + len(opt)
        if size > w.udp_limit(q, tcp, self.max_udp):
            return (wire[:2] + w.flags(wire, rcode, aa, self.ra, tc=True)
                    + struct.pack(">HHHH", 1, 0, 0, 1 if opt else 0) + question + opt)
        an, ns, ar = struct.unpack(">HHH", counts)
        return (wire[:2] + w.flags(wire, rcode, aa, self.ra)
                + struct.pack(">HHHH", 1, an, ns, ar + (1 if opt else 0)) + question + body + opt)

    def _entry(self, q: w.Query, tcp: bool, e: Entry) -> bytes:
        """A stored answer; without its additional section if only that makes it fit
        (RFC 2181 §9: TC only when the answer itself does not fit)."""
        limit = w.udp_limit(q, tcp, self.max_udp) - (11 if q.edns else 0)
        if e.size(len(q.name)) > limit:
            minimal = e.minimal()
            if minimal is not None and minimal.size(len(q.name)) <= limit:
                e = minimal
        if self.stats is not None:  # with the entry's zone and decision tag, the query's type
            slots = self.table.slots
            zi, _, rcode, tag, _ = slots.labels[e.slots[tcp]]
            self.stats[slots.slot(zi, q.qtype, rcode, tag, tcp)] += 1
            self._slow_counted = True
        return self._respond(q, tcp, e.rcode, e.counts[2:], e.body)

    def _negative(self, q: w.Query, tcp: bool, zone: Zone, rcode: int) -> bytes:
        return self._respond(q, tcp, rcode, b"\x00\x00\x00\x01\x00\x00", zone.negative)

    def _refused(self, q: w.Query, tcp: bool) -> bytes:
        return self._respond(q, tcp, w.RCODE_REFUSED, b"\x00" * 6, b"", aa=False)

    def _pod(self, q: w.Query, tcp: bool, zone: Zone) -> bytes | None:
        """``<a-b-c-d>.<ns>.pod.<zone>`` in ``pods insecure`` mode, built per query."""
        name = q.name
        first = name[1:1 + name[0]].decode("ascii", "replace")
        rest = name[1 + name[0]:]
        if len(rest) <= len(self._pod_zone or b""):
            return None
        ns = rest[1:1 + rest[0]].decode("ascii", "replace")
        if len(rest) - 1 - rest[0] != len(self._pod_zone or b""):
            return None  # more labels than <ip>.<ns>.pod.<zone>
        if ns not in self.store.namespaces:
            return None
        ip = _undash(first)
        if ip is None:
            return None
        want = T_A if ip.version == 4 else T_AAAA
        if q.qtype not in (want, T_ANY):
            return self._negative(q, tcp, zone, w.RCODE_NOERROR)
        rdata = ip.packed
        rr = struct.pack(">HHHIH", 0xC00C, want, CLASS_IN, self.cfg.ttl, len(rdata)) + rdata
        return self._respond(q, tcp, w.RCODE_NOERROR, b"\x00\x01\x00\x00\x00\x00", rr)

    def _chaos(self, q: w.Query, tcp: bool) -> bytes:
        if q.qtype not in (T_TXT, T_ANY):
            return self._refused(q, tcp)
        if q.name in CHAOS_VERSION:
            texts = [f"mcdns {__version__}".encode()]
        elif q.name in CHAOS_ID:
            texts = [self._hostname]
        elif self.table.zone_of(q.name) is not None:
            texts = [s.encode("utf-8", "replace")[:255]
                     for s in explain(self.compiler, name_text(q.name))]
        else:
            return self._refused(q, tcp)
        body = b""
        for t in texts:
            rdata = bytes([len(t)]) + t
            body += struct.pack(">HHHIH", 0xC00C, T_TXT, CLASS_CH, 0, len(rdata)) + rdata
        return self._respond(q, tcp, w.RCODE_NOERROR, struct.pack(">HHH", len(texts), 0, 0), body)


def _undash(label: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP of a pod name label (1-2-3-4 or an IPv6 with '-' for ':'), else None."""
    try:
        if label.count("-") == 3 and all(p.isdigit() for p in label.split("-")):
            return ipaddress.IPv4Address(label.replace("-", "."))
        return ipaddress.IPv6Address(label.replace("-", ":"))
    except ValueError:
        return None
