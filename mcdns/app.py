"""The running server: wires config, store, sources, compiler, handler and listeners.

``App`` is an async context manager (tests run the real server with it and it always
shuts down); ``serve`` is what the CLI runs: start, then SIGHUP reloads the config and
SIGTERM shuts down in CoreDNS's order: /health and /ready fail, DNS keeps
answering for the lameduck period, listeners close, in-flight answers drain, the rest
is cancelled, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Awaitable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mcdns import __version__
from mcdns.answers.compiler import Compiler
from mcdns.answers.rdata import name_text
from mcdns.config import Config, ConfigError, HostPort, load
from mcdns.dns.handler import Handler
from mcdns.dns.hooks import HandleFn
from mcdns.dns.rrl import RRL
from mcdns.dns.server import ListenError, Listeners
from mcdns.kube.resources import source_names
from mcdns.kube.settings import WatchSettings
from mcdns.logs import setup_logging
from mcdns.proto import RCODE_NAMES, TYPE_NAMES
from mcdns.resolver.resolver import Resolver
from mcdns.state.store import Store

if TYPE_CHECKING:  # imported when used: a state file never needs the API client, and
    # without an HTTP port (the light sidecar) neither aiohttp nor prometheus_client loads
    from mcdns.kube.events import EventRecorder
    from mcdns.kube.source import KubeSource
    from mcdns.ops.http import HTTPServer
    from mcdns.ops.metrics import Parts
    from mcdns.ops.worker_link import WorkerLink
    from mcdns.ops.workers import Supervisor
    from mcdns.state.statefile import StateFileSource

log = logging.getLogger("mcdns")

# Keys a running server can take on reload; the others need a restart.
LIVE_KEYS = frozenset({
    "policy", "min_ready", "failback_delay", "failback_ready", "cluster_preference", "ttl",
    "pods", "max_udp_size", "tcp_idle_timeout",
    "tcp_max_connections", "tcp_max_queries", "log_format", "log_level", "query_log",
    "query_log_sample", "lameduck", "upstream_timeout",
})
CONFIG_POLL_SECONDS = 1.0


class App:
    """One mcdns server process's parts, started and stopped together."""

    def __init__(self, cfg: Config, store: Store | None = None,
                 forwarder: Resolver | None = None, sources: bool = True,
                 kube_settings: WatchSettings | None = None,
                 overrides: Mapping[str, Any] | None = None) -> None:
        """``sources=False`` runs without a state file or API (tests feed the store);
        ``overrides`` are the CLI flags, re-applied over the file on every reload."""
        self.cfg = cfg
        self.overrides = dict(overrides or {})
        self.run_sources = sources and cfg.role != "forwarder"  # a forwarder reads no state
        self.kube_settings = kube_settings
        self.store = store or Store(self._sources(cfg) if self.run_sources else ())
        self.compiler = Compiler(cfg, self.store)
        if forwarder is None and cfg.role != "stub":
            forwarder = Resolver(cfg)  # raises ConfigError when no upstream is usable
        for up in forwarder.upstreams if forwarder is not None and cfg.upstream_tcp else ():
            up.tcp = True  # upstream_tcp: every upstream over TCP only
        self.forwarder = forwarder
        self.handler = Handler(cfg, self.compiler, forwarder, count=cfg.metrics)
        self.rrl = RRL(cfg) if cfg.rrl_responses_per_second else None
        self.query_log = QueryLog(cfg)
        self.listeners = Listeners(cfg, self._handle_fn(),
                                   rate_limit=self.rrl.check if self.rrl else None,
                                   timed=cfg.metrics, needs_peer=self._needs_peer())
        self.http: HTTPServer | None = None
        self.state_source: StateFileSource | None = None
        self.kube: KubeSource | None = None
        self.events: EventRecorder | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.stopping = False

    def _handle_fn(self) -> HandleFn:
        """The handler, wrapped with query logging when it is on (latency is measured by
        the listeners)."""
        handle: HandleFn = self.handler.handle
        return self.query_log.wrap(handle) if self.query_log.every else handle

    def _needs_peer(self) -> bool:
        """Whether answering reads the client address (allow-list, query log)."""
        return self.forwarder is not None or bool(self.query_log.every)

    @staticmethod
    def _sources(cfg: Config) -> tuple[str, ...]:
        if cfg.state:
            from mcdns.state.statefile import SOURCE

            return (SOURCE,)
        return source_names(cfg)

    def _source_text(self) -> str:
        if self.cfg.state:
            return f"state:{self.cfg.state}"
        if self.kube is not None:
            return "kubernetes:" + (self.cfg.kubeconfig or "in-cluster")
        if self.cfg.role == "forwarder":
            return "forward:" + ",".join(str(hp) for hp in self.cfg.cluster_upstreams)
        return "none"

    def _metric_parts(self) -> Parts:
        from mcdns.ops.metrics import Parts

        return Parts(zones=tuple(z.name for z in self.compiler.table.zones),
                     queries=self.compiler.table.slots, latency=self.listeners.latency,
                     compiler=self.compiler, store=self.store,
                     kube=self.kube.stats if self.kube is not None else None,
                     events=self.events.stats if self.events is not None else None,
                     resolver=self.forwarder)

    @property
    def addresses(self) -> list[HostPort]:
        return self.listeners.addresses

    async def start(self, reuse_port: bool = False) -> None:
        """Load the first state (errors raise), open the listeners and the HTTP port."""
        if self.run_sources and self.cfg.state:
            from mcdns.state.statefile import StateFileSource

            self.state_source = StateFileSource(self.cfg.state, self.store)
            self.state_source.load()
            self.tasks.append(asyncio.create_task(self.state_source.run(), name="state-file"))
        elif self.run_sources:
            # The API client is imported only here: a state file never needs it.
            from mcdns.kube.source import KubeSource, load_client_config

            conf = await load_client_config(self.cfg)  # ClientConfigError: the CLI exits 2
            self.kube = KubeSource(self.cfg, self.store, self.kube_settings, client_config=conf)
            self.tasks.append(asyncio.create_task(self.kube.run(), name="kube"))
            if self.cfg.events:  # failovers as Kubernetes Events, off the answer path
                from mcdns.kube.events import EventRecorder

                self.events = EventRecorder(conf, versions=self.kube.version_of)
                self.tasks.append(self.events.start())
                self.compiler.on_switch(self.events.record)
        await self.listeners.start(reuse_port)
        if self.cfg.http is not None:
            from mcdns.ops.http import HTTPServer

            self.http = HTTPServer(self.cfg.http, self._metric_parts(), lambda: self.stopping)
            try:
                await self.http.start()
            except OSError as e:
                raise ListenError(f"cannot listen on {self.cfg.http} (HTTP): "
                                  f"{_reason(e)}") from None
        if self.cfg.config_file:
            self.tasks.append(asyncio.create_task(self._watch_config(), name="config-file"))
        log.info("mcdns started version=%(version)s role=%(role)s zones=%(zones)s "
                 "listen=%(listen)s http=%(http)s source=%(source)s", {
                     "version": __version__, "role": self.cfg.role,
                     "zones": f"{self.cfg.zone},{self.cfg.clusterset_zone}",
                     "listen": ",".join(str(a) for a in self.addresses),
                     "http": f"{self.http.address.host}:{self.http.port}" if self.http
                     else "off", "source": self._source_text()})

    async def stop(self, drain: float = 5.0) -> None:
        self.stopping = True
        await self.listeners.stop(drain)
        self.compiler.close()  # no failback fires after the listeners are gone
        if self.events is not None:  # send what is queued, briefly
            await self.events.stop(1.0)
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.tasks.clear()
        if self.http is not None:
            await self.http.stop()
        if self.forwarder is not None:
            await self.forwarder.close()

    # ---- reload ---------------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config file; apply it if valid, else keep the old one (logged)."""
        if not self.cfg.config_file:
            log.warning("reload asked, but mcdns runs without a config file")
            return False
        try:
            new = load(self.cfg.config_file, self.overrides)
            self.apply_config(new)
        except ConfigError as e:
            log.error("config reload refused, keeping the running config: %(error)s",
                      {"error": str(e)})
            return False
        return True

    def apply_config(self, new: Config) -> None:
        """Apply the keys a running server can change; refuse the others by name."""
        old = self.cfg
        changed = [f.name for f in dataclasses.fields(Config)
                   if getattr(old, f.name) != getattr(new, f.name) and f.name != "config_file"]
        fixed = [k for k in changed if k not in LIVE_KEYS]
        if fixed:
            raise ConfigError(fixed[0], "changed, but it only takes effect on restart")
        if not changed:
            log.info("config reloaded: nothing changed")
            return
        self.cfg = new
        setup_logging(new.log_format, new.log_level)
        self.query_log.configure(new)
        self.listeners.cfg = new
        # query logging may have changed
        self.listeners.set_handle(self._handle_fn(), self._needs_peer())
        self.handler.reconfigure(new)
        self.compiler.reconfigure(new)
        if self.forwarder is not None:  # max_udp_size, upstream_timeout
            self.forwarder.reconfigure(new)
        log.info("config reloaded: changed %(changed)s", {"changed": ", ".join(changed)})

    async def _watch_config(self) -> None:
        path = Path(self.cfg.config_file or "")
        last = _mtime(path)
        while True:
            await asyncio.sleep(CONFIG_POLL_SECONDS)
            now = _mtime(path)
            if now != last:
                last = now
                self.reload()

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop(drain=1.0)


