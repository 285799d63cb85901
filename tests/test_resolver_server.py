"""The resolver role end to end: the real mcdns server (tests/conftest.py) with a Resolver.

The sidecar story in one process: cluster names come from the state file (with
fallback), every other name is forwarded to Knot on loopback through the cache, and
clients outside the allow-list are REFUSED.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import dns.rcode
import pytest
from conftest import DEMO_STATE, Running, make_config, needs, running
from knot import WWW_TTL, ZONE, Knot

from mcdns.resolver.resolver import Resolver

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def knot() -> Iterator[Knot]:
    needs("knotd")
    needs("knotc")
    with Knot() as k:
        yield k


@pytest.fixture(scope="module")
def sidecar(knot: Knot) -> Iterator[Running]:
    cfg = make_config(role="resolver", upstreams=[knot.address], state=str(DEMO_STATE))
    with running(cfg, forwarder=Resolver(cfg)) as srv:
        yield srv


def dig(srv: Running, *args: str) -> str:
    needs("dig")
    done = subprocess.run(
        ["dig", f"@{srv.host}", "-p", str(srv.port), "+tries=1", "+time=5", *args],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return done.stdout


def test_cluster_names_are_answered_locally_with_fallback(sidecar: Running, knot: Knot) -> None:
    before = knot.queries()
    reply = sidecar.query("serve.default.svc.cluster.local")
    assert reply.rcode() == dns.rcode.NOERROR
    assert [r.address for r in reply.answer[0]] == ["10.13.187.164"]  # the import
    assert knot.queries() == before


def test_other_names_are_forwarded_then_cached(sidecar: Running, knot: Knot) -> None:
    first = dig(sidecar, f"txt.{ZONE}", "TXT")
    assert "status: NOERROR" in first and '"hello from knot"' in first
    before = knot.queries()
    again = dig(sidecar, f"txt.{ZONE}", "TXT")
    assert '"hello from knot"' in again and " ra" in again.split("flags:")[1].split(";")[0]
    assert knot.queries() == before
    reply = sidecar.query(f"www.{ZONE}", "AAAA", use_edns=0)
    assert reply.answer[0][0].address == "2001:db8::1"
    assert 0 < reply.answer[0].ttl <= WWW_TTL


def test_nxdomain_from_upstream(sidecar: Running) -> None:
    reply = sidecar.query(f"missing.{ZONE}")
    assert reply.rcode() == dns.rcode.NXDOMAIN


def test_clients_outside_the_allow_list_are_refused(knot: Knot) -> None:
    cfg = make_config(role="resolver", upstreams=[knot.address], allow=["10.0.0.0/8"])
    resolver = Resolver(cfg)
    with running(cfg, forwarder=resolver, sources=False) as srv:
        reply = srv.query(f"www.{ZONE}")
        assert reply.rcode() == dns.rcode.REFUSED
        assert resolver.stats.misses == 0 and resolver.stats.hits == 0
