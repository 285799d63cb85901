"""The resolver against a real upstream (Knot DNS on loopback) and real clients.

Clients are dnspython and ``dig``, talking to the real mcdns server (``App`` with the
``Resolver`` as its forwarder) running on the test's own event loop, so the test can
also look at the resolver's counters. Cache expiry is driven by a fake clock, so nothing
sleeps for a TTL.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from conftest import needs
from knot import MANY_COUNT, SOA_MINIMUM, WWW_TTL, ZONE, Knot

from mcdns.app import App
from mcdns.config import build
from mcdns.resolver.resolver import Resolver
from mcdns.resolver.upstream import PENALTY

pytestmark = pytest.mark.timeout(60)
TEST_TIMEOUT = 30.0


def own_knot() -> Knot:
    """A Knot upstream (not started); fails, like every tool-needing test, without it."""
    needs("knotd")
    needs("knotc")
    return Knot()


@pytest.fixture(scope="module")
def knot() -> Iterator[Knot]:
    with own_knot() as k:
        yield k


class FakeClock:
    """A monotonic clock the test moves forward by hand (TTL countdown and expiry)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def resolver(*upstreams: str, clock: Callable[[], float] | None = None, **keys: Any) -> Resolver:
    values = {"role": "resolver", "listen": ["127.0.0.1:0"], "http": None}
    cfg = build({**values, "upstreams": list(upstreams), **keys})
    return Resolver(cfg, clock=clock) if clock else Resolver(cfg)


@asynccontextmanager
async def serving(res: Resolver) -> AsyncIterator[int]:
    """The real server with ``res`` as its forwarder, on this loop; yields its port."""
    async with App(res.cfg, forwarder=res, sources=False) as app:
        try:
            yield app.addresses[0].port
        finally:
            await res.close()


def run(make: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(TEST_TIMEOUT):
            await make()

    asyncio.run(bounded())


async def ask(
    port: int, name: str, rdtype: str = "A", tcp: bool = False, payload: int = 0
) -> dns.message.Message:
    """Ask the server; with EDNS (version 0) when ``payload`` is given."""
    q = dns.message.make_query(name, rdtype, use_edns=0 if payload else False, payload=payload)
    if tcp:
        return await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=10)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=10)


def first_ttl(msg: dns.message.Message) -> int:
    return int(msg.answer[0].ttl)


def test_answer_comes_from_upstream_then_from_cache(knot: Knot) -> None:
    clock = FakeClock()
    res = resolver(knot.address, clock=clock)

    async def go() -> None:
        async with serving(res) as port:
            first = await ask(port, f"www.{ZONE}")
            assert first.rcode() == dns.rcode.NOERROR
            assert first_ttl(first) == WWW_TTL
            assert {r.address for r in first.answer[0]} == {"192.0.2.1"}
            before = knot.queries()
            clock.advance(42.3)
            again = await ask(port, f"WWW.{ZONE.upper()}")
            assert first_ttl(again) == WWW_TTL - 42
            assert again.question[0].name.to_text() == f"WWW.{ZONE.upper()}."
            assert knot.queries() == before
            assert res.stats.hits == 1 and res.stats.misses == 1 and res.entries == 1

    run(go)


def test_dig_gets_cached_answers_and_retries_big_ones_over_tcp(knot: Knot) -> None:
    res = resolver(knot.address)

    async def go() -> None:
        async with serving(res) as port:
            base = ["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=5"]

            async def dig(*args: str) -> str:
                proc = await asyncio.create_subprocess_exec(
                    *base, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                )
                out, _ = await proc.communicate()
                return out.decode()

            assert (await dig("+short", f"alias.{ZONE}")).split() == [f"www.{ZONE}.", "192.0.2.1"]
            assert (await dig("+short", f"alias.{ZONE}")).split() == [f"www.{ZONE}.", "192.0.2.1"]
            assert res.stats.hits == 1
            text = await dig("+noedns", f"many.{ZONE}")
            assert "status: NOERROR" in text and "Truncated, retrying in TCP mode" in text
            assert text.count("198.51.100.") == MANY_COUNT
            up = res.upstreams[0].stats
            assert up.tcp_retries == 1  # Knot truncated 1232 bytes; the resolver asked over TCP

    run(go)


