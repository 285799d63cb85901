"""One entry point from bytes to bytes: ``Handler.handle(wire, peer, tcp)``.

Shared by UDP and TCP (and the fuzz harness). The first lines are the hot path: a
well-formed query for a compiled (or already asked) name is answered by gluing the
stored body behind the client's header and question, no parsing beyond finding the end
of the name. What a name answers is decided in one place, ``_resolve``, which both the
hot path (on a miss) and the full path call: stored, lazy, negative, ANY, alias and pod
answers, forwarding, REFUSED and "not synced yet". The full path parses the message
(``wire.parse``) for everything the hot path does not take: EDNS beyond the plain OPT,
other classes, chaos TXT, answers that need truncation, and errors (short packet: drop;
unparsable: FORMERR; exception while answering: SERVFAIL). The resolver roles' side of it
(fresh forwarded answers on the hot path, the cluster resolver, autopath, the explain
record of forwarded names) is ``forwarding.Forwarding``.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from time import perf_counter_ns as _clock

from mcdns import __version__
from mcdns.answers.compiler import Compiler
from mcdns.answers.entry import Entry
from mcdns.answers.explain import explain
from mcdns.answers.rdata import name_text, name_wire
from mcdns.answers.slots import (
    FAMILY,
    GRID_COL,
    GRID_ROW,
    LAT_NS,
    Q_BYTES,
    R_BYTES,
    TAG_CACHE,
    TAG_CHAOS,
    TAG_FORWARD,
    TAG_SERVER,
    late,
)
from mcdns.answers.table import LAZY_TYPES, NEGATIVE_CACHE_MAX
from mcdns.answers.zone import Zone
from mcdns.config import Config
from mcdns.dns import wire as w
from mcdns.dns.forwarding import (
    AUTOPATH,
    CLUSTER,
    FORWARD,
    NOT_PLAIN,
    NOT_SYNCED,
    REFUSED,
    Forwarder,
    Forwarding,
    Route,
)
from mcdns.dns.hooks import Response
from mcdns.dns.names import namespace_of, pod_entry
from mcdns.histogram import QUERY_CLOCK, TIME_FIRST_NS
from mcdns.proto import (
    CLASS_ANY,
    CLASS_CH,
    CLASS_IN,
    RCODE_BADVERS,
    RCODE_FORMERR,
    RCODE_NOERROR,
    RCODE_NOTIMP,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    T_A,
    T_ANY,
    T_AXFR,
    T_IXFR,
    T_PTR,
    T_TXT,
    TCP_MAX,
    UDP_MIN,
)

log = logging.getLogger("mcdns.dns")

CHAOS_VERSION = (b"\x07version\x04bind\x00", b"\x07version\x06server\x00")
CHAOS_ID = (b"\x02id\x06server\x00", b"\x08hostname\x04bind\x00")
_IN = CLASS_IN.to_bytes(2, "big")
_A_IN = b"\x00\x01" + _IN


COUNTED, SERVER, CHAOS = -1, -2, -3  # no slot: counted (or nothing), server's, CHAOS's


class Handler:
    """Answers DNS messages from the compiled table; see the module docstring."""

    def __init__(self, cfg: Config, compiler: Compiler, forwarder: Forwarder | None = None,
                 count: bool = False) -> None:
        """``count``: count every answer in the table's query counters (``slots``), by
        the label slots stored answers carry, with its sizes and the time it took (from
        ``QUERY_CLOCK``, which the listeners start, to the answer; forwarded ones until the
        upstream's reply is ready)."""
        self.cfg = cfg
        self.compiler = compiler
        self.table = compiler.table
        self.store = compiler.store
        self.forwarder = forwarder
        self.ra = forwarder is not None
        self._ra4 = 4 if self.ra else 0  # the RA bit's part of an index into Entry.heads
        self._entries = self.table.entries
        self._negatives = self.table.negative_cache
        self.fw = Forwarding(cfg, forwarder, self.table.slots.pair, self._resolve, self._respond)
        self._hot, self._now = self.fw.hot, self.fw.now  # fresh forwarded answers
        self.reconfigure(cfg)
        self._hostname = socket.gethostname().encode()[:255]
        self.slots = self.table.slots
        self.stats: list[list[int]] | None = self.slots.data if count else None
        families = {":" in hp.host for hp in cfg.listen}  # the offset of the clients' family
        self._fam = -1 if len(families) > 1 else FAMILY if True in families else 0  # -1: ask

    def reconfigure(self, cfg: Config) -> None:
        """Take the settings the query path reads from a (reloaded) config."""
        self.cfg = cfg
        self._negatives.clear()
        self._outside: set[bytes] = set()  # keys outside every zone (resolver role)
        self.fw.clustered.clear()  # (those of them the cluster resolver answers)
        self._cluster = cfg.role == "forwarder"  # the zones' names go to cluster_upstreams
        self.max_udp = cfg.max_udp_size
        self._opt = (w.opt_record(cfg.max_udp_size, False), w.opt_record(cfg.max_udp_size, True))
        self._pod_zone = name_wire(f"pod.{cfg.zone}.") if cfg.pods == "insecure" else None
        # resolver role with a namespace filter: the namespaces whose names mcdns answers
        self._watched = (frozenset((b"", *(ns.encode() for ns in cfg.namespaces)))
                         if cfg.namespaces and self.forwarder is not None else None)

    # ---- the hot path ------------------------------------------------------------------

    def handle(self, wire: bytes, peer: str, tcp: bool) -> Response:
        """Answer one message; None means drop it."""
        n = len(wire)
        if n < 12:
            return None
        st = self.stats
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
                if e is None and (h := self._hot.get(question)) is not None and (
                        self._now() < h[1] and not (edns and wire[qend + 11] & 0x80)):
                    e = h[0]  # a fresh forwarded answer (resolver roles), no DO bit asked
                    self.fw.stats.hits += 1
                if e is None:
                    name = wire[12:qend].lower()
                    key = name + wire[qend:qend + 4]
                    e = self._entries.get(key) or self._negatives.get(key)
                    if e is None and key in self._outside:  # the third memo: forward
                        return self._forward(wire, key, tcp, peer)
                    if e is None and wire[qend + 2:qend + 4] == _IN:
                        try:
                            got = self._resolve(name, key, (wire[qend] << 8) | wire[qend + 1],
                                                CLASS_IN)
                        except Exception:  # the full path answers SERVFAIL, and logs
                            got = None
                        if got is FORWARD:
                            return self._forward(wire, key, tcp, peer)
                        if type(got) is Entry:
                            e = got
                if e is not None:
                    if not edns:
                        size = qend + e.tail
                        fits = size <= (TCP_MAX if tcp else UDP_MIN)
                    else:
                        size = qend + e.tail + 11
                        fits = size <= UDP_MIN or (size <= TCP_MAX if tcp else size <= min(
                            max(UDP_MIN, (wire[qend + 7] << 8) | wire[qend + 8]), self.max_udp))
                    if fits:
                        if st is not None:  # Slots.record's steps, inline: sizes, then time
                            b = self._fam  # else an IPv6 client's block (FAMILY is 1)
                            blk = st[e.slots[tcp] + (b if b >= 0 else ":" in peer)]
                            blk[GRID_ROW[n] + GRID_COL[size]] += 1
                            blk[Q_BYTES] += n
                            blk[R_BYTES] += size
                            t0 = _clock()  # this answer's end, the next one's start
                            b = t0 - QUERY_CLOCK[0]
                            QUERY_CLOCK[0] = t0
                            blk[LAT_NS] += b
                            if b > TIME_FIRST_NS:  # the first bucket is counted by the grid
                                late(blk, b)
                        if not edns:
                            return (wire[:2] + e.heads[(wire[2] & 1) | ((wire[3] & 0x10) >> 3)
                                                       | self._ra4] + question + e.body)
                        return (wire[:2] + e.heads_edns[(wire[2] & 1) | ((wire[3] & 0x10) >> 3)
                                                        | self._ra4]
                                + question + e.body + self._opt[wire[qend + 11] >> 7])
        try:
            resp, slot = self._full(wire, peer, tcp)
        except Exception:  # mcdns_panics_total: a bug, answered SERVFAIL
            log.exception("error answering a query; SERVFAIL")
            self.slots.panics += 1
            resp, slot = w.header_only(wire, RCODE_SERVFAIL, self.ra), SERVER
        if st is not None:
            t0 = _clock()
            if slot != COUNTED and type(resp) is bytes:
                if slot < 0:
                    slot = self._slot_of(resp, tcp, TAG_CHAOS if slot == CHAOS else TAG_SERVER)
                self.slots.record(slot, ":" in peer, n, len(resp), t0 - QUERY_CLOCK[0])
            QUERY_CLOCK[0] = t0
        return resp

    # ---- what a name answers: the one decision, for both paths --------------------------

    def _resolve(self, name: bytes, key: bytes, qtype: int, qclass: int, walk: bool = True
                 ) -> Entry | Route:
        """What ``name`` answers for ``qtype``: a stored answer, or where the query goes.

        ``key`` is the name + type + class IN (answers do not depend on the class). An
        answer built here (a lazy name's, a negative one, ANY, a pod's, an alias asked
        for another type) is remembered in the table's negative cache until the table
        changes, so the hot path finds it next time. With autopath, a name under the
        first search domain that does not exist is AUTOPATH (``walk``: else its own
        answer), never remembered: the walk's answer changes with the upstreams'."""
        if qclass == CLASS_IN and key in self._outside:  # the memo holds IN verdicts
            return FORWARD  # (of names checked before they were remembered)
        if not w.is_plain_name(name):  # the hot path found the name's end, no more
            return NOT_PLAIN
        table = self.table
        zone = table.zone_of(name) if qclass in (CLASS_IN, CLASS_ANY) else None
        if zone is None or (self._watched is not None and not zone.reverse
                            and namespace_of(name, zone) not in self._watched):
            # outside the zones, or (resolver role) in a namespace mcdns does not watch
            if self.forwarder is not None and qclass == CLASS_IN:
                return self._away(key, False)
            return REFUSED
        if not zone.claimed:
            return self._unclaimed(name, key, qtype, qclass)
        if qtype in (T_AXFR, T_IXFR):
            return REFUSED
        if self._cluster:  # forwarder role: the cluster resolver answers the zones
            if self.fw.autopath is not None and self.fw.autopath.applies(name):
                return AUTOPATH if walk else CLUSTER
            return self._away(key, True) if qclass == CLASS_IN else REFUSED
        e = table.entries.get(key) or self._negatives.get(key)
        if e is not None:
            return e
        e = table.aliases.get(name)  # a CNAME answers every type
        exists = e is not None or name in table.names or name in table.ents
        if e is None and (not exists or qtype in LAZY_TYPES):
            found, e = table.lazy_entry(name, qtype)
            exists = exists or found
        if e is None and qtype == T_ANY:
            e = table.any_entry(name)
        if e is None and self._pod_zone is not None and name.endswith(self._pod_zone):
            e = self._pod(name, qtype, zone)
        if e is None:
            if not exists and not self.store.synced:
                return NOT_SYNCED
            if not exists and self.fw.autopath is not None and self.fw.autopath.applies(name):
                return AUTOPATH if walk else self._retyped(
                    zone.negative_entry(RCODE_NXDOMAIN, qtype), qtype)
            e = zone.negative_entry(RCODE_NOERROR if exists else RCODE_NXDOMAIN, qtype)
        e = self._retyped(e, qtype)
        cache = self._negatives
        if len(cache) >= NEGATIVE_CACHE_MAX:
            cache.clear()
        cache[key] = e
        return e

    def _away(self, key: bytes, cluster: bool) -> Route:
        """Remember that ``key`` is forwarded (zones and namespaces are fixed for the
        process's life), to the cluster resolver when ``cluster``."""
        if len(self._outside) >= NEGATIVE_CACHE_MAX:
            self._outside.clear()
            self.fw.clustered.clear()
        self._outside.add(key)
        if cluster:
            self.fw.clustered.add(key)
            return CLUSTER
        return FORWARD

    def _unclaimed(self, name: bytes, key: bytes, qtype: int, qclass: int) -> Entry | Route:
        """A reverse name outside the claimed reverse zones: the PTR of an address mcdns
        hands out (a remote cluster's, say), else not mcdns's to answer (never NXDOMAIN):
        forwarded in the resolver role, REFUSED in the stub role. Not remembered in the
        names-outside memo: the addresses mcdns hands out change."""
        if qtype == T_PTR:
            e = self.table.entries.get(key) or self._negatives.get(key)
            if e is None:
                e = self.table.lazy_entry(name, T_PTR)[1]
                if e is not None:
                    if len(self._negatives) >= NEGATIVE_CACHE_MAX:
                        self._negatives.clear()
                    self._negatives[key] = e
            if e is not None:
                return e
        return FORWARD if self.forwarder is not None and qclass == CLASS_IN else REFUSED

    def _retyped(self, e: Entry, qtype: int) -> Entry:
        """``e`` counted under ``qtype`` (a CNAME's answer serves every type)."""
        slots = self.slots
        zi, _, rcode, tag, _ = slots.key(e.slots[0])
        pair = slots.pair(zi, qtype, rcode, tag)
        return e if pair == e.slots else dataclasses.replace(e, slots=pair)

    # ---- everything the hot path does not answer ----------------------------------------

    def _full(self, wire: bytes, peer: str, tcp: bool) -> tuple[Response, int]:
        """Parse the whole message and answer it: (response, the slot to count it in, or
        COUNTED, SERVER, CHAOS)."""
        q = w.parse(wire)
        if q is None:
            return None, COUNTED
        if q.error in (RCODE_FORMERR, RCODE_NOTIMP):
            return w.header_only(wire, q.error, self.ra), SERVER
        if q.error == RCODE_BADVERS:
            return self._respond(q, tcp, RCODE_NOERROR, b"\x00" * 6, b"", ext_rcode=1), SERVER
        if self.forwarder is not None and not self.forwarder.allowed(peer):
            return self._refused(q, tcp), SERVER
        if q.qclass == CLASS_CH:
            return self._chaos(q, tcp), CHAOS
        got = self._resolve(q.name, q.name + struct.pack(">HH", q.qtype, CLASS_IN), q.qtype,
                            q.qclass)
        if type(got) is Entry:
            return self._entry(q, tcp, got)
        if got is FORWARD or got is CLUSTER:
            return self._forward(wire, q.key, tcp, peer), COUNTED
        if got is AUTOPATH:
            resp = self.fw.walk(q, tcp, self.max_udp)
            return (resp if self.stats is None
                    else self._counted(resp, wire, q.key, tcp, peer, QUERY_CLOCK[0])), COUNTED
        if got is NOT_SYNCED:  # no data yet: a resolver should try again, not cache
            return self._respond(q, tcp, RCODE_SERVFAIL, b"\x00" * 6, b"", aa=False), SERVER
        return self._refused(q, tcp), SERVER

    def _slot_of(self, resp: bytes, tcp: bool, tag: int) -> int:
        """The slot of a response that carries no stored answer: zone, type and rcode read
        from it."""
        zi, qtype = -1, 0
        if resp[4:6] == b"\x00\x01":
            end = resp.find(0, 12) + 1
            if end:
                qtype = int.from_bytes(resp[end:end + 2], "big")
                zone = self.table.zone_of(resp[12:end].lower())
                zi = zone.index if zone is not None and zone.claimed else -1
        return self.slots.slot(zi, qtype, resp[3] & 0x0F, tag, tcp)

    def _forward(self, wire: bytes, qkey: bytes, tcp: bool, peer: str) -> Response:
        """Hand a query for a name outside the zones to the forwarder; count the answer
        under zone "." (the type is the last 4 bytes of the key but one), written by the
        cache when it came at once, else by forwarding."""
        assert self.forwarder is not None
        resp = self.fw.to(qkey).answer(wire, qkey, tcp)
        if self.stats is None:
            return resp
        t0 = QUERY_CLOCK[0]
        QUERY_CLOCK[0] = now = _clock()  # the next answer of a batch starts here
        if type(resp) is bytes:
            self._record_outside(TAG_CACHE, wire, qkey, resp, tcp, peer, now - t0)
            return resp
        return self._counted(resp, wire, qkey, tcp, peer, t0)  # type: ignore[arg-type]

    def _record_outside(self, tag: int, wire: bytes, qkey: bytes, resp: bytes, tcp: bool,
                        peer: str, ns: int) -> None:
        slot = self.slots.slot(-1, (qkey[-4] << 8) | qkey[-3], resp[3] & 0x0F, tag, tcp)
        self.slots.record(slot, ":" in peer, len(wire), len(resp), ns)

    async def _counted(self, resp: Awaitable[bytes | None], wire: bytes, qkey: bytes,
                       tcp: bool, peer: str, t0: int) -> bytes | None:
        data = await resp
        if data is not None:
            self._record_outside(TAG_FORWARD, wire, qkey, data, tcp, peer, _clock() - t0)
        return data

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

    def _entry(self, q: w.Query, tcp: bool, e: Entry) -> tuple[bytes, int]:
        """A stored answer and its slot; without its additional section if only that
        makes it fit (RFC 2181 §9: TC only when the answer itself does not fit)."""
        limit = w.udp_limit(q, tcp, self.max_udp) - (11 if q.edns else 0)
        if e.size(len(q.name)) > limit:
            minimal = e.minimal()
            if minimal is not None and minimal.size(len(q.name)) <= limit:
                e = minimal
        return self._respond(q, tcp, e.rcode, e.counts[2:], e.body), e.slots[tcp]

    def _refused(self, q: w.Query, tcp: bool) -> bytes:
        return self._respond(q, tcp, RCODE_REFUSED, b"\x00" * 6, b"", aa=False)

    def _pod(self, name: bytes, qtype: int, zone: Zone) -> Entry | None:
        """A pod name's answer (``names.pod_entry``); None when the name is not one."""
        return pod_entry(name, qtype, zone, self._pod_zone, self.store.namespaces,
                         self.cfg.ttl, self.table.slots.pair)

    def _chaos(self, q: w.Query, tcp: bool) -> Response:
        if q.qtype not in (T_TXT, T_ANY):
            return self._refused(q, tcp)
        if q.name in CHAOS_VERSION:
            texts = [f"mcdns {__version__}".encode()]
        elif q.name in CHAOS_ID:
            texts = [self._hostname]
        elif self.forwarder is not None and (got := self._resolve(
                q.name, q.name + _A_IN, T_A, CLASS_IN, False)) in (FORWARD, CLUSTER):
            lines = self.fw.explain(q.name, got is CLUSTER or q.name + _A_IN in self.fw.clustered)
            return (self._txt(q, tcp, lines) if isinstance(lines, list)
                    else _later(lines, lambda done: self._txt(q, tcp, done)))
        elif (zone := self.table.zone_of(q.name)) is not None and zone.claimed:
            return self._txt(q, tcp, explain(self.compiler, name_text(q.name)))
        else:
            return self._refused(q, tcp)
        return self._txt(q, tcp, texts)

    def _txt(self, q: w.Query, tcp: bool, texts: list[str] | list[bytes]) -> bytes:
        """CH TXT records, one a string (at most 255 octets each)."""
        texts = [t if isinstance(t, bytes) else t.encode("utf-8", "replace")[:255]
                 for t in texts]
        body = b""
        for t in texts:
            rdata = bytes([len(t)]) + t
            body += struct.pack(">HHHIH", 0xC00C, T_TXT, CLASS_CH, 0, len(rdata)) + rdata
        return self._respond(q, tcp, RCODE_NOERROR, struct.pack(">HHH", len(texts), 0, 0), body)


async def _later(lines: Awaitable[list[str]], respond: Callable[[list[str]], bytes]) -> bytes:
    return respond(await lines)
