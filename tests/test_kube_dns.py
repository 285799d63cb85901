"""Watch events through to real DNS answers: the API side feeding the real server.

The fake API server, the KubeSource (real kubernetes_asyncio client) and the real mcdns
server (App) share one event loop; queries go over UDP with dnspython's async client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import dns.asyncquery
import dns.message
import dns.rcode
from kubeapi import FakeKubeAPI, endpointslice, namespace, service, serviceimport
from kubeharness import Running, running

from mcdns import config
from mcdns.app import App
from mcdns.config import Config

SERVE = "serve.default.svc.cluster.local."
LOCAL_IP = "10.96.0.10"
IMPORT_IP = "10.13.187.164"


def cluster() -> FakeKubeAPI:
    api = FakeKubeAPI()
    api.apply(namespace("default"))
    api.apply(service("serve", LOCAL_IP))
    api.apply(endpointslice("serve-abc", "serve", ["10.0.0.1"]))
    api.apply(serviceimport("serve", [IMPORT_IP]))
    return api


async def ask(app: App, name: str, rdtype: str = "A") -> tuple[str, set[str]]:
    addr = app.addresses[0]
    reply = await dns.asyncquery.udp(dns.message.make_query(name, rdtype), addr.host,
                                     port=addr.port, timeout=2)
    ips = {rd.to_text() for rrset in reply.answer for rd in rrset}
    return dns.rcode.to_text(reply.rcode()), ips


async def answers(r: Running, app: App, want: tuple[str, set[str]], name: str = SERVE,
                  timeout: float = 5.0) -> None:
    """Ask again after each store commit until the answer is ``want``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got = await ask(app, name)
    while got != want:
        if loop.time() > deadline:
            raise AssertionError(f"{name}: got {got}, want {want}")
        await r.next_change(0.05)
        got = await ask(app, name)


def dns_run(fn: Callable[[Running, App], Awaitable[None]], api: FakeKubeAPI,
            start_api: bool = True) -> None:
    async def go() -> None:
        async with running(api, start_api=start_api) as r:
            cfg: Config = config.build({"listen": ["127.0.0.1:0"], "http": None})
            async with App(cfg, store=r.store, sources=False) as app:
                await fn(r, app)

    async def bounded() -> None:
        await asyncio.wait_for(go(), 20)

    asyncio.run(bounded())


def test_servfail_before_sync_then_answers() -> None:
    async def check(r: Running, app: App) -> None:
        r.api.fail(500)
        await r.until(lambda: sum(r.source.stats.restarts.values()) >= 3, what="retries")
        assert await ask(app, SERVE) == ("SERVFAIL", set())
        r.api.heal()
        await r.synced()
        assert await ask(app, SERVE) == ("NOERROR", {LOCAL_IP})
        assert (await ask(app, "nope.default.svc.cluster.local."))[0] == "NXDOMAIN"

    dns_run(check, cluster())


def test_answer_follows_local_endpoint_readiness() -> None:
    async def check(r: Running, app: App) -> None:
        await r.watching()
        assert await ask(app, SERVE) == ("NOERROR", {LOCAL_IP})
        r.api.apply(endpointslice("serve-abc", "serve", ["10.0.0.1"], ready=False))
        await answers(r, app, ("NOERROR", {IMPORT_IP}))
        r.api.apply(endpointslice("serve-abc", "serve", ["10.0.0.1"], ready=True))
        await answers(r, app, ("NOERROR", {LOCAL_IP}))
        # the import goes away while local is down: the local answer is all there is
        r.api.apply(endpointslice("serve-abc", "serve", ["10.0.0.1"], ready=False))
        await answers(r, app, ("NOERROR", {IMPORT_IP}))
        r.api.remove("ServiceImport", "default", "serve")
        await answers(r, app, ("NOERROR", {LOCAL_IP}))

    dns_run(check, cluster())


def test_last_state_served_while_api_is_away_then_converges() -> None:
    async def check(r: Running, app: App) -> None:
        await r.watching()
        await r.api.stop()
        assert await ask(app, SERVE) == ("NOERROR", {LOCAL_IP})
        r.api.apply(endpointslice("serve-abc", "serve", ["10.0.0.1"], ready=False))
        r.api.compact()
        await r.until(lambda: sum(r.source.stats.restarts.values()) >= 5, what="retries")
        assert await ask(app, SERVE) == ("NOERROR", {LOCAL_IP})  # last known answer
        await r.api.start(r.api.port)
        await answers(r, app, ("NOERROR", {IMPORT_IP}))

    dns_run(check, cluster())
