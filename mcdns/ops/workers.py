"""Worker processes for ``workers: N``: started, watched, restarted, and counted.

The first process serves DNS, HTTP and Events and supervises N-1 workers that share the
DNS sockets (SO_REUSEPORT). Forking a running event loop is unsafe, so a worker is a
fresh ``python -m mcdns serve`` with the same flags, marked as a worker in its
environment (it then serves DNS only: no HTTP port, no Events), with a private channel
to this process (mcdns.ops.worker_link).

Restart rule: a worker that exits while mcdns is not shutting down is logged (one line:
worker number, pid, exit status or signal, uptime, delay) and started again after a
delay of 1 s, doubled after every exit up to 30 s. A worker that stayed up 10 s
(``STABLE_AFTER``) has proved itself: its next exit starts the delays over. No restarts
once shutdown began.

Health rule (``problem``, which /health reports): a worker slot that exited
``GIVE_UP_AFTER`` + 1 times in a row (the first exit and 3 restarts), each within 10 s
of starting, cannot be kept running, and /health fails (503, naming the worker and its
last exit) until one of its restarts stays up 10 s. A single crash, restarted, does not
fail /health: the lost capacity shows as ``mcdns_workers``.

Metrics: at every scrape each serving worker is asked for its counters (1 s at most,
all at once); one that does not answer in time is counted in
``mcdns_worker_snapshot_misses_total`` and its previous snapshot is used, so no counter
goes down. The last snapshot of a worker that exits is kept in a retired total, so
counters stay monotonic across a restart; what a worker counted after the last scrape
before it died is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mcdns.ops.merge import Totals, add_totals, parse_totals
from mcdns.ops.worker_link import (
    ENV_FD,
    ENV_PARENT,
    ENV_SLOT,
    METRICS,
    READY,
    SNAPSHOT,
    frame,
    read_frame,
)

log = logging.getLogger("mcdns.workers")

BACKOFF_FIRST = 1.0  # seconds before the first restart
BACKOFF_MAX = 30.0
STABLE_AFTER = 10.0  # a worker up this long has started well: the delays start over
GIVE_UP_AFTER = 3  # restarts in a row that did not stay up: /health fails
SNAPSHOT_TIMEOUT = 1.0
STOP_TIMEOUT = 10.0  # after the first process stopped, workers still running are killed


class Channel:
    """This process's end of one worker's channel."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 on_ready: Callable[[], None], on_metrics: Callable[[Totals], None]) -> None:
        self.reader = reader
        self.writer = writer
        self.on_ready = on_ready
        self.on_metrics = on_metrics
        self.seq = 0
        self.waiting: dict[int, asyncio.Future[None]] = {}

    async def run(self) -> None:
        """Read frames until the worker's end closes."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, OSError):
            while True:
                kind, seq, payload = await read_frame(self.reader)
                if kind == READY:
                    self.on_ready()
                elif kind == METRICS:
                    try:
                        self.on_metrics(parse_totals(payload.decode()))
                    except ValueError as e:  # pragma: no cover - the worker's own output
                        log.warning("unreadable worker metrics: %(error)s", {"error": str(e)})
                    fut = self.waiting.pop(seq, None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)

    async def snapshot(self, timeout: float) -> bool:
        """Ask for the worker's counters; whether they came within ``timeout``."""
        self.seq += 1
        fut = self.waiting[self.seq] = asyncio.get_running_loop().create_future()
        try:
            self.writer.write(frame(SNAPSHOT, self.seq))
            await asyncio.wait_for(fut, timeout)
        except (TimeoutError, ConnectionError, OSError):
            return False
        finally:
            self.waiting.pop(self.seq, None)
        return True

    def close(self) -> None:
        self.writer.close()


@dataclass
class Slot:
    """One worker's place: the process in it now and its record of exits."""

    number: int
    proc: asyncio.subprocess.Process | None = None
    channel: Channel | None = None
    started: float = 0.0  # time.monotonic() at the current process's start
    serving: bool = False  # the current process said READY
    quick_exits: int = 0  # exits in a row, each within STABLE_AFTER of its start
    last_exit: str = ""
    snapshot: Totals | None = None  # the current process's last counters


