"""The running server: wires config, store, sources, compiler, handler and listeners.

``App`` is an async context manager (tests run the real server with it and it always
shuts down); ``serve`` is what the CLI runs: start, wait for SIGTERM/SIGINT, stop.
Shutdown order (SPEC §10): stop being ready, keep answering for the lameduck period,
close listeners, drain, cancel the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from types import TracebackType
from typing import Any

from mcdns import __version__
from mcdns.answers.compiler import Compiler
from mcdns.config import Config, HostPort
from mcdns.dns.handler import Forwarder, Handler
from mcdns.dns.server import Listeners
from mcdns.kube.settings import WatchSettings
from mcdns.kube.source import KubeSource, load_client_config, source_names
from mcdns.state.statefile import SOURCE as STATE_SOURCE
from mcdns.state.statefile import StateFileSource
from mcdns.state.store import Store

log = logging.getLogger("mcdns")


class App:
    """One mcdns server process's parts, started and stopped together."""

    def __init__(self, cfg: Config, store: Store | None = None,
                 forwarder: Forwarder | None = None, sources: bool = True,
                 kube_settings: WatchSettings | None = None) -> None:
        """``sources=False`` runs without a state file or API (tests feed the store)."""
        self.cfg = cfg
        self.run_sources = sources
        self.kube_settings = kube_settings
        self.store = store or Store(self._sources(cfg) if sources else ())
        self.compiler = Compiler(cfg, self.store)
        if forwarder is None and cfg.role == "resolver":
            from mcdns.resolver import Resolver

            forwarder = Resolver(cfg)  # raises ConfigError when no upstream is usable
        self.forwarder = forwarder
        self.handler = Handler(cfg, self.compiler, forwarder)
        self.listeners = Listeners(cfg, self.handler.handle)
        self.state_source: StateFileSource | None = None
        self.kube: KubeSource | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.stopping = False

    @staticmethod
    def _sources(cfg: Config) -> tuple[str, ...]:
        return (STATE_SOURCE,) if cfg.state else source_names(cfg)

    def _source_text(self) -> str:
        if self.cfg.state:
            return f"state:{self.cfg.state}"
        if self.kube is not None:
            return "kubernetes:" + (self.cfg.kubeconfig or "in-cluster")
        return "none"

    @property
    def addresses(self) -> list[HostPort]:
        return self.listeners.addresses

    async def start(self, reuse_port: bool = False) -> None:
        """Load the first state (errors raise), then open the listeners."""
        if self.run_sources and self.cfg.state:
            self.state_source = StateFileSource(self.cfg.state, self.store)
            self.state_source.load()
            self.tasks.append(asyncio.create_task(self.state_source.run(), name="state-file"))
        elif self.run_sources:
            conf = await load_client_config(self.cfg)  # ClientConfigError: the CLI exits 2
            self.kube = KubeSource(self.cfg, self.store, self.kube_settings, client_config=conf)
            self.tasks.append(asyncio.create_task(self.kube.run(), name="kube"))
        await self.listeners.start(reuse_port)
        log.info("mcdns started version=%s role=%s zones=%s,%s listen=%s source=%s",
                 __version__, self.cfg.role, self.cfg.zone, self.cfg.clusterset_zone,
                 ",".join(str(a) for a in self.addresses), self._source_text())

    async def stop(self, drain: float = 5.0) -> None:
        self.stopping = True
        await self.listeners.stop(drain)
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.tasks.clear()
        if self.forwarder is not None and hasattr(self.forwarder, "close"):
            await self.forwarder.close()

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop(drain=1.0)


async def serve(cfg: Config) -> int:
    """Run until SIGTERM or SIGINT; returns the exit code."""
    app = App(cfg)
    await app.start()
    stop = asyncio.Event()
    received: list[signal.Signals] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    await stop.wait()
    # SIGTERM (Kubernetes) keeps answering for the lameduck period; Ctrl-C stops at once.
    lameduck = cfg.lameduck if received[0] == signal.SIGTERM else 0.0
    log.info("shutting down signal=%s lameduck=%ss", received[0].name, lameduck)
    app.stopping = True
    await asyncio.sleep(lameduck)
    await app.stop()
    log.info("stopped")
    return 0