def _reason(e: OSError) -> str:
    """An OSError's reason without its errno and address noise."""
    text = e.strerror or str(e)
    return text.rsplit(": ", 1)[-1] if "attempting to bind" in text else text


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


class QueryLog:
    """Logs a sample of queries (``query_log``, ``query_log_sample``): one line each."""

    def __init__(self, cfg: Config) -> None:
        self.every = 0
        self.seen = 0
        self.configure(cfg)

    def configure(self, cfg: Config) -> None:
        rate = cfg.query_log_sample if cfg.query_log else 0.0
        self.every = max(1, round(1 / rate)) if rate > 0 else 0

    def wrap(self, handle: HandleFn) -> HandleFn:
        def logged(wire: bytes, peer: str, tcp: bool) -> bytes | Awaitable[bytes | None] | None:
            resp = handle(wire, peer, tcp)
            if self.every:
                self.seen += 1
                if self.seen % self.every == 0 and type(resp) is bytes:
                    _log_query(wire, resp, peer, tcp)
            return resp

        return logged


def _log_query(wire: bytes, resp: bytes, peer: str, tcp: bool) -> None:
    end = wire.find(0, 12) + 1
    if not end or end + 4 > len(wire):
        return
    try:
        name = name_text(wire[12:end])
    except IndexError:
        return
    qtype = int.from_bytes(wire[end:end + 2], "big")
    log.info("query client=%(client)s proto=%(proto)s name=%(name)s type=%(type)s "
             "rcode=%(rcode)s size=%(size)d", {
                 "client": peer, "proto": "tcp" if tcp else "udp", "name": name,
                 "type": TYPE_NAMES.get(qtype, qtype), "rcode": RCODE_NAMES.get(
                     resp[3] & 0x0F, resp[3] & 0x0F) if len(resp) > 3 else "-",
                 "size": len(resp)})


