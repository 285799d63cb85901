"""UDP and TCP listeners: bytes in, ``Handler.handle``, bytes out.

The protocol classes know nothing of what answers; they frame messages (RFC 7766 length
prefix on TCP, several queries per connection, idle timeout, connection and per-connection
query limits) and hand them to one handler. ``Listeners`` owns every socket, connection
and pending task, so shutdown can find all of them: close listeners, drain, cancel.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Awaitable
from typing import Any, cast

from mcdns.config import Config, HostPort
from mcdns.dns import mmsg
from mcdns.dns.hooks import HandleFn, RateLimitFn
from mcdns.histogram import QUERY_CLOCK

_clock = time.perf_counter_ns

log = logging.getLogger("mcdns.dns")

MAX_TCP_BUFFER = 65535 + 2


class ListenError(OSError):
    """An address could not be listened on (in use, no permission): one line that
    names the address and the protocol."""


class ServerState:
    """What shutdown needs to find: open TCP connections and pending answers."""

    def __init__(self) -> None:
        self.connections: set[TCPProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, handle: HandleFn, state: ServerState,
                 rate_limit: RateLimitFn | None = None, timed: bool = False) -> None:
        self.handle = handle
        self.state = state
        self.rate_limit = rate_limit
        self.timed = timed  # start the query clock (mcdns.histogram.QUERY_CLOCK)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.timed:
            QUERY_CLOCK[0] = _clock()
        resp = self.handle(data, addr[0], False)
        if type(resp) is bytes:
            if self.rate_limit is not None:
                resp = self.rate_limit(addr[0], resp)
                if resp is None:
                    return
            self.transport.sendto(resp, addr)  # type: ignore[union-attr]
        elif resp is not None:
            self.state.spawn(self._later(cast(Awaitable[bytes | None], resp), addr))

    async def _later(self, resp: Awaitable[bytes | None], addr: tuple[Any, ...]) -> None:
        data = await resp
        if data is not None and self.rate_limit is not None:
            data = self.rate_limit(addr[0], data)
        if data is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class TCPProtocol(asyncio.Protocol):
    """RFC 7766 framing with idle timeout and limits."""

    def __init__(self, handle: HandleFn, state: ServerState, cfg: Config,
                 timed: bool = False) -> None:
        self.handle = handle
        self.state = state
        self.timed = timed  # start the query clock (mcdns.histogram.QUERY_CLOCK)
        self.idle = cfg.tcp_idle_timeout
        self.max_queries = cfg.tcp_max_queries
        self.max_connections = cfg.tcp_max_connections
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.peer = ""
        self.queries = 0
        self.pending = 0
        self.closing = False
        self.paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        if len(self.state.connections) >= self.max_connections:
            log.debug("tcp connection limit reached; closing %s", self.peer)
            self.transport.abort()
            return
        self.state.connections.add(self)
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        self._timer = loop.call_later(self.idle, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        self.transport = None

    def _check_idle(self) -> None:
        if self.transport is None:
            return
        loop = asyncio.get_running_loop()
        left = self._last + self.idle - loop.time()
        if left > 0 or self.pending:
            self._timer = loop.call_later(max(left, 0.05), self._check_idle)
            return
        self.transport.close()

    def pause_writing(self) -> None:
        """The client is not reading its answers: stop reading its queries, so answers
        pile up in its socket, not in our memory (flow control; resumed below)."""
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None and not self.transport.is_closing():
            self._last = asyncio.get_running_loop().time()
            self.transport.resume_reading()
            self.data_received(b"")  # answer what was read before the pause

    def data_received(self, data: bytes) -> None:
        self._last = asyncio.get_running_loop().time()
        buf = self.buf
        buf += data
        while len(buf) >= 2 and not self.closing and not self.paused:
            (length,) = struct.unpack_from(">H", buf)
            if len(buf) < 2 + length:
                break
            msg = bytes(buf[2:2 + length])
            del buf[:2 + length]
            self.queries += 1
            if self.timed:
                QUERY_CLOCK[0] = _clock()
            resp = self.handle(msg, self.peer, True)
            if type(resp) is bytes:
                self.write(resp)
            elif resp is not None:
                self.pending += 1
                self.state.spawn(self._later(cast(Awaitable[bytes | None], resp)))
            if self.max_queries and self.queries >= self.max_queries:
                self.close_when_done()
        if len(buf) > MAX_TCP_BUFFER and not self.paused:  # pragma: no cover - a length
            self.close_when_done()  # prefix caps this; paused, one read's worth may wait

    async def _later(self, resp: Awaitable[bytes | None]) -> None:
        try:
            data = await resp
            if data is not None:
                self.write(data)
        finally:
            self.pending -= 1
            if self.closing and not self.pending and self.transport is not None:
                self._finish(self.transport)

    def write(self, resp: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(struct.pack(">H", len(resp)) + resp)

    def close_when_done(self) -> None:
        self.closing = True
        if not self.pending and self.transport is not None:
            self._finish(self.transport)

    @staticmethod
    def _finish(transport: asyncio.Transport) -> None:
        """Half-close after the queued answers: closing with queries still unread would
        make the kernel reset the connection and the client could lose its answers."""
        if transport.can_write_eof():
            transport.write_eof()
            asyncio.get_running_loop().call_later(1.0, transport.close)
        else:
            transport.close()


class Listeners:
    """Every DNS socket of one process; ``addresses`` holds what was actually bound."""

    def __init__(self, cfg: Config, handle: HandleFn,
                 rate_limit: RateLimitFn | None = None, timed: bool = False,
                 needs_peer: bool = True) -> None:
        """``timed``: start the query clock (mcdns.histogram.QUERY_CLOCK) as datagrams
        are taken, for the handler to time its answers. ``latency`` stays None: the
        handler counts the times, by zone and type (mcdns.answers.slots)."""
        self.cfg = cfg
        self.timed = timed
        self.latency: None = None
        self.handle = handle
        self.needs_peer = needs_peer  # whether ``handle`` reads its peer argument
        self.rate_limit = rate_limit
        self.state = ServerState()
        self.udp: list[asyncio.DatagramTransport] = []
        self.batched: list[mmsg.BatchedUDP] = []
        self.tcp: list[asyncio.Server] = []
        self.addresses: list[HostPort] = []

    async def start(self, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        batch = self.cfg.udp_batch
        if batch and (why := mmsg.available()) is not None:
            log.info("udp_batch unavailable (%(reason)s): one system call per datagram",
                     {"reason": why})
            batch = False
        for hp in self.cfg.listen:
            family = socket.AF_INET6 if ":" in hp.host else socket.AF_INET
            for attempt in range(20):
                try:
                    udp_sock = _udp_socket(family, hp, reuse_port)
                except OSError as e:
                    raise ListenError(f"cannot listen on {hp} (DNS over UDP): "
                                      f"{e.strerror or e}") from None
                port = udp_sock.getsockname()[1]
                try:
                    tcp_sock = _tcp_socket(family, HostPort(hp.host, port), reuse_port)
                except OSError as e:
                    udp_sock.close()
                    if hp.port or attempt == 19:
                        raise ListenError(f"cannot listen on {HostPort(hp.host, port)} "
                                          f"(DNS over TCP): {e.strerror or e}") from None
                    continue  # port 0: the TCP side of this port was taken; pick another
                break
            if batch:
                self.batched.append(mmsg.BatchedUDP(
                    udp_sock, self.handle, self.state.spawn, self.rate_limit,
                    send_slot=min(self.cfg.max_udp_size, mmsg.RECV_SLOT), timed=self.timed,
                    needs_peer=self.needs_peer))
            else:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: UDPProtocol(self.handle, self.state, self.rate_limit, self.timed),
                    sock=udp_sock)
                self.udp.append(transport)
            server = await loop.create_server(
                lambda: TCPProtocol(self.handle, self.state, self.cfg, self.timed), sock=tcp_sock,
                backlog=1024)
            self.tcp.append(server)
            self.addresses.append(HostPort(hp.host, port))

    def set_handle(self, handle: HandleFn, needs_peer: bool = True) -> None:
        """Answer with ``handle`` from now on (a reload changed how queries are wrapped)."""
        self.handle = handle
        self.needs_peer = needs_peer
        for t in self.udp:
            proto = t.get_protocol()
            if isinstance(proto, UDPProtocol):
                proto.handle = handle
        for b in self.batched:
            b.handle = handle
            b.needs_peer = needs_peer
        for conn in self.state.connections:
            conn.handle = handle

    async def stop(self, drain: float = 5.0) -> None:
        """Close listeners, drain TCP connections and pending answers, cancel the rest."""
        for t in self.udp:
            t.close()
        for b in self.batched:
            b.close()
        for s in self.tcp:
            s.close()
        for conn in list(self.state.connections):
            conn.close_when_done()
        if self.state.tasks:
            _, pending = await asyncio.wait(set(self.state.tasks), timeout=drain)
            for task in pending:
                task.cancel()
        for conn in list(self.state.connections):
            if conn.transport is not None:
                conn.transport.abort()
        for s in self.tcp:
            await s.wait_closed()


def _udp_socket(family: int, hp: HostPort, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.bind((hp.host, hp.port))
    sock.setblocking(False)
    return sock


def _tcp_socket(family: int, hp: HostPort, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind((hp.host, hp.port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
