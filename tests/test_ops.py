"""Operating mcdns: /health, /ready and /metrics against the fake API server,
every metric moving when it should, the decision-switch log line, SIGHUP reload,
SIGTERM lameduck under load, and ``mcdns explain``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncquery
import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest
from conftest import DEMO_STATE, needs, start_mcdns
from knot import free_port
from kubeapi import FakeKubeAPI, endpointslice, namespace, service, serviceimport
from prometheus_client.parser import text_string_to_metric_families

from mcdns import config
from mcdns.app import App
from mcdns.kube.settings import WatchSettings

SERVE = "serve.default.svc.cluster.local."
LOCAL_IP, IMPORT_IP = "10.96.0.10", "10.13.187.164"
FAST = WatchSettings(backoff_base=0.02, backoff_max=0.1, discovery_interval=0.5)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Probe:
    """HTTP and DNS access to an App running in this loop."""

    def __init__(self, app: App, session: aiohttp.ClientSession) -> None:
        self.app = app
        self.session = session
        self.base = f"http://127.0.0.1:{app.http.port}"

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.base + path) as r:
            return r.status, await r.text()

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, text = await self.get("/metrics")
        assert status == 200
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    async def ask(self, name: str = SERVE) -> list[str]:
        addr = self.app.addresses[0]
        reply = await dns.asyncquery.udp(dns.message.make_query(name, "A"), addr.host,
                                         port=addr.port, timeout=2)
        return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


def m(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
      **labels: str) -> float:
    """The sum of ``name``'s series whose labels include ``labels`` (CoreDNS's label sets
    add ``server`` and ``family``; the cache's add ``type`` success/denial)."""
    return sum(v for (n, ls), v in metrics.items()
               if n == name and all(dict(ls).get(k) == want for k, want in labels.items()))