async def serve(cfg: Config, overrides: Mapping[str, Any] | None = None,
                workers: Supervisor | None = None, link: WorkerLink | None = None) -> int:
    """Run until SIGTERM or SIGINT (SIGHUP reloads the config); returns the exit code.

    The first process of ``workers: N`` starts its ``workers`` once it serves, reports
    them on /health and /metrics, passes the signals on, and waits for them on the way
    out. A worker answers its ``link`` and stops at once when the first process is gone."""
    app = App(cfg, overrides=overrides)
    await app.start(reuse_port=cfg.workers > 1)
    stop = asyncio.Event()
    received: list[signal.Signals] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if workers is not None:  # no restarts from now on
            workers.shutdown(sig)
        received.append(sig)
        stop.set()

    def on_hup() -> None:
        if workers is not None:
            workers.reload()
        app.reload()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        if workers is not None:
            if app.http is not None:
                app.http.attach(workers)
            workers.start()
        if link is not None:
            from mcdns.ops.metrics import process_registry

            await link.start(process_registry(app._metric_parts()),
                             lambda: on_signal(signal.SIGINT))
        await stop.wait()
        # SIGTERM (Kubernetes) keeps answering for the lameduck period; Ctrl-C stops at once.
        lameduck = app.cfg.lameduck if received[0] == signal.SIGTERM else 0.0
        log.info("shutting down signal=%(signal)s lameduck=%(lameduck)ss",
                 {"signal": received[0].name, "lameduck": lameduck})
        app.stopping = True  # /health and /ready fail from now on
        await asyncio.sleep(lameduck)
        await app.stop()
    finally:
        if workers is not None:  # they got the signal too: wait for them (or kill them)
            await workers.stop()
        if link is not None:
            link.close()
    log.info("stopped")
    return 0
