"""Shared test helpers: run the real mcdns server in-process on 127.0.0.1, query it.

The server runs on its own event loop in a thread, so tests can use blocking clients
(dnspython, dig subprocesses) against real sockets, and always shut it down.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from mcdns import config
from mcdns.app import App
from mcdns.state.store import Store

# The suite written before the failback hold-down expects failing back to be immediate:
# it runs with failback_delay 0, in this process and in every `mcdns serve` it starts
# (start_mcdns passes --failback-delay 0). Tests of the hold-down set their own delay.
config.DEFAULT_FAILBACK_DELAY = 0.0

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
DEMO_STATE = ROOT / "config" / "demo-state.yaml"
T = TypeVar("T")


@dataclass
class Running:
    """A server running in a background thread."""

    app: App
    loop: asyncio.AbstractEventLoop
    host: str
    port: int

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop thread (the one writer) and return its result."""
        fut: Future[T] = Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as e:  # pragma: no cover - re-raised in the test
                fut.set_exception(e)

        self.loop.call_soon_threadsafe(run)
        return fut.result(timeout=10)

    def query(self, name: str, rdtype: str | int = "A", tcp: bool = False,
              rdclass: str | int = "IN", **kw: Any) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, rdclass, **kw)
        if tcp:
            return dns.query.tcp(q, self.host, port=self.port, timeout=3)
        return dns.query.udp(q, self.host, port=self.port, timeout=3)


def make_config(**values: Any) -> config.Config:
    base: dict[str, Any] = {"listen": ["127.0.0.1:0"], "http": None}
    base.update(values)
    return config.build(base)


@contextlib.contextmanager
def running(cfg: config.Config, store: Store | None = None, **app_kw: Any) -> Iterator[Running]:
    """Start ``App(cfg)`` on a private loop thread; stop it when the block ends."""
    loop = asyncio.new_event_loop()
    started: Future[App] = Future()

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            app = App(cfg, store=store, **app_kw)
            loop.run_until_complete(app.start())
        except BaseException as e:
            started.set_exception(e)
            return
        started.set_result(app)
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    app = started.result(timeout=30)
    addr = app.addresses[0]
    try:
        yield Running(app, loop, addr.host, addr.port)
    finally:
        asyncio.run_coroutine_threadsafe(app.stop(drain=1.0), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def demo() -> Iterator[Running]:
    with running(make_config(state=str(DEMO_STATE))) as srv:
        yield srv


def rrsets(section: list[dns.rrset.RRset]) -> set[str]:
    """A section as a set of one-line RR texts, order-free and (as DNS names compare)
    case-insensitive."""
    return {line.lower() for rrset in section for line in rrset.to_text().splitlines()}


STARTED = re.compile(r"mcdns started .* listen=\S*?:(\d+)\S* http=(?:\S+:(\d+)|off)")


def start_mcdns(*args: str, cwd: Path = ROOT, timeout: float = 30
                ) -> tuple[subprocess.Popen[str], int, int | None]:
    """Run ``mcdns serve ARGS --listen 127.0.0.1:0`` and read the ports it bound from its
    start-up log line (no port is guessed, so parallel tests never collide).
    Returns (process, DNS port, HTTP port or None)."""
    argv = [sys.executable, "-m", "mcdns", "serve", *args]
    if "--listen" not in args:
        argv += ["--listen", "127.0.0.1:0"]
    if "--failback-delay" not in args:  # as in this process: see the top of this file
        argv += ["--failback-delay", "0"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, cwd=cwd)
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if m := STARTED.search(line):
            return proc, int(m.group(1)), int(m.group(2)) if m.group(2) else None
    proc.kill()
    raise AssertionError("mcdns did not start:\n" + "".join(seen))


def needs(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: run `make test` (it installs test tools)")


def rdtype(text: str) -> int:
    return int(dns.rdatatype.from_text(text))


def rdclass(text: str) -> int:
    return int(dns.rdataclass.from_text(text))