def test_ready_health_and_every_metric_moving(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mcdns.answers")

    async def go() -> None:
        api = FakeKubeAPI()
        await api.start()  # pick its port, then take it away until the test says
        await api.stop()
        for obj in (namespace("default"), service("serve", LOCAL_IP),
                    endpointslice("serve-abc", "serve", ["10.0.0.1"]),
                    serviceimport("serve", [IMPORT_IP])):
            api.apply(obj)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(api.kubeconfig())
        cfg = config.build({"listen": ["127.0.0.1:0"], "http": "127.0.0.1:0",
                            "kubeconfig": str(kubeconfig)})
        async with App(cfg, kube_settings=FAST) as app, aiohttp.ClientSession() as session:
            p = Probe(app, session)
            # the API is down at start: not ready, but alive
            status, body = await p.get("/ready")
            assert status == 503 and "services" in body and "endpointslices" in body
            assert (await p.get("/health"))[0] == 200
            before = await p.metrics()
            assert m(before, "mcdns_kube_synced", resource="services") == 0
            await api.start(api.port)

            async def ready() -> bool:
                return (await p.get("/ready"))[0] == 200
            await until(ready, "/ready 200")
            assert await p.ask() == [LOCAL_IP]
            m1 = await p.metrics()
            assert m(m1, "mcdns_kube_synced", resource="services") == 1
            # zones with their trailing dot, as CoreDNS writes them
            assert m(m1, "mcdns_dns_requests_total", zone="cluster.local.", proto="udp",
                     type="A") >= 1
            assert m(m1, "mcdns_dns_responses_total", zone="cluster.local.",
                     rcode="NOERROR") >= 1
            assert m(m1, "mcdns_answers_total", decision="local") >= 1
            assert m(m1, "mcdns_services", state="healthy") == 1
            assert m(m1, "mcdns_dns_request_duration_seconds_count") >= 1
            assert m(m1, "mcdns_build_info", version=__import__("mcdns").__version__) == 1
            assert m(m1, "mcdns_kube_last_event_age_seconds", resource="services") >= 0
            # cause a fallback: the local endpoints go not ready
            caplog.clear()
            api.apply(endpointslice("serve-abc", "serve", ["10.0.0.1"], ready=False))

            async def fell_back() -> bool:
                return await p.ask() == [IMPORT_IP]
            await until(fell_back, "fallback answer")
            m2 = await p.metrics()
            assert m(m2, "mcdns_services", state="fallback") == 1
            assert m(m2, "mcdns_services", state="healthy") == 0
            assert m(m2, "mcdns_answers_total", decision="import") >= 1
            assert m(m2, "mcdns_kube_events_total", resource="endpointslices",
                     type="MODIFIED") >= 1
            assert m(m2, "mcdns_programming_duration_seconds_count") > m(
                m1, "mcdns_programming_duration_seconds_count")
            switches = [r.getMessage() for r in caplog.records
                        if "decision" in r.getMessage()]
            assert len(switches) == 1, switches
            assert "default/serve" in switches[0] and "local -> import" in switches[0]
            assert "0 ready" in switches[0]
            # an NXDOMAIN counts under its rcode
            await p.ask("nope.default.svc.cluster.local.")
            m3 = await p.metrics()
            assert m(m3, "mcdns_dns_responses_total", zone="cluster.local.",
                     rcode="NXDOMAIN") >= 1
            # cut the watches: restarts are counted
            restarts = sum(v for (n, _), v in m3.items()
                           if n == "mcdns_kube_watch_restarts_total")
            api.cut_watches()

            async def restarted() -> bool:
                m4 = await p.metrics()
                return sum(v for (n, _), v in m4.items()
                           if n == "mcdns_kube_watch_restarts_total") > restarts
            await until(restarted, "watch restarts counted")
            await api.stop()

    asyncio.run(asyncio.wait_for(go(), 60))


def test_metrics_off_counts_nothing_on_the_query_path(tmp_path: Path) -> None:
    async def go() -> None:
        cfg = config.build({"listen": ["127.0.0.1:0"], "http": "127.0.0.1:0",
                            "state": str(DEMO_STATE), "metrics": False})
        async with App(cfg) as app, aiohttp.ClientSession() as session:
            p = Probe(app, session)
            assert await p.ask() == [IMPORT_IP]
            metrics = await p.metrics()
            assert m(metrics, "mcdns_dns_requests_total", zone="cluster.local.", proto="udp",
                     type="A") == 0
            assert m(metrics, "mcdns_dns_requests_total") == 0  # nothing at all
            assert m(metrics, "mcdns_services", state="fallback") == 1
            assert app.handler.stats is None

    asyncio.run(asyncio.wait_for(go(), 30))


def _serve(tmp_path: Path, cfg_text: str, *extra: str) -> tuple[subprocess.Popen[str], int, int]:
    cfg = tmp_path / "mcdns.yaml"
    cfg.write_text(cfg_text)
    proc, dns_port, http_port = start_mcdns("--config", str(cfg), "--state", str(DEMO_STATE),
                                            "--http", "127.0.0.1:0", *extra)
    assert http_port is not None
    return proc, dns_port, http_port


def _ttl(port: int) -> int:
    return int(dns.query.udp(dns.message.make_query(SERVE, "A"), "127.0.0.1", port=port,
                             timeout=2).answer[0].ttl)


def test_sighup_reload_changes_ttl_and_refuses_a_broken_file(tmp_path: Path) -> None:
    proc, port, _ = _serve(tmp_path, "ttl: 5\nlameduck: 0\n")
    try:
        assert _ttl(port) == 5
        (tmp_path / "mcdns.yaml").write_text("ttl: 17\nlameduck: 0\n")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while _ttl(port) != 17:
            assert time.monotonic() < deadline, "TTL did not change after SIGHUP"
            time.sleep(0.05)
        (tmp_path / "mcdns.yaml").write_text("ttl: banana\nlameduck: 0\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert _ttl(port) == 17
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        err = proc.stderr.read() if proc.stderr else ""
        assert "config reload refused" in err and "'ttl'" in err and "banana" in err
        assert "config reloaded: changed ttl" in err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_under_load_answers_everything_until_lameduck_ends(tmp_path: Path) -> None:
    lameduck = 1.0
    proc, port, http_port = _serve(tmp_path, f"lameduck: {lameduck}\n")
    sent: list[float] = []
    unanswered: list[float] = []
    stop = threading.Event()

    def load() -> None:
        q = dns.message.make_query(SERVE, "A")
        for _ in range(20000):  # bounded: at most 20,000 queries, ~10 s
            if stop.is_set():
                return
            t = time.monotonic()
            try:
                dns.query.udp(q, "127.0.0.1", port=port, timeout=0.5)
                sent.append(t)
            except Exception:
                unanswered.append(t)
                if proc.poll() is not None:
                    return

    worker = threading.Thread(target=load)
    try:
        worker.start()
        time.sleep(0.5)
        term_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", http_port), timeout=2) as s:
            s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            assert b" 503 " in s.recv(200), "/health fails during lameduck"
        assert proc.wait(timeout=15) == 0
        stop.set()
        worker.join(timeout=10)
        lost = [t for t in unanswered if t < term_at + lameduck - 0.1]
        assert not lost, f"{len(lost)} queries sent during lameduck went unanswered"
        assert len([t for t in sent if t > term_at]) > 10, "load kept going in lameduck"
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()


def test_explain_command(tmp_path: Path) -> None:
    proc, port, _ = _serve(tmp_path, "lameduck: 0\n")
    try:
        r = subprocess.run([sys.executable, "-m", "mcdns", "explain", SERVE, "--server",
                            f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert "decision  import degraded=false" in r.stdout
        assert "ready_by_cluster=member1:2" in r.stdout
        r = subprocess.run([sys.executable, "-m", "mcdns", "explain", "example.com",
                            "--server", f"127.0.0.1:{port}"], capture_output=True, text=True,
                           timeout=20)
        assert r.returncode == 1 and "REFUSED" in r.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_query_log_is_sampled(tmp_path: Path) -> None:
    proc, port, _ = _serve(tmp_path, "lameduck: 0\nquery_log: true\nquery_log_sample: 0.1\n")
    try:
        q = dns.message.make_query(SERVE, "A")
        for _ in range(100):
            dns.query.udp(q, "127.0.0.1", port=port, timeout=2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    lines = [line for line in (proc.stderr.read() if proc.stderr else "").splitlines()
             if "msg=\"query client=" in line]
    assert len(lines) == 10, len(lines)  # 1 in 10 of 100 queries
    assert "name=serve.default.svc.cluster.local." in lines[0] and "rcode=NOERROR" in lines[0]


def test_resolver_metrics_move() -> None:
    """Cache and upstream metrics, in the resolver role against a real Knot upstream."""
    from knot import ZONE, Knot

    async def go(knot: Knot) -> None:
        dead = free_port()  # a second upstream nobody answers on: errors are counted
        cfg = config.build({"listen": ["127.0.0.1:0"], "http": "127.0.0.1:0",
                            "state": str(DEMO_STATE), "role": "resolver",
                            "upstreams": [f"127.0.0.1:{dead}", knot.address],
                            "upstream_timeout": 0.2, "cache_size": 1})
        async with App(cfg) as app, aiohttp.ClientSession() as session:
            p = Probe(app, session)
            first = await p.ask(f"www.{ZONE}.")
            assert first and await p.ask(f"www.{ZONE}.") == first  # miss, then hit
            await p.ask(f"mail.{ZONE}.")  # evicts www: the cache holds one entry
            metrics = await p.metrics()
            assert m(metrics, "mcdns_cache_misses_total") >= 2
            assert m(metrics, "mcdns_cache_hits_total") >= 1
            assert m(metrics, "mcdns_cache_entries") == 1
            assert m(metrics, "mcdns_cache_evictions_total") >= 1
            assert m(metrics, "mcdns_upstream_requests_total", upstream=knot.address) >= 2
            assert m(metrics, "mcdns_upstream_errors_total",
                     upstream=f"127.0.0.1:{dead}") >= 1
            assert m(metrics, "mcdns_upstream_duration_seconds_count",
                     upstream=knot.address) >= 2
            # names outside the zones: ".", as CoreDNS's root zone
            assert m(metrics, "mcdns_dns_requests_total", zone=".", proto="udp",
                     type="A") >= 3
            # CoreDNS's cache and forward families beside mcdns's own
            assert m(metrics, "mcdns_cache_hits_total", type="success", zones=".") >= 1
            assert m(metrics, "mcdns_cache_requests_total") == m(
                metrics, "mcdns_cache_hits_total") + m(metrics, "mcdns_cache_misses_total")
            assert m(metrics, "mcdns_proxy_request_duration_seconds_count",
                     proxy_name="forward", to=knot.address, rcode="NOERROR") >= 1
            assert m(metrics, "mcdns_proxy_request_duration_seconds_count",
                     proxy_name="forward", to=knot.address) >= 2  # www, then mail
            assert m(metrics, "mcdns_proxy_healthcheck_failures_total",
                     to=f"127.0.0.1:{dead}") >= 1

    needs("knotd")
    needs("knotc")
    with Knot() as knot:
        asyncio.run(asyncio.wait_for(go(knot), 30))


class SlowUpstream(asyncio.DatagramProtocol):
    """An upstream answering every query with one A record (TTL 60) after ``DELAY``
    seconds, or not at all once ``on`` is False."""

    DELAY = 0.5

    def __init__(self) -> None:
        self.on = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.on:
            return
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A",
                                                "192.0.2.7"))
        asyncio.get_running_loop().call_later(self.DELAY, self.transport.sendto,
                                              reply.to_wire(), addr)


def test_resolver_stale_and_coalesced_metrics_move() -> None:
    """Every forwarded lookup is a cache hit, miss or stale hit; stale answers served and
    coalesced misses are counted as well."""
    from mcdns.resolver.resolver import Resolver

    now = [1000.0]  # the resolver's clock: expiry without sleeping for a TTL

    async def go() -> None:
        loop = asyncio.get_running_loop()
        transport, upstream = await loop.create_datagram_endpoint(
            SlowUpstream, local_addr=("127.0.0.1", 0))
        try:
            cfg = config.build({
                "listen": ["127.0.0.1:0"], "http": "127.0.0.1:0", "role": "resolver",
                "upstreams": [f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"],
                "upstream_timeout": 0.6})
            res = Resolver(cfg, clock=lambda: now[0])
            async with App(cfg, forwarder=res, sources=False) as app, \
                    aiohttp.ClientSession() as session:
                p = Probe(app, session)
                name = "slow.example."
                together = await asyncio.gather(*(p.ask(name) for _ in range(5)))
                assert together == [["192.0.2.7"]] * 5  # 5 misses, 4 of them coalesced
                assert await p.ask(name) == ["192.0.2.7"]  # a hit
                upstream.on = False
                now[0] += 61
                assert await p.ask(name) == ["192.0.2.7"]  # a miss, the upstream fails: stale
                assert await p.ask(name) == ["192.0.2.7"]  # upstream known down: a stale hit
                metrics = await p.metrics()
                await res.close()
            assert m(metrics, "mcdns_cache_coalesced_total") == 4
            # CoreDNS's name for it (was mcdns_cache_stale_served_total)
            assert m(metrics, "mcdns_cache_served_stale_total") == 2
            hits, misses, stale_hits = (m(metrics, f"mcdns_cache_{k}_total")
                                        for k in ("hits", "misses", "stale_hits"))
            assert (hits, misses, stale_hits) == (1, 6, 1)
            lookups = sum(v for (metric, labels), v in metrics.items()  # zone ".": outside
                          if metric == "mcdns_dns_requests_total" and ("zone", ".") in labels)
            assert lookups == 8 == hits + misses + stale_hits
            assert m(metrics, "mcdns_cache_requests_total") == lookups
            assert m(metrics, "mcdns_proxy_healthcheck_failures_total") == 1  # the timeout
        finally:
            transport.close()

    asyncio.run(asyncio.wait_for(go(), 30))
