"""The resolver roles' side of the handler: what it takes from ``mcdns.resolver``.

- **Fresh forwarded answers on the hot path.** The resolver publishes each fresh cache
  hit asked in lower case without DO in ``hot``, shaped as the table's own answers
  (``mcdns.answers.entry.Entry``) and valid until the end of its second of age; the
  handler's hot path looks there after the table, so a cached forwarded answer costs what
  a stored one does (no EDNS walk, no cache bookkeeping, no call into the resolver).
- **The cluster resolver** (role forwarder): the names of the cluster zones go to
  ``cluster_upstreams`` through the resolver's ``cluster`` view; ``clustered`` remembers
  their keys beside the handler's memo of forwarded keys.
- **Autopath** (``mcdns.resolver.autopath``): the walk, each step answered by the handler.
- **The explain record** of forwarded names (``dig NAME CH TXT``).

``Route`` (where a query goes when no stored answer takes it) and the ``Forwarder``
protocol live here too: the handler and the autopath step share them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from enum import Enum
from functools import partial
from typing import Any, Final, Protocol

from mcdns.answers.entry import Entry
from mcdns.answers.explain import forwarded
from mcdns.answers.rdata import name_text
from mcdns.answers.slots import TAG_CACHE
from mcdns.config import Config
from mcdns.dns import wire as w
from mcdns.dns.hooks import Response
from mcdns.proto import RCODE_NAMES, UDP_MIN
from mcdns.resolver.autopath import Autopath

_A_IN = b"\x00\x01\x00\x01"


class Route(Enum):
    """Where a query goes when no stored answer takes it."""

    FORWARD = "forward"  # resolver role: the forwarder answers (a name outside the zones)
    REFUSED = "refused"  # not ours to answer (outside the zones, zone transfers)
    NOT_SYNCED = "not-synced"  # the name may exist once the first list completes
    NOT_PLAIN = "not-plain"  # a label over 63 octets or a name over 255: parse it (FORMERR)
    CLUSTER = "cluster"  # forwarder role: the cluster resolver answers (a name in the zones)
    AUTOPATH = "autopath"  # a name under the first search domain that does not exist


FORWARD: Final = Route.FORWARD
REFUSED: Final = Route.REFUSED
NOT_SYNCED: Final = Route.NOT_SYNCED
NOT_PLAIN: Final = Route.NOT_PLAIN
CLUSTER: Final = Route.CLUSTER
AUTOPATH: Final = Route.AUTOPATH


class Forwarder(Protocol):
    """The resolver role's engine (mcdns.resolver) as the handler sees it."""

    def allowed(self, peer_ip: str) -> bool: ...

    def answer(self, wire: bytes, qkey: bytes, tcp: bool) -> bytes | Awaitable[bytes | None]: ...


