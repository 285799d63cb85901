"""The private channel between the first process and one worker, and the worker's end.

The supervisor (mcdns.ops.workers) makes a socketpair for each worker it starts and
passes one end down; the worker finds it through its environment (``MCDNS_WORKER``, the
worker's number, ``MCDNS_WORKER_FD`` and ``MCDNS_WORKER_PARENT``: set by the supervisor,
never by an operator). Frames are a kind byte, a sequence number and a length, then the
payload. The worker sends ``READY`` once it serves, answers every ``SNAPSHOT`` with its
own metrics as exposition text, and stops at once when the channel closes: the first
process is gone, and a pod must not keep orphan workers. ``PR_SET_PDEATHSIG`` covers
the start-up, before the channel is read (and a first process killed with SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import struct
import sys
from collections.abc import Callable, MutableMapping

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger("mcdns.workers")

ENV_SLOT = "MCDNS_WORKER"
ENV_FD = "MCDNS_WORKER_FD"
ENV_PARENT = "MCDNS_WORKER_PARENT"

HEADER = struct.Struct("!cII")  # kind, sequence number, payload length
READY, SNAPSHOT, METRICS = b"R", b"Q", b"M"
MAX_PAYLOAD = 64 << 20
PR_SET_PDEATHSIG = 1
PARENT_DEATH_SIGNAL = signal.SIGINT  # stop at once: no lameduck without the first process


class LinkError(ValueError):
    """The worker environment is set but unusable."""


def frame(kind: bytes, seq: int = 0, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, seq, len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, int, bytes]:
    """The next frame; IncompleteReadError at the end of the channel."""
    kind, seq, size = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > MAX_PAYLOAD:
        raise ConnectionError(f"frame of {size} bytes")
    return kind, seq, await reader.readexactly(size)


def die_with_parent(sig: int = PARENT_DEATH_SIGNAL) -> None:
    """Ask Linux to send ``sig`` when the parent exits (best effort; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):  # pragma: no cover
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


class WorkerLink:
    """A worker's end of the channel: ready, snapshots, and the first process's death."""

    def __init__(self, slot: int, fd: int, parent: int) -> None:
        self.slot = slot
        self.fd = fd
        self.parent = parent
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> WorkerLink | None:
        """This process's link when the supervisor started it, else None. The variables
        are taken out of the environment (nothing started from here inherits them)."""
        env = os.environ if environ is None else environ
        if ENV_SLOT not in env:
            return None
        values = [env.pop(k, "") for k in (ENV_SLOT, ENV_FD, ENV_PARENT)]
        try:
            slot, fd, parent = (int(v) for v in values)
            os.fstat(fd)
        except (ValueError, OSError):
            raise LinkError(f"{ENV_SLOT} is set but {ENV_FD}/{ENV_PARENT} do not name the "
                            f"channel of a running mcdns (they are set by mcdns itself)"
                            ) from None
        return cls(slot, fd, parent)

    def die_with_parent(self) -> bool:
        """Exit with the first process from now on; False if it is already gone."""
        die_with_parent()
        return os.getppid() == self.parent

    async def start(self, registry: CollectorRegistry, lost: Callable[[], None]) -> None:
        """Say READY and answer snapshots of ``registry``; ``lost`` is called once the
        first process is gone."""
        sock = socket.socket(fileno=self.fd)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        self._writer = writer
        writer.write(frame(READY, os.getpid()))
        self._task = asyncio.create_task(self._serve(reader, writer, registry, lost),
                                         name="worker-link")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     registry: CollectorRegistry, lost: Callable[[], None]) -> None:
        try:
            while True:
                kind, seq, _ = await read_frame(reader)
                if kind == SNAPSHOT:
                    writer.write(frame(METRICS, seq, generate_latest(registry)))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            log.warning("worker %(worker)d: the first process (pid %(parent)d) is gone; "
                        "stopping", {"worker": self.slot, "parent": self.parent})
            lost()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()