def describe(code: int) -> str:
    """A process's exit status in words."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with status {code}"


class Supervisor:
    """Starts ``count`` workers running ``argv`` and keeps them running (see the module
    docstring for the rules)."""

    def __init__(self, count: int, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 backoff_first: float = BACKOFF_FIRST, backoff_max: float = BACKOFF_MAX,
                 stable_after: float = STABLE_AFTER, give_up_after: int = GIVE_UP_AFTER,
                 snapshot_timeout: float = SNAPSHOT_TIMEOUT) -> None:
        self.slots = [Slot(n) for n in range(1, count + 1)]
        self.argv = list(argv)
        self.env = dict(os.environ if env is None else env)
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.give_up_after = give_up_after
        self.snapshot_timeout = snapshot_timeout
        self.restarts = 0
        self.snapshot_misses = 0
        self.retired: Totals = {}
        self.stopping = False
        self._stop_signal = signal.SIGTERM
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ---- what /health and /metrics read --------------------------------------------------

    @property
    def running(self) -> int:
        return 1 + sum(1 for s in self.slots if s.serving)

    def problem(self) -> str | None:
        """Why the workers cannot be kept running, or None while they can."""
        now = time.monotonic()
        for s in self.slots:
            stable = s.proc is not None and now - s.started >= self.stable_after
            if s.quick_exits > self.give_up_after and not stable:
                return (f"worker {s.number} cannot be kept running: it exited "
                        f"{s.quick_exits} times in a row within {self.stable_after:g}s of "
                        f"starting (last: {s.last_exit})")
        return None

    async def refresh(self) -> None:
        """Fetch every serving worker's counters (at most ``snapshot_timeout``)."""
        live = [s.channel for s in self.slots if s.serving and s.channel is not None]
        got = await asyncio.gather(*(c.snapshot(self.snapshot_timeout) for c in live))
        self.snapshot_misses += got.count(False)

    def totals(self) -> Totals:
        out: Totals = {}
        add_totals(out, self.retired)
        for s in self.slots:
            if s.snapshot is not None:
                add_totals(out, s.snapshot)
        return out

    # ---- running them --------------------------------------------------------------------

    def start(self) -> None:
        for slot in self.slots:
            self._tasks.append(asyncio.create_task(self._keep(slot), name=f"worker-{slot.number}"))

    def reload(self) -> None:
        """Pass SIGHUP on to the workers that serve (one still starting reads the new
        config anyway, and would die of a SIGHUP before its handler is installed)."""
        for s in self.slots:
            if s.serving and s.proc is not None:
                _signal(s.proc, signal.SIGHUP)

    def shutdown(self, sig: signal.Signals) -> None:
        """No more restarts; pass ``sig`` (SIGTERM: lameduck, SIGINT: at once) on."""
        self.stopping = True
        self._stop_signal = sig
        self._wake.set()
        for s in self.slots:
            if s.proc is not None:
                _signal(s.proc, sig)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Wait for every worker to exit; kill the ones still running after ``timeout``."""
        if not self.stopping:
            self.shutdown(signal.SIGTERM)
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for s in self.slots:
            if s.proc is not None and s.proc.returncode is None:
                log.warning("worker %(worker)d pid=%(pid)d still running after "
                            "%(waited).0fs; killing it",
                            {"worker": s.number, "pid": s.proc.pid, "waited": timeout})
                _signal(s.proc, signal.SIGKILL)
        if pending:
            await asyncio.wait(pending, timeout=5)
        self._tasks.clear()

    async def _keep(self, slot: Slot) -> None:
        delay = self.backoff_first
        first = True
        while not self.stopping:
            if not first:
                self.restarts += 1
            first = False
            began = time.monotonic()
            try:
                status, pid = await self._run_once(slot)
            except OSError as e:
                status, pid = f"could not be started: {e}", None
            if self.stopping:
                log.info("worker %(worker)d pid=%(pid)s stopped: %(status)s",
                         {"worker": slot.number, "pid": pid, "status": status})
                return
            up = time.monotonic() - began
            if up >= self.stable_after:
                slot.quick_exits, delay = 0, self.backoff_first
            slot.quick_exits += 1
            slot.last_exit = status
            log.warning("worker %(worker)d pid=%(pid)s %(status)s after %(uptime).1fs; "
                        "restarting in %(delay)gs", {"worker": slot.number, "pid": pid,
                                                     "status": status, "uptime": up,
                                                     "delay": delay})
            if slot.quick_exits == self.give_up_after + 1:
                log.error("%s", self.problem() or f"worker {slot.number} keeps exiting")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            delay = min(delay * 2, self.backoff_max)

    async def _run_once(self, slot: Slot) -> tuple[str, int]:
        """Start a worker in ``slot``, wait for it to exit; its exit in words, its pid."""
        mine, theirs = socket.socketpair()
        try:
            env = {**self.env, ENV_SLOT: str(slot.number), ENV_FD: str(theirs.fileno()),
                   ENV_PARENT: str(os.getpid())}
            proc = await asyncio.create_subprocess_exec(
                *self.argv, env=env, pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        slot.proc, slot.started, slot.serving = proc, time.monotonic(), False
        if self.stopping:  # shutdown began while it was being started
            _signal(proc, self._stop_signal)
        reading: asyncio.Task[None] | None = None
        try:
            reader, writer = await asyncio.open_unix_connection(sock=mine)
            channel = slot.channel = Channel(reader, writer, lambda: self._ready(slot),
                                             lambda t: setattr(slot, "snapshot", t))
            reading = asyncio.create_task(channel.run(), name=f"worker-{slot.number}-channel")
            code = await proc.wait()
            # the frames it sent before it died, then the channel's end
            await asyncio.wait({reading}, timeout=1.0)
        finally:
            if proc.returncode is None:  # cancelled: never leave a worker behind
                _signal(proc, signal.SIGKILL)
            if reading is not None:
                reading.cancel()
            if slot.channel is not None:
                slot.channel.close()
            slot.proc, slot.channel, slot.serving = None, None, False
            if slot.snapshot is not None:  # keep the counters monotonic
                add_totals(self.retired, slot.snapshot)
                slot.snapshot = None
        return describe(code), proc.pid

    def _ready(self, slot: Slot) -> None:
        slot.serving = True
        log.info("worker %(worker)d pid=%(pid)s started", {
            "worker": slot.number, "pid": slot.proc.pid if slot.proc is not None else "?"})


def _signal(proc: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
