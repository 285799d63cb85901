"""The operations HTTP listener: /health, /ready, /metrics and /status, on their own port.

aiohttp serves it on the same event loop as DNS; every handler only reads in-memory
state, so a scrape never holds DNS answering up for long. With workers (mcdns.ops.workers)
/metrics first awaits their counters (1 s at most; the loop answers DNS meanwhile) and
/health also fails when a worker cannot be kept running. /status and /status.json are the
status page (mcdns.ops.status).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mcdns.config import HostPort
from mcdns.ops.metrics import Parts, registry_for
from mcdns.ops.status import Status
from mcdns.ops.workers import Supervisor


class HTTPServer:
    """/health (liveness; fails in lameduck, or while a worker cannot be kept running),
    /ready (synced), /metrics (Prometheus, every worker's counters summed), /status (the
    status page, HTML) and /status.json (the same as JSON).

    ``stopping`` says whether shutdown began (both probes fail from then on)."""

    def __init__(self, address: HostPort, parts: Parts, stopping: Callable[[], bool]) -> None:
        self.parts = parts
        self.stopping = stopping
        self.address = address
        self.registry = registry_for(parts)
        self.status = Status(parts.compiler, parts.store)
        self.workers: Supervisor | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        web_app = web.Application()
        web_app.router.add_get("/health", self.health)
        web_app.router.add_get("/ready", self.ready)
        web_app.router.add_get("/metrics", self.metrics)
        web_app.router.add_get("/status", self.status_page)
        web_app.router.add_get("/status.json", self.status_json)
        self._runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address.host, self.address.port,
                           reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.address.port

    def attach(self, workers: Supervisor) -> None:
        """Report the ``workers`` in /health and add their counters to /metrics."""
        self.workers = workers
        self.registry = registry_for(self.parts, workers)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def health(self, _request: web.Request) -> web.Response:
        if self.stopping():
            return web.Response(status=503, text="shutting down (lameduck)\n")
        problem = self.workers.problem() if self.workers is not None else None
        if problem is not None:
            return web.Response(status=503, text=problem + "\n")
        return web.Response(text="OK\n")

    async def ready(self, _request: web.Request) -> web.Response:
        if self.stopping():
            return web.Response(status=503, text="not ready: shutting down\n")
        missing = [name for name, ok in sorted(self.parts.store.synced_sources.items()) if not ok]
        if missing:
            return web.Response(status=503,
                                text=f"not ready: waiting for the first list of "
                                     f"{', '.join(missing)}\n")
        return web.Response(text="ready\n")

    async def metrics(self, _request: web.Request) -> web.Response:
        if self.workers is not None:
            await self.workers.refresh()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status_page(self, _request: web.Request) -> web.Response:
        return web.Response(text=self.status.page(), content_type="text/html",
                            charset="utf-8")

    async def status_json(self, _request: web.Request) -> web.Response:
        return web.Response(text=self.status.json(), content_type="application/json")