def test_nxdomain_is_cached_for_the_soa_minimum(knot: Knot) -> None:
    clock = FakeClock()
    res = resolver(knot.address, clock=clock)

    async def go() -> None:
        async with serving(res) as port:
            name = f"nothing-here.{ZONE}"
            first = await ask(port, name)
            assert first.rcode() == dns.rcode.NXDOMAIN
            before = knot.queries()
            clock.advance(SOA_MINIMUM - 0.5)
            cached = await ask(port, name)
            assert cached.rcode() == dns.rcode.NXDOMAIN
            assert cached.authority[0].rdtype == dns.rdatatype.SOA
            assert cached.authority[0].ttl == 1  # counted down from SOA_MINIMUM
            assert knot.queries() == before
            clock.advance(1.0)
            expired = await ask(port, name)
            assert expired.rcode() == dns.rcode.NXDOMAIN
            assert knot.queries() == before + 1

    run(go)


def test_nodata_is_cached_too(knot: Knot) -> None:
    clock = FakeClock()
    res = resolver(knot.address, clock=clock)

    async def go() -> None:
        async with serving(res) as port:
            first = await ask(port, f"txt.{ZONE}", "AAAA")
            assert first.rcode() == dns.rcode.NOERROR and not first.answer
            before = knot.queries()
            again = await ask(port, f"txt.{ZONE}", "AAAA")
            assert not again.answer and again.authority[0].rdtype == dns.rdatatype.SOA
            assert knot.queries() == before

    run(go)


def test_upstream_stopped_stale_answers_and_fast_servfail() -> None:
    clock = FakeClock()
    with own_knot() as own:
        res = resolver(own.address, clock=clock, upstream_timeout=0.5, serve_stale=600)

        async def go() -> None:
            async with serving(res) as port:
                assert first_ttl(await ask(port, f"www.{ZONE}")) == WWW_TTL
                own.stop()
                clock.advance(WWW_TTL + 10)
                stale = await ask(port, f"www.{ZONE}")
                assert stale.rcode() == dns.rcode.NOERROR and first_ttl(stale) == 30
                assert res.stats.stale_served == 1
                asked = res.upstreams[0].stats.requests
                again = await ask(port, f"www.{ZONE}")  # upstream known down: not asked
                assert first_ttl(again) == 30 and res.upstreams[0].stats.requests == asked
                started = time.monotonic()
                fail = await ask(port, f"short.{ZONE}")
                assert fail.rcode() == dns.rcode.SERVFAIL
                assert time.monotonic() - started < 0.5 + 0.5
                clock.advance(600)  # past the serve-stale window
                gone = await ask(port, f"www.{ZONE}")
                assert gone.rcode() == dns.rcode.SERVFAIL
                own.start()
                assert res._all_failing()
                clock.advance(PENALTY)  # the penalty runs on the resolver's (fake) clock
                assert not res._all_failing()
                back = await ask(port, f"www.{ZONE}")
                assert first_ttl(back) == WWW_TTL

        run(go)


def test_uncached_servfail_within_timeout_when_upstream_is_silent() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        res = resolver(f"127.0.0.1:{silent.getsockname()[1]}", upstream_timeout=0.3)

        async def go() -> None:
            async with serving(res) as port:
                started = time.monotonic()
                reply = await ask(port, f"www.{ZONE}")
                elapsed = time.monotonic() - started
                assert reply.rcode() == dns.rcode.SERVFAIL
                assert 0.3 <= elapsed < 0.3 + 0.7
                assert res.upstreams[0].stats.timeouts == 1

        run(go)


