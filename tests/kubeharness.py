"""Run mcdns's KubeSource against the fake API server, for the kube tests.

``running(...)`` starts the fake server and the real kubernetes_asyncio client behind
``KubeSource`` with fast timings, and always stops both. ``until`` waits for a condition
on store commits (with a short poll for conditions that are not store changes), bounded
in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from kubeapi import FakeKubeAPI

from mcdns.config import Config
from mcdns.kube.resources import source_names
from mcdns.kube.settings import WatchSettings
from mcdns.kube.source import KubeSource
from mcdns.state.store import Store

FAST = WatchSettings(backoff_base=0.01, backoff_max=0.05, page_size=2, list_timeout=2.0,
                     connect_timeout=1.0, server_timeout=30, inactivity=5.0,
                     discovery_interval=0.05)


@dataclass
class Running:
    api: FakeKubeAPI
    store: Store
    source: KubeSource
    task: asyncio.Task[None]
    changed: asyncio.Event

    async def until(self, cond: Callable[[], bool], timeout: float = 5.0,
                    what: str = "condition") -> None:
        """Wait until ``cond()`` holds; fail the test after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not cond():
            if self.task.done():
                self.task.result()  # surface a crash of the source
                raise AssertionError("source stopped")
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.02))

    async def next_change(self, timeout: float) -> None:
        """Wait for the next store commit, at most ``timeout`` seconds."""
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)

    async def synced(self) -> None:
        await self.until(lambda: self.store.synced, what="sync")

    async def watching(self) -> None:
        """Synced, and every watcher has its watch stream open."""
        await self.synced()
        n = len(self.source.watchers)
        await self.until(lambda: len(self.api.watches) == n, what="watches open")


@contextlib.asynccontextmanager
async def running(api: FakeKubeAPI | None = None, settings: WatchSettings = FAST,
                  start_api: bool = True, **cfg: object) -> AsyncIterator[Running]:
    api = api or FakeKubeAPI()
    if start_api:
        await api.start()
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        kubeconfig.write_text(api.kubeconfig(api.token))
        config = Config(kubeconfig=str(kubeconfig)).replace(**cfg)
        store = Store(source_names(config))
        changed = asyncio.Event()
        store.subscribe(lambda _c: changed.set())
        source = KubeSource(config, store, settings)
        task = asyncio.create_task(source.run())
        try:
            yield Running(api, store, source, task, changed)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await api.stop()
