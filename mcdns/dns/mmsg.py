"""UDP in batches: ``recvmmsg``/``sendmmsg`` through ctypes, one readiness event at a time.

Python's socket module has neither call, and an asyncio datagram transport costs one
callback, one address tuple and one ``sendto`` system call per packet: under load that
was 70% of the server's time (README, "Performance"). Here one readable event drains up
to ``BATCH`` datagrams with one ``recvmmsg``, each is answered by the same handler as
everywhere else, and the answers leave with one ``sendmmsg``. The reply to datagram *i*
reuses the address buffer the kernel filled for it, so no address is ever decoded on the
hot path except the client IP string the handler and rate limiter are given (memoised);
when neither reads it, the handler is given the unspecified address of the socket's
family ("0.0.0.0" or "::"), which is all the metrics read of it (the ``family`` label).

Linux only (glibc or musl). ``available()`` says whether it can be used; the listener
falls back to the asyncio transport otherwise, or when ``udp_batch: false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from mcdns.dns.hooks import HandleFn, RateLimitFn
from mcdns.histogram import QUERY_CLOCK

log = logging.getLogger("mcdns.dns")

BATCH = 64  # datagrams per system call
RECV_SLOT = 4096  # bytes per received datagram; longer queries arrive truncated: dropped
ROUNDS = 8  # batches per readable event before other sockets get their turn
PEER_MEMO = 4096  # client IP strings remembered
MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)
_FULL = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS)  # the socket, not one answer


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.c_void_p), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_NAME_SIZE = 28  # sizeof(struct sockaddr_in6), the larger of the two families
_libc: Any = None


def available() -> str | None:
    """None when batched UDP works here, else why not."""
    global _libc
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if ctypes.sizeof(ctypes.c_void_p) != 8 or ctypes.sizeof(_MMsgHdr) % 8:
        return "not a 64-bit ABI"
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            for fn in (lib.recvmmsg, lib.sendmmsg):
                fn.restype = ctypes.c_int
            _libc = lib
        except (OSError, AttributeError) as exc:
            return f"libc without recvmmsg/sendmmsg ({exc})"
    return None


class BatchedUDP:
    """One bound UDP socket served in batches; the interface Listeners needs of it."""

    def __init__(self, sock: socket.socket, handle: HandleFn, spawn: Callable[[Any], None],
                 rate_limit: RateLimitFn | None = None, send_slot: int = 4096,
                 needs_peer: bool = True, timed: bool = False) -> None:
        assert _libc is not None, "call available() first"
        self.sock = sock
        self.fd = sock.fileno()
        self.handle = handle
        self.needs_peer = needs_peer  # False: the handler ignores the client address
        self.rate_limit = rate_limit
        self.timed = timed  # start the query clock (mcdns.histogram.QUERY_CLOCK) a batch
        self._spawn = spawn
        self._v6 = sock.family == socket.AF_INET6
        self._anyone = "::" if self._v6 else "0.0.0.0"  # the peer when none is decoded
        self._closed = False
        self._peers: dict[bytes, str] = {}
        self._recv = _libc.recvmmsg
        self._send = _libc.sendmmsg
        self._send_slot = max(512, send_slot)
        stride = ctypes.sizeof(_MMsgHdr)
        # Receive side: BATCH message headers, each with its own iovec, buffer and address.
        self._rbuf = bytearray(BATCH * RECV_SLOT)
        self._rview = memoryview(self._rbuf)
        self._names = bytearray(BATCH * _NAME_SIZE)
        self._nview = memoryview(self._names)
        rbase = _address(self._rbuf)
        nbase = _address(self._names)
        self._riov = (_IOVec * BATCH)()
        self._rmsgs = (_MMsgHdr * BATCH)()
        for i in range(BATCH):
            self._riov[i].iov_base = rbase + i * RECV_SLOT
            self._riov[i].iov_len = RECV_SLOT
            hdr = self._rmsgs[i].msg_hdr
            hdr.msg_name = nbase + i * _NAME_SIZE
            hdr.msg_namelen = _NAME_SIZE
            hdr.msg_iov = ctypes.addressof(self._riov[i])
            hdr.msg_iovlen = 1
        # Send side: the answer to message i goes to message i's address buffer.
        self._sbuf = bytearray(BATCH * self._send_slot)
        sbase = _address(self._sbuf)
        self._siov = (_IOVec * BATCH)()
        self._smsgs = (_MMsgHdr * BATCH)()
        for i in range(BATCH):
            self._siov[i].iov_base = sbase + i * self._send_slot
            hdr = self._smsgs[i].msg_hdr
            hdr.msg_iov = ctypes.addressof(self._siov[i])
            hdr.msg_iovlen = 1
        # Word views over the header arrays, for the fields written per datagram.
        self._r32 = memoryview(cast(Any, self._rmsgs)).cast("B").cast("I")
        self._s32 = memoryview(cast(Any, self._smsgs)).cast("B").cast("I")
        self._s64 = memoryview(cast(Any, self._smsgs)).cast("B").cast("Q")
        self._siov64 = memoryview(cast(Any, self._siov)).cast("B").cast("Q")
        self._stride32 = stride // 4
        self._stride64 = stride // 8
        self._len32 = _MMsgHdr.msg_len.offset // 4
        self._namelen32 = _MsgHdr.msg_namelen.offset // 4
        self._flags32 = _MsgHdr.msg_flags.offset // 4
        self._name64 = _MsgHdr.msg_name.offset // 8
        self._nbase = nbase
        loop = asyncio.get_running_loop()
        loop.add_reader(self.fd, self._readable)

    # ---- the hot path ------------------------------------------------------------------

    def _readable(self) -> None:
        for _ in range(ROUNDS):
            n = self._recv(self.fd, self._rmsgs, BATCH, MSG_DONTWAIT, None)
            if n <= 0:
                if n < 0 and ctypes.get_errno() not in _AGAIN:
                    log.debug("recvmmsg: %s", errno.errorcode.get(ctypes.get_errno(), "?"))
                return
            self._answer(n)
            if n < BATCH or self._closed:
                return

    def _answer(self, n: int) -> None:
        r32, s32, s64, siov64 = self._r32, self._s32, self._s64, self._siov64
        rview, sbuf = self._rview, self._sbuf
        st32, st64 = self._stride32, self._stride64
        len32, namelen32, flags32, name64 = (self._len32, self._namelen32, self._flags32,
                                              self._name64)
        handle, rate_limit = self.handle, self.rate_limit
        slot, nbase = self._send_slot, self._nbase
        peer_of = self._peer if self.needs_peer or rate_limit is not None else None
        peer = self._anyone
        m = 0
        if self.timed:  # the first answer's start; each next one starts at the last's end
            QUERY_CLOCK[0] = time.perf_counter_ns()
        for i in range(n):
            b = i * st32
            if r32[b + flags32] & MSG_TRUNC:
                r32[b + namelen32] = _NAME_SIZE
                continue
            o = i * RECV_SLOT
            data = rview[o:o + r32[b + len32]].tobytes()
            namelen = r32[b + namelen32]
            r32[b + namelen32] = _NAME_SIZE  # reset for the next recvmmsg
            if peer_of is not None:
                peer = peer_of(i)
            resp = handle(data, peer, False)
            if type(resp) is not bytes:
                if resp is not None:
                    self._spawn(self._later(cast(Awaitable[bytes | None], resp), self._addr(i)))
                continue
            if rate_limit is not None:
                resp = rate_limit(peer, resp)
                if resp is None:
                    continue
            k = len(resp)
            if k > slot:
                self._sendto(resp, self._addr(i))
                continue
            sbuf[m * slot:m * slot + k] = resp
            siov64[m * 2 + 1] = k
            s64[m * st64 + name64] = nbase + i * _NAME_SIZE
            s32[m * st32 + namelen32] = namelen
            m += 1
        if m:
            self._flush(m)

    def _flush(self, m: int) -> None:
        done = 0
        while done < m:
            sent = self._send(self.fd, ctypes.byref(self._smsgs, done * ctypes.sizeof(_MMsgHdr)),
                              m - done, 0)
            if sent <= 0:
                err = ctypes.get_errno()
                if sent < 0 and err == errno.EINTR:
                    continue
                if sent < 0 and err not in _FULL:
                    # This one answer cannot go (say EINVAL: a spoofed source port 0, or
                    # an unreachable client): drop it, send the others.
                    log.debug("sendmmsg: answer %d of %d not sent (%s)", done + 1, m,
                              errno.errorcode.get(err, "?"))
                    done += 1
                    continue
                # A full send buffer loses the rest of the batch, as a busy UDP socket
                # would; the clients retry.
                log.debug("sendmmsg: %d of %d answers not sent (%s)", m - done, m,
                          errno.errorcode.get(err, "?"))
                return
            done += sent

    def _peer(self, i: int) -> str:
        o = i * _NAME_SIZE
        key = (self._nview[o + 8:o + 24] if self._v6 else self._nview[o + 4:o + 8]).tobytes()
        peer = self._peers.get(key)
        if peer is None:
            if len(self._peers) >= PEER_MEMO:
                self._peers.clear()
            peer = self._peers[key] = socket.inet_ntop(
                socket.AF_INET6 if self._v6 else socket.AF_INET, key)
        return peer

    def _addr(self, i: int) -> tuple[Any, ...]:
        """Message i's source as a socket module address tuple."""
        o = i * _NAME_SIZE
        port = int.from_bytes(self._names[o + 2:o + 4], "big")
        if self._v6:
            flow = int.from_bytes(self._names[o + 4:o + 8], "big")
            scope = int.from_bytes(self._names[o + 24:o + 28], sys.byteorder)
            return (self._peer(i), port, flow, scope)
        return (self._peer(i), port)

    # ---- off the hot path --------------------------------------------------------------

    async def _later(self, resp: Awaitable[bytes | None], addr: tuple[Any, ...]) -> None:
        """An answer that needed waiting (forwarding): ``addr`` was read from the batch's
        buffers before they were reused."""
        data = await resp
        if data is not None and self.rate_limit is not None:
            data = self.rate_limit(addr[0], data)
        if data is not None:
            self._sendto(data, addr)

    def _sendto(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self._closed:
            return
        try:
            self.sock.sendto(data, addr)
        except OSError as exc:  # full buffer or unreachable: lost like any UDP answer
            log.debug("udp sendto %s: %s", addr[0], exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):  # no running loop: nothing watches it
            asyncio.get_running_loop().remove_reader(self.fd)
        self.sock.close()


def _address(buf: bytearray) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))
