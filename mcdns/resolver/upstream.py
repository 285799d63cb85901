"""Upstream servers: which ones, and one exchange with one of them.

Upstreams come from the config or from the ``nameserver`` lines of resolv.conf; an entry
that is mcdns itself (one of its listen addresses) is skipped, or a sidecar whose pod
resolv.conf points at 127.0.0.1 would forward to itself forever. Each exchange uses a new
connected UDP socket (so a fresh kernel-chosen random source port, and the kernel drops
datagrams from other addresses) and a random ID; replies that do not match the ID and
question are ignored, and the wait goes on until the timeout. A truncated reply is asked
again over TCP. An upstream marked ``tcp`` (``upstream_tcp``, CoreDNS's ``force_tcp``) is
asked over TCP only, a new connection per exchange: a node-local mcdns reaches the cluster
DNS through kube-proxy's DNAT, where UDP queries race for conntrack entries.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from mcdns.config import Config, HostPort
from mcdns.histogram import TIME_BUCKETS, Histogram
from mcdns.resolver import wire
from mcdns.resolver.netinfo import local_addresses

log = logging.getLogger(__name__)

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds (seconds) of the upstream duration histogram."""
PENALTY = 30.0
"""Seconds a failed upstream is tried after the healthy ones."""


class UpstreamError(Exception):
    """An upstream did not give a usable reply."""


@dataclass
class UpstreamStats:
    """Counters of one upstream, read by the metrics endpoint."""

    requests: int = 0
    errors: int = 0
    """Failed exchanges (timeouts included)."""
    timeouts: int = 0
    tcp_retries: int = 0
    ignored: int = 0
    """Datagrams ignored because their ID or question did not match."""
    duration: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    """Seconds per exchange, failed ones included."""
    replies: dict[int, Histogram] = field(default_factory=dict)
    """Seconds per exchange that got a reply, by its rcode (CoreDNS's buckets and shape:
    ``proxy_request_duration_seconds``)."""

    def replied(self, rcode: int, seconds: float) -> None:
        h = self.replies.get(rcode)
        if h is None:
            h = self.replies[rcode] = Histogram(TIME_BUCKETS)
        h.observe(seconds)


@dataclass
class Upstream:
    """One upstream server, its counters and its standing."""

    addr: HostPort
    stats: UpstreamStats = field(default_factory=UpstreamStats)
    failed_until: float = 0.0
    tcp: bool = False
    """Ask over TCP only (``upstream_tcp``)."""

    @property
    def name(self) -> str:
        return str(self.addr)


def read_resolv_conf(path: str) -> list[HostPort]:
    """The ``nameserver`` entries of a resolv.conf file (port 53), in order."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        log.warning("cannot read resolv_conf %s: %s", path, e.strerror)
        return []
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            host = parts[1].split("%")[0]  # drop an IPv6 zone index
            try:
                ipaddress.ip_address(host)
            except ValueError:
                continue
            found.append(HostPort(host, 53))
    return found


def choose_upstreams(cfg: Config) -> list[HostPort]:
    """The configured upstreams, else resolv.conf's, minus mcdns's own listen addresses."""
    candidates = list(cfg.upstreams) or read_resolv_conf(cfg.resolv_conf)
    return [hp for hp in candidates if not is_self(hp, cfg.listen)]


def is_self(hp: HostPort, listen: tuple[HostPort, ...]) -> bool:
    """Whether sending to ``hp`` would reach one of the ``listen`` addresses."""
    try:
        target = ipaddress.ip_address(hp.host)
    except ValueError:
        return False
    for own in listen:
        if own.port != hp.port:
            continue
        try:
            own_ip = ipaddress.ip_address(own.host)
        except ValueError:
            continue
        if own_ip == target:
            return True
        if own_ip.is_unspecified and (target.is_loopback or target in local_addresses()):
            return True
    return False


async def exchange(up: Upstream, qkey: bytes, do: bool, timeout: float) -> bytes:
    """Ask ``up`` the question ``qkey``; return the matching reply or raise UpstreamError."""
    up.stats.requests += 1
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            reply = await (_tcp(up.addr, qkey, do) if up.tcp else _udp(up, qkey, do))
        if reply[2] & 0x02 and not up.tcp:  # TC
            up.stats.tcp_retries += 1
            async with asyncio.timeout(timeout):
                reply = await _tcp(up.addr, qkey, do)
    except TimeoutError:
        up.stats.timeouts += 1
        up.stats.errors += 1
        raise UpstreamError(f"{up.name}: timeout") from None
    except (OSError, asyncio.IncompleteReadError, UpstreamError) as e:
        up.stats.errors += 1
        raise UpstreamError(f"{up.name}: {e}") from None
    finally:
        took = time.monotonic() - started
        up.stats.duration.observe(took)
    up.stats.replied(reply[3] & 0x0F, took)  # the rcode
    return reply


class _UdpExchange(asyncio.DatagramProtocol):
    """Waits for the one datagram that answers ``qid``/``qkey``; ignores the rest."""

    def __init__(self, qid: int, qkey: bytes, stats: UpstreamStats) -> None:
        self.qid = qid
        self.qkey = qkey
        self.stats = stats
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if self.reply.done():
            return
        if wire.matches(data, self.qid, self.qkey):
            self.reply.set_result(data)
        else:
            self.stats.ignored += 1

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc or ConnectionError("socket closed"))


async def _udp(up: Upstream, qkey: bytes, do: bool) -> bytes:
    qid = _random_id()
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _UdpExchange(qid, qkey, up.stats), remote_addr=(up.addr.host, up.addr.port)
    )
    try:
        transport.sendto(wire.make_query(qid, qkey, do))
        return await proto.reply
    finally:
        transport.close()


def _random_id() -> int:
    """A query ID from the OS's CSPRNG (as ``secrets.randbits``, without importing
    ``secrets``: with hashlib and hmac, about half a MiB of a small sidecar's memory)."""
    return int.from_bytes(os.urandom(2), "big")


async def _tcp(addr: HostPort, qkey: bytes, do: bool) -> bytes:
    qid = _random_id()
    query = wire.make_query(qid, qkey, do)
    reader, writer = await asyncio.open_connection(addr.host, addr.port)
    try:
        writer.write(len(query).to_bytes(2, "big") + query)
        await writer.drain()
        size = int.from_bytes(await reader.readexactly(2), "big")
        reply = await reader.readexactly(size)
    finally:
        writer.close()
    if not wire.matches(reply, qid, qkey):
        raise UpstreamError("TCP reply does not match the query")
    return reply