def test_second_upstream_takes_over_when_the_first_is_dead(knot: Knot) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
        dead.bind(("127.0.0.1", 0))
        dead_addr = f"127.0.0.1:{dead.getsockname()[1]}"
        res = resolver(dead_addr, knot.address, upstream_timeout=0.3)

        async def go() -> None:
            async with serving(res) as port:
                started = time.monotonic()
                first = await ask(port, f"www.{ZONE}")
                assert first.rcode() == dns.rcode.NOERROR
                assert time.monotonic() - started >= 0.3
                started = time.monotonic()
                other = await ask(port, f"short.{ZONE}")
                assert other.rcode() == dns.rcode.NOERROR
                assert time.monotonic() - started < 0.3  # the dead one is tried last now
                dead_stats, live_stats = (u.stats for u in res.upstreams)
                assert (dead_stats.requests, dead_stats.timeouts) == (1, 1)
                assert live_stats.requests == 2 and live_stats.errors == 0

        run(go)


class SpoofingUpstream(asyncio.DatagramProtocol):
    """Answers each query three times: wrong ID, wrong question, then the right reply."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        wrong_id = dns.message.make_response(query)
        wrong_id.id = (query.id + 1) % 65536
        wrong_id.answer.append(_a_rrset(query.question[0].name.to_text(), "10.6.6.6"))
        evil = dns.message.make_query(f"evil.{ZONE}.", "A")
        evil.id = query.id
        wrong_q = dns.message.make_response(evil)
        wrong_q.answer.append(_a_rrset(f"evil.{ZONE}.", "10.6.6.7"))
        right = dns.message.make_response(query)
        right.answer.append(_a_rrset(query.question[0].name.to_text(), "192.0.2.99"))
        for msg in (wrong_id, wrong_q, right):
            self.transport.sendto(msg.to_wire(), addr)


def _a_rrset(name: str, ip: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(name, 60, "IN", "A", ip)


def test_spoofed_replies_with_wrong_id_or_question_are_ignored() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            SpoofingUpstream, local_addr=("127.0.0.1", 0)
        )
        try:
            port = transport.get_extra_info("sockname")[1]
            res = resolver(f"127.0.0.1:{port}", upstream_timeout=2.0)
            async with serving(res) as port:
                reply = await ask(port, f"victim.{ZONE}")
                assert [r.address for r in reply.answer[0]] == ["192.0.2.99"]
                assert res.upstreams[0].stats.ignored == 2
        finally:
            transport.close()

    run(go)


def test_concurrent_identical_queries_go_upstream_once(knot: Knot) -> None:
    res = resolver(knot.address)

    async def go() -> None:
        async with serving(res) as port:
            before = knot.queries()
            replies = await asyncio.gather(*(ask(port, f"n7.{ZONE}") for _ in range(20)))
            assert all(r.answer[0][0].address == "203.0.113.8" for r in replies)
            assert knot.queries() == before + 1
            assert res.upstreams[0].stats.requests == 1
            assert res.stats.coalesced + res.stats.hits == 19

    run(go)


def test_cache_never_exceeds_its_bound(knot: Knot) -> None:
    res = resolver(knot.address, cache_size=50)

    async def go() -> None:
        async with serving(res) as port:
            for i in range(120):
                reply = await ask(port, f"n{i}.{ZONE}")
                assert reply.rcode() == dns.rcode.NOERROR
                assert res.entries <= 50
            assert res.entries == 50 and res.evictions == 70
            recent = await ask(port, f"n119.{ZONE}")
            assert recent.answer and res.stats.hits == 1  # the most recent names stay cached

    run(go)


def test_allow_list_refuses_other_clients(knot: Knot) -> None:
    default = resolver(knot.address)
    assert default.allowed("127.0.0.1") and default.allowed("::1")
    assert default.allowed("::ffff:127.0.0.2")
    assert not default.allowed("8.8.8.8") and not default.allowed("not-an-ip")
    narrow = resolver(knot.address, allow=["10.0.0.0/8"])
    assert narrow.allowed("10.1.2.3") and not narrow.allowed("127.0.0.1")

    async def go() -> None:
        async with serving(narrow) as port:
            reply = await ask(port, f"www.{ZONE}")
            assert reply.rcode() == dns.rcode.REFUSED
            assert narrow.stats.misses == 0

    run(go)


def test_edns_do_bit_is_part_of_the_cache_key(knot: Knot) -> None:
    res = resolver(knot.address)

    async def go() -> None:
        async with serving(res) as port:
            plain = await ask(port, f"www.{ZONE}", payload=1232)
            q = dns.message.make_query(f"www.{ZONE}", "A", want_dnssec=True)
            signed = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=10)
            assert plain.rcode() == signed.rcode() == dns.rcode.NOERROR
            assert plain.edns == 0 and not plain.ednsflags & dns.flags.DO
            assert signed.ednsflags & dns.flags.DO
            assert res.stats.misses == 2 and res.entries == 2

    run(go)


def test_reloaded_max_udp_size_applies_to_cached_and_new_answers(knot: Knot) -> None:
    res = resolver(knot.address, max_udp_size=4096)

    async def ask_do(port: int, name: str) -> dns.message.Message:
        q = dns.message.make_query(name, "A", want_dnssec=True, payload=4096)
        return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=10)

    async def go() -> None:
        async with App(res.cfg, forwarder=res, sources=False) as app:
            port = app.addresses[0].port
            try:
                big = await ask(port, f"many.{ZONE}", payload=4096)
                assert not big.flags & dns.flags.TC and len(big.answer[0]) == MANY_COUNT
                assert big.payload == 4096
                assert (await ask(port, f"www.{ZONE}", payload=4096)).payload == 4096
                app.apply_config(res.cfg.replace(max_udp_size=1232))
                cached = await ask(port, f"many.{ZONE}", payload=4096)
                assert cached.flags & dns.flags.TC and not cached.answer
                assert cached.payload == 1232
                small = await ask(port, f"www.{ZONE}", payload=4096)
                assert small.answer and small.payload == 1232
                assert (res.stats.hits, res.stats.misses) == (2, 2)
                for _ in range(2):  # a new entry (miss), then the same one cached (hit)
                    signed = await ask_do(port, f"many.{ZONE}")
                    assert signed.flags & dns.flags.TC and signed.payload == 1232
                assert (res.stats.hits, res.stats.misses) == (3, 3)
                over_tcp = await ask(port, f"many.{ZONE}", tcp=True, payload=4096)
                assert len(over_tcp.answer[0]) == MANY_COUNT
            finally:
                await res.close()

    run(go)


def test_no_upstream_but_itself_is_a_config_error(tmp_path: Any) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("search svc.cluster.local\nnameserver 127.0.0.1\n")
    with pytest.raises(ValueError, match="resolv_conf"):
        resolver(resolv_conf=str(conf), listen=["127.0.0.1:53"])
    conf.write_text("nameserver 127.0.0.1\nnameserver 192.0.2.53\n")
    res = resolver(resolv_conf=str(conf), listen=["127.0.0.1:53"])
    assert [u.name for u in res.upstreams] == ["192.0.2.53:53"]


class RefusingUpstream(asyncio.DatagramProtocol):
    """Answers every query REFUSED, as a misconfigured upstream does."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = dns.message.make_response(dns.message.from_wire(data))
        reply.set_rcode(dns.rcode.REFUSED)
        self.transport.sendto(reply.to_wire(), addr)


def test_an_upstream_answering_refused_counts_as_failed(knot: Knot) -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            RefusingUpstream, local_addr=("127.0.0.1", 0)
        )
        try:
            port_refusing = transport.get_extra_info("sockname")[1]
            res = resolver(f"127.0.0.1:{port_refusing}", knot.address)
            async with serving(res) as port:
                reply = await ask(port, f"www.{ZONE}")
                assert reply.rcode() == dns.rcode.NOERROR and reply.answer
                refusing, live = res.upstreams
                assert refusing.stats.errors == 1 and live.stats.requests == 1
                assert res._all_failing() is False
        finally:
            transport.close()

    run(go)
