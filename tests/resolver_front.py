"""A test-only UDP/TCP DNS front for ``Resolver``, until the real server exists.

It does what the lead's handler will do for the resolver role: read the header and the
question by hand, REFUSE clients outside the allow-list, and call ``Resolver.answer``,
awaiting the result on a miss. ``Front`` is an async context manager bound to
127.0.0.1 on one ephemeral port (UDP and TCP).
"""

from __future__ import annotations

import asyncio
import inspect
import struct
from types import TracebackType
from typing import Any

from mcdns.resolver import Resolver

REFUSED = 5


def qkey_of(wire: bytes) -> bytes | None:
    """Lowercased qname wire bytes + qtype + qclass of a one-question query."""
    if len(wire) < 12 or wire[4:6] != b"\x00\x01":
        return None
    off = 12
    for _ in range(128):
        if off >= len(wire):
            return None
        length = wire[off]
        if length == 0:
            end = off + 5
            return wire[12 : off + 1].lower() + wire[off + 1 : end] if end <= len(wire) else None
        if length & 0xC0:
            return None
        off += 1 + length
    return None


def refused(wire: bytes, qkey: bytes) -> bytes:
    flags = 0x8000 | (struct.unpack_from("!H", wire, 2)[0] & 0x0100) | REFUSED
    return wire[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + wire[12 : 12 + len(qkey)]


class Front:
    """UDP and TCP listeners on 127.0.0.1 answering through ``resolver``."""

    def __init__(self, resolver: Resolver, refuse_all: bool = False) -> None:
        self.resolver = resolver
        self.refuse_all = refuse_all
        self.port = 0
        self._udp: asyncio.BaseTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def handle(self, wire: bytes, peer: str, tcp: bool) -> bytes | None:
        qkey = qkey_of(wire)
        if qkey is None:
            return None
        if self.refuse_all or not self.resolver.allowed(peer):
            return refused(wire, qkey)
        result = self.resolver.answer(wire, qkey, tcp)
        if inspect.isawaitable(result):
            return await result
        return result

    async def __aenter__(self) -> Front:
        loop = asyncio.get_running_loop()
        front = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                task = asyncio.ensure_future(front._udp_reply(self.transport, data, addr))
                front._tasks.add(task)
                task.add_done_callback(front._tasks.discard)

        for _ in range(20):  # UDP and TCP on one ephemeral port, as dig expects
            transport, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._tcp_conn, "127.0.0.1", port)
            except OSError:
                transport.close()
                continue
            self._udp, self.port = transport, port
            return self
        raise RuntimeError("no port free for both UDP and TCP")

    async def _udp_reply(self, transport: Any, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.handle(data, addr[0], tcp=False)
        if reply is not None:
            transport.sendto(reply, addr)

    async def _tcp_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        try:
            for _ in range(100):
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = await self.handle(await reader.readexactly(size), peer, tcp=True)
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.resolver.close()


class FakeClock:
    """A monotonic clock the test moves forward by hand (for TTL countdown and expiry)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