class Forwarding:
    """The forwarded side of one handler; every part is inert without a forwarder."""

    def __init__(self, cfg: Config, forwarder: Any, pair: Callable[..., tuple[int, int]],
                 resolve: Callable[[bytes, bytes, int, int, bool], Entry | Route],
                 respond: Callable[..., bytes]) -> None:
        """``forwarder``: mcdns.resolver's Resolver, a stand-in, or None (stub role);
        ``pair``: the table's ``Slots.pair``, for the counters of hot answers;
        ``resolve``, ``respond``: the handler's, for the steps of an autopath walk."""
        self.forwarder = forwarder
        self._resolve, self._respond = resolve, respond
        hot = getattr(forwarder, "hot", None)
        self.hot: dict[bytes, tuple[Any, float]] = hot if isinstance(hot, dict) else {}
        self.now: Callable[[], float] = getattr(forwarder, "clock", time.monotonic)
        self.stats: Any = getattr(forwarder, "stats", None)
        self.cluster: Any = getattr(forwarder, "cluster", None)
        if cfg.role != "forwarder":
            self.cluster = None
        self.clustered: set[bytes] = set()
        """Keys of names forwarded to the cluster resolver (within the handler's memo)."""
        self.autopath = Autopath.from_config(cfg) if forwarder is not None else None
        self._hot_max = max(cfg.cache_size, 1)
        self._pair = pair
        if hasattr(forwarder, "slots_for"):
            forwarder.slots_for = self.slots_for

    def slots_for(self, qkey: bytes, rcode: int) -> tuple[int, int]:
        """The counters of a forwarded answer served from ``hot``: as the handler counts
        a cache hit (zone ".", tag cache)."""
        return self._pair(-1, (qkey[-4] << 8) | qkey[-3], rcode, TAG_CACHE)

    def to(self, qkey: bytes) -> Forwarder:
        """Who answers the forwarded ``qkey``: the cluster view or the resolver."""
        return self.cluster if qkey in self.clustered else self.forwarder  # type: ignore[no-any-return]

    def walk(self, q: w.Query, tcp: bool, max_udp: int) -> Awaitable[bytes | None]:
        """The autopath answer to ``q`` (a name under the first search domain); what it
        builds for a lower-case question without DO is kept on the hot path briefly."""
        assert self.autopath is not None
        opt = w.opt_record(max_udp, q.do) if q.edns else b""
        question = q.wire[12:q.qend]
        keep = partial(self._keep, question) if not q.do and question == q.key else None
        return self.autopath.answer(q.wire, q.qend, self.step, w.udp_limit(q, tcp, max_udp),
                                    opt, keep)

    def _keep(self, question: bytes, plain: bytes, ttl: int) -> None:
        """Answer ``question`` with ``plain`` (an autopath reply without OPT) from the hot
        path for up to a second, and never past its lowest TTL as the cache counts TTLs
        (in whole seconds): the walk is not repeated for every query of a busy name."""
        life = min(1.0, ttl - 1.0)
        if life <= 0 or len(plain) + 11 > UDP_MIN:
            return
        ar = int.from_bytes(plain[10:12], "big")
        heads = [bytes((plain[2] & 0xFE | i & 1, plain[3] & 0xEF | (i & 2) << 3))
                 for i in range(8)]  # the client's RD and CD bits
        body = plain[12 + len(question):]
        entry = Entry(tuple(h + plain[4:12] for h in heads),
                      tuple(h + plain[4:10] + (ar + 1).to_bytes(2, "big") for h in heads),
                      body, len(body) + 4, -1, self.slots_for(question, plain[3] & 0x0F))
        if len(self.hot) >= self._hot_max:
            self.hot.clear()
        self.hot[question] = (entry, self.now() + life)

    def step(self, query: bytes) -> Response:
        """One lookup of an autopath walk: ``query`` answered as a client's would be, but
        without autopath, truncation or counting (the walk's answer is counted)."""
        q = w.parse(query)
        if q is None or q.error:
            return None
        got = self._resolve(q.name, q.key, q.qtype, q.qclass, False)
        if isinstance(got, Entry):
            return self._respond(q, True, got.rcode, got.counts[2:], got.body)
        if got is FORWARD or got is CLUSTER:
            fwd = self.cluster if got is CLUSTER or q.key in self.clustered else self.forwarder
            return fwd.answer(query, q.key, True)  # type: ignore[no-any-return]
        return None  # refused, not synced: the walk ends with the first reply

    def explain(self, name: bytes, cluster: bool) -> list[str] | Awaitable[list[str]]:
        """The explain record of a forwarded name: where it goes and what the cache holds
        (its A answer); in the forwarder role, with the cluster resolver's own record."""
        res = self.forwarder
        pool = res.pools[cluster] if hasattr(res, "pools") else []
        entry = res.cached(name + _A_IN) if hasattr(res, "cached") else None
        cached = None if entry is None else (
            entry.source, RCODE_NAMES.get(entry.rcode, str(entry.rcode)),
            entry.expires - self.now())
        local = forwarded(name_text(name), cluster, [up.name for up in pool], cached)
        if not cluster:
            return local
        return _joined(local, res.ask_explain(name))


async def _joined(local: list[str], remote: Awaitable[list[str]]) -> list[str]:
    return local + [s[i:i + 255] for s in await remote for i in range(0, len(s), 255)]

