"""The resolver role's forwarding engine: cache first, upstreams on a miss.

The DNS handler calls ``answer()`` for every name outside mcdns's zones. A cache hit is
answered synchronously with patched bytes (see ``cache``); a miss returns a coroutine
that forwards, so the handler awaits only when it must. Concurrent identical misses
share one upstream exchange. Upstreams are tried in order, a failed one moves to the
back for ``PENALTY`` seconds; when all fail, an expired answer still inside its
serve-stale window is served (RFC 8767), else SERVFAIL. While every upstream is inside
its penalty, expired answers are served stale at once without asking (RFC 8767's
failure recheck timer), so clients do not wait a timeout per query for a dead upstream.

The forwarder role (``cluster_upstreams``) adds a second pool of upstreams, the mcdns
Service, for the names of the cluster zones (the handler says which names): their
answers share the cache but are kept for at most their TTL and never served stale, since
a stale cluster answer would undo a failover the stub role decided.

A fresh hit asked in lower case without the DO bit is also published in ``hot``, as the
handler stores its own answers and until the end of its second of age: the handler's hot
path answers the next identical questions from there, without calling in here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from mcdns.answers import entry as table
from mcdns.config import Config, ConfigError
from mcdns.proto import RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_SERVFAIL, UDP_MIN
from mcdns.resolver import wire
from mcdns.resolver.access import AccessList
from mcdns.resolver.cache import AnswerCache, Entry, make_entry
from mcdns.resolver.upstream import (
    PENALTY,
    Upstream,
    UpstreamError,
    choose_upstreams,
    exchange,
    is_self,
)

log = logging.getLogger(__name__)

MAX_INFLIGHT = 2048
"""Distinct questions forwarded at once; beyond this, new misses are dropped."""
_OK_RCODES = (RCODE_NOERROR, RCODE_NXDOMAIN)


@dataclass(slots=True)
class CacheStats:
    """The resolver's cache counters, read by the metrics endpoint.

    Every cache lookup counts once: ``hits`` (a fresh entry), ``stale_hits`` (an expired
    entry served at once because every upstream is failing) or ``misses`` (forwarded).
    ``stale_served`` counts every stale answer, those served after a miss whose upstreams
    all failed included; ``coalesced`` the misses that joined an exchange in flight.
    ``denial_hits`` are the hits on NXDOMAIN or NODATA entries (CoreDNS's "denial" type).
    ``broken`` counts the questions forwarded while every upstream was inside its penalty,
    ``rejected`` the misses dropped because ``MAX_INFLIGHT`` questions were in flight.
    """

    hits: int = 0
    stale_hits: int = 0
    misses: int = 0
    stale_served: int = 0
    coalesced: int = 0
    denial_hits: int = 0
    broken: int = 0
    rejected: int = 0


class Resolver:
    """Forwarding cache for the resolver role; its counters are ``stats`` (the cache's)
    and each upstream's ``stats``."""

    def __init__(self, cfg: Config, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        others = [Upstream(hp) for hp in choose_upstreams(cfg)]
        if not others:
            where = "upstreams" if cfg.upstreams else "resolv_conf"
            raise ConfigError(where, "no usable upstream server (mcdns itself is skipped)")
        cluster = [Upstream(hp) for hp in cfg.cluster_upstreams if not is_self(hp, cfg.listen)]
        if cfg.cluster_upstreams and not cluster:
            raise ConfigError("cluster_upstreams", "no usable server (mcdns itself is skipped)")
        self.pools = (others, cluster)
        """[cluster]: the upstreams of other names, and of the cluster zones' names."""
        self.upstreams = others + cluster
        self.cluster = ClusterView(self) if cluster else None
        """The forwarder role's second entry point: answers from the cluster pool."""
        self.clock = self._clock = clock
        self._access = AccessList(cfg)
        self.allowed: Callable[[str], bool] = self._access.allowed
        """Whether a client IP may use the resolver (else the handler answers REFUSED);
        the access list's own method: one call on every query."""
        self.cache = AnswerCache(max(cfg.cache_size, 1), clock)
        self._max_udp = cfg.max_udp_size
        # [cluster]: TTL range and serve-stale window (a cluster answer lives its TTL, no more)
        self._ttl_ranges = ((cfg.cache_min_ttl, cfg.cache_max_ttl), (0, cfg.cache_max_ttl))
        self._stale_windows = (cfg.serve_stale, 0)
        self._opts = self._opt_records(cfg)
        self._inflight: dict[bytes, asyncio.Task[Entry | None]] = {}
        self.stats = CacheStats()
        self.hot: dict[bytes, tuple[table.Entry, float]] = {}
        """Fresh answers for the handler's hot path: question -> (answer, valid until)."""
        self.slots_for: Callable[[bytes, int], tuple[int, int]] | None = None
        """Set by the handler to publish in ``hot``: the counter slots of (key, rcode)."""

    @staticmethod
    def _opt_records(cfg: Config) -> tuple[bytes, bytes]:
        """[DO]: the OPT record of replies, advertising ``max_udp_size``."""
        return (
            wire.opt_record(cfg.max_udp_size, False),
            wire.opt_record(cfg.max_udp_size, True),
        )

    def reconfigure(self, cfg: Config) -> None:
        """Take a reloaded config: a new ``max_udp_size`` applies to every reply from now
        on, cached ones included (their OPT record is rewritten); ``upstream_timeout`` to
        the next exchange. The other keys the resolver reads need a restart."""
        self.cfg = cfg
        self.hot.clear()
        if cfg.max_udp_size != self._max_udp:
            self._max_udp = cfg.max_udp_size
            self._opts = self._opt_records(cfg)
            for entry in self.cache.stored():
                entry.set_payload(cfg.max_udp_size)

    @property
    def entries(self) -> int:
        return len(self.cache)

    @property
    def evictions(self) -> int:
        return self.cache.evictions


    def answer(self, wire_q: bytes, qkey: bytes, tcp: bool, cluster: bool = False
               ) -> bytes | Awaitable[bytes | None]:
        """The reply to client query ``wire_q`` now (cache hit), or an awaitable of it;
        ``cluster``: a name of the cluster zones (forwarder role)."""
        qend = 12 + len(qkey)
        payload, do = wire.client_edns(wire_q, qend)
        key = qkey + b"\x80" if do else qkey
        try:
            entry = self.cache[key]
        except KeyError:
            pass
        else:
            now = self._clock()
            if now < entry.expires:
                self.stats.hits += 1
                if entry.denial:
                    self.stats.denial_hits += 1
                elif not do and self.slots_for is not None and wire_q.startswith(qkey, 12):
                    self._publish(qkey, entry, now)
                return entry.render(wire_q, qend, now, payload, tcp, self._max_udp)
            # RFC 8767 failure recheck: do not wait on dead upstreams (never in the cluster
            # zones: their entries leave the cache when they expire)
            if now < entry.stale_until and self._all_failing(cluster):
                self.stats.stale_hits += 1
                self.stats.stale_served += 1
                return entry.render_stale(wire_q, qend, payload, tcp, self._max_udp)
        self.stats.misses += 1
        return self._resolve(wire_q, qend, qkey, key, payload, do, tcp, cluster)

    def _publish(self, qkey: bytes, entry: Entry, now: float) -> None:
        """Put ``entry`` in ``hot`` for the handler (bounded: cleared when full), when it
        fits any client's UDP answer with EDNS (so the hot path never passes it on to be
        answered, and counted, a second time)."""
        assert self.slots_for is not None
        answer, until = entry.table_entry(now, self.slots_for(qkey, entry.rcode))
        if 12 + len(qkey) + len(answer.body) + 11 > UDP_MIN:
            return
        hot = self.hot
        if len(hot) >= self.cfg.cache_size:
            hot.clear()
        hot[qkey] = (answer, until)

    async def _resolve(self, query: bytes, qend: int, qkey: bytes, key: bytes, payload: int,
                       do: bool, tcp: bool, cluster: bool) -> bytes | None:
        task = self._inflight.get(key)
        if task is None:
            if len(self._inflight) >= MAX_INFLIGHT:
                self.stats.rejected += 1
                return None
            task = asyncio.ensure_future(self._fetch(qkey, key, do, cluster))
            self._inflight[key] = task
            task.add_done_callback(partial(self._forget, key))
        else:
            self.stats.coalesced += 1
        entry = await asyncio.shield(task)
        max_udp = self._max_udp
        if entry is not None:
            return entry.render(query, qend, self._clock(), payload, tcp, max_udp)
        stale = self._stale(key)
        if stale is not None:
            self.stats.stale_served += 1
            return stale.render_stale(query, qend, payload, tcp, max_udp)
        opt = self._opts[do] if payload else b""
        return wire.short_reply(query, qend, RCODE_SERVFAIL, opt, tc=False)

    def _forget(self, key: bytes, task: asyncio.Task[Entry | None]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]

    def _stale(self, key: bytes) -> Entry | None:
        entry = self.cache.get(key)
        if entry is not None and self._clock() < entry.stale_until:
            return entry
        return None

    async def _fetch(self, qkey: bytes, key: bytes, do: bool, cluster: bool = False
                     ) -> Entry | None:
        """Ask the upstreams in turn; cache and return the first usable reply (None: none)."""
        qend = 12 + len(qkey)
        if self._all_failing(cluster):
            self.stats.broken += 1
        for up in self._order(cluster):
            try:
                reply = await exchange(up, qkey, do, self.cfg.upstream_timeout)
                entry, cacheable = make_entry(
                    reply,
                    qend,
                    self._opts[do],
                    self._clock(),
                    self._ttl_ranges[cluster],
                    self._stale_windows[cluster],
                )
            except UpstreamError as e:  # counted by exchange()
                log.debug("upstream failed: %s", e)
            except wire.WireError as e:
                up.stats.errors += 1
                log.info("malformed reply from upstream %s: %s", up.name, e)
            except Exception:
                up.stats.errors += 1
                log.exception("forwarding to upstream %s failed", up.name)
            else:
                if entry.rcode in _OK_RCODES:
                    up.failed_until = 0.0
                    entry.source = up.name
                    if cacheable and self.cfg.cache_size > 0:
                        self.cache[key] = entry
                    return entry
                up.stats.errors += 1  # SERVFAIL, REFUSED, ...: try the next one
            self._penalise(up)
        return None

    def _order(self, cluster: bool = False) -> list[Upstream]:
        """Healthy upstreams of the pool in configured order, then the penalised ones."""
        now, pool = self._clock(), self.pools[cluster]
        healthy = [up for up in pool if up.failed_until <= now]
        return healthy + [up for up in pool if up.failed_until > now]

    def _all_failing(self, cluster: bool = False) -> bool:
        now = self._clock()
        return all(up.failed_until > now for up in self.pools[cluster])

    def cached(self, qkey: bytes) -> Entry | None:
        """The cache entry of ``qkey`` (asked without DO), fresh or not, for the explain
        record; None when there is none."""
        return self.cache.get(qkey)

    async def ask_explain(self, name: bytes) -> list[str]:
        """The explain record of ``name`` from the first healthy cluster upstream (the
        stub mcdns explains its own decision), or why there is none."""
        from mcdns.resolver.explain import ask

        return await ask(self._order(True), name, self.cfg.upstream_timeout)

    def _penalise(self, up: Upstream) -> None:
        up.failed_until = self._clock() + PENALTY

    async def close(self) -> None:
        """Cancel forwarding in progress."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()


class ClusterView:
    """A resolver as the handler's forwarder for the cluster zones: the same cache and
    allow-list, the cluster pool of upstreams, no serve-stale."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver

    def allowed(self, peer_ip: str) -> bool:
        return self._resolver.allowed(peer_ip)

    def answer(self, wire_q: bytes, qkey: bytes, tcp: bool) -> bytes | Awaitable[bytes | None]:
        return self._resolver.answer(wire_q, qkey, tcp, cluster=True)
