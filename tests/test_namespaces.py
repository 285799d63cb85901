"""``namespaces`` (watch only some namespaces) only where it is safe.

Behind CoreDNS (role stub) every namespace's names reach mcdns, so a filter would make
the names of the namespaces it does not watch NXDOMAIN (``kube-dns.kube-system``...):
the stub role refuses the key at load. In the resolver role mcdns is a pod's own
resolver: it answers the namespaces it watches and forwards the names of every other
namespace upstream (Services, endpoints, SRV, pods, the namespace names themselves, in
cluster.local and clusterset.local), never NXDOMAIN.

End to end: the fake API server with the real client, the real server (App), Knot as
the real upstream (standing in for the cluster's CoreDNS), dnspython over 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest
from conftest import DEMO_STATE, ROOT, needs
from conftest import running as serving
from knot import Knot
from kubeapi import FakeKubeAPI, endpointslice, namespace, service, serviceimport
from kubeharness import running

from mcdns import config
from mcdns.app import App
from mcdns.resolver.resolver import Resolver

pytestmark = pytest.mark.timeout(60)


def mcdns(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcdns", *args], capture_output=True,
                          text=True, timeout=30, cwd=ROOT)


# ---- the stub role refuses it -------------------------------------------------------

def test_stub_role_refuses_namespaces(tmp_path: Path) -> None:
    path = tmp_path / "mcdns.yaml"
    path.write_text("namespaces: [default]\nlisten: ['127.0.0.1:0']\nhttp: null\n")
    flag = tmp_path / "plain.yaml"
    flag.write_text("listen: ['127.0.0.1:0']\nhttp: null\n")
    for args in (["check-config", str(path)], ["serve", "--config", str(path)],
                 ["serve", "--config", str(flag), "--namespace", "default"],
                 ["serve", "--config", str(flag), "--role", "stub", "--namespace", "shop"]):
        done = mcdns(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
        assert "config key 'namespaces'" in done.stderr, done.stderr
        assert "resolver role only" in done.stderr and "NXDOMAIN" in done.stderr


def test_resolver_role_accepts_namespaces(tmp_path: Path) -> None:
    path = tmp_path / "mcdns.yaml"
    path.write_text("role: resolver\nnamespaces: [default, shop]\n")
    done = mcdns("check-config", str(path))
    assert done.returncode == 0, done.stderr
    assert config.load(path).namespaces == ("default", "shop")


# ---- the resolver role forwards the names of namespaces it does not watch -------------

LOCAL_IP = "10.96.0.10"
CLUSTER_TEXT = """$ORIGIN cluster.local.
$TTL 30
@ 3600 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5
@ IN NS ns.dns
ns IN A 127.0.0.1
ns.dns IN A 127.0.0.1
kube-dns.kube-system.svc IN A 10.96.0.53
db.other.svc IN A 10.96.0.12
_http._tcp.db.other.svc IN SRV 0 100 80 db.other.svc.cluster.local.
10-0-0-1.other.pod IN A 10.0.0.1
serve.default.svc IN A 192.0.2.99
cart.shop.svc IN A 192.0.2.7
"""
CLUSTERSET_TEXT = """$ORIGIN clusterset.local.
$TTL 30
@ 3600 IN SOA ns.dns.clusterset.local. hostmaster.clusterset.local. 1 7200 1800 86400 5
@ IN NS ns.dns
ns IN A 127.0.0.1
ns.dns IN A 127.0.0.1
db.other.svc IN A 10.13.0.12
"""


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[Knot, Knot]]:
    """The cluster's DNS as the resolver's upstreams: one server per zone (a REFUSED
    from the first sends a query on to the second)."""
    needs("knotd")
    needs("knotc")
    with Knot("cluster.local", CLUSTER_TEXT) as zone, \
            Knot("clusterset.local", CLUSTERSET_TEXT) as clusterset:
        yield zone, clusterset


def cluster() -> FakeKubeAPI:
    api = FakeKubeAPI()
    for ns in ("default", "other", "kube-system"):
        api.apply(namespace(ns))
    api.apply(service("serve", LOCAL_IP))
    api.apply(endpointslice("serve-abc", "serve", ["10.0.0.1"]))
    api.apply(serviceimport("serve", ["10.13.187.164"]))
    api.apply(service("db", "10.96.0.12", ns="other"))
    api.apply(service("kube-dns", "10.96.0.53", ns="kube-system"))
    return api


async def ask(app: App, name: str, rdtype: str = "A") -> dns.message.Message:
    addr = app.addresses[0]
    return await dns.asyncquery.udp(dns.message.make_query(name, rdtype), addr.host,
                                    port=addr.port, timeout=3)


def rdatas(msg: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in msg.answer for rd in rrset]


def test_resolver_forwards_names_of_namespaces_it_does_not_watch(
        upstreams: tuple[Knot, Knot]) -> None:
    zone_knot, set_knot = upstreams

    async def go() -> None:
        async with running(cluster(), namespaces=("default",)) as r:
            cfg = config.build({"role": "resolver", "namespaces": ["default"],
                                "listen": ["127.0.0.1:0"], "http": None,
                                "service_cidrs": ["10.96.0.0/12"],
                                "upstreams": [zone_knot.address, set_knot.address]})
            async with App(cfg, store=r.store, sources=False, forwarder=Resolver(cfg)) as app:
                await r.synced()
                assert set(r.store.services) == {("default", "serve")}  # default only
                # the watched namespace: mcdns's own answers, the upstream is not asked
                before = zone_knot.queries()
                msg = await ask(app, "serve.default.svc.cluster.local.")
                assert rdatas(msg) == [LOCAL_IP] and msg.flags & dns.flags.AA
                msg = await ask(app, "nosuch.default.svc.cluster.local.")
                assert msg.rcode() == dns.rcode.NXDOMAIN and msg.flags & dns.flags.AA
                msg = await ask(app, "default.svc.cluster.local.")
                assert msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA
                assert (await ask(app, "cluster.local.", "SOA")).flags & dns.flags.AA
                assert zone_knot.queries() == before
                # every other namespace: the upstream's answers, never mcdns's NXDOMAIN
                for name, rdtype, want in [
                    ("kube-dns.kube-system.svc.cluster.local.", "A", ["10.96.0.53"]),
                    ("db.other.svc.cluster.local.", "A", ["10.96.0.12"]),
                    ("DB.Other.svc.cluster.local.", "A", ["10.96.0.12"]),
                    ("_http._tcp.db.other.svc.cluster.local.", "SRV",
                     ["0 100 80 db.other.svc.cluster.local."]),
                    ("10-0-0-1.other.pod.cluster.local.", "A", ["10.0.0.1"]),
                    ("db.other.svc.clusterset.local.", "A", ["10.13.0.12"]),
                ]:
                    msg = await ask(app, name, rdtype)
                    assert msg.rcode() == dns.rcode.NOERROR, (name, msg)
                    assert rdatas(msg) == want, name
                    assert not msg.flags & dns.flags.AA, name  # forwarded
                # the namespace-level names, and a name Knot does not have: Knot's NODATA
                # and NXDOMAIN (its SOA), not mcdns's
                for name, rcode in [("other.svc.cluster.local.", dns.rcode.NOERROR),
                                    ("kube-system.svc.cluster.local.", dns.rcode.NOERROR),
                                    ("other.svc.clusterset.local.", dns.rcode.NOERROR),
                                    ("nosuch.other.svc.cluster.local.", dns.rcode.NXDOMAIN)]:
                    msg = await ask(app, name)
                    assert msg.rcode() == rcode, name
                    assert not msg.flags & dns.flags.AA, name
                    assert msg.authority[0][0].serial == 1, name  # Knot's zone serial
                assert zone_knot.queries() > before
                # reverse names: mcdns does not know the other namespaces' addresses, so it
                # claims no reverse zone; it answers the PTRs it has and forwards the rest
                msg = await ask(app, "10.0.96.10.in-addr.arpa.", "PTR")
                assert rdatas(msg) == ["serve.default.svc.cluster.local."]
                before = zone_knot.queries()
                msg = await ask(app, "12.0.96.10.in-addr.arpa.", "PTR")  # other/db's
                assert msg.rcode() != dns.rcode.NXDOMAIN and not msg.flags & dns.flags.AA
                assert zone_knot.queries() > before

    asyncio.run(asyncio.wait_for(go(), 30))


def test_a_state_file_holds_every_namespace_but_the_filter_still_forwards(
        upstreams: tuple[Knot, Knot]) -> None:
    """The demo state file has Services in default and shop; with namespaces [default]
    the shop ones get no answers of their own (as if not watched): their names are
    forwarded however they are asked, never answered from the file."""
    zone_knot, set_knot = upstreams
    cfg = config.build({"role": "resolver", "namespaces": ["default"], "state": str(DEMO_STATE),
                        "listen": ["127.0.0.1:0"], "http": None,
                        "upstreams": [zone_knot.address, set_knot.address]})
    with serving(cfg, forwarder=Resolver(cfg)) as srv:
        web = srv.query("web.default.svc.cluster.local.")
        assert [rd.to_text() for rd in web.answer[0]] == ["10.96.20.20"]
        for edns in (-1, 0):  # the plain hot path, and the one with an OPT record
            msg = srv.query("cart.shop.svc.cluster.local.", use_edns=edns)
            assert [rd.to_text() for rd in msg.answer[0]] == ["192.0.2.7"]  # Knot's
            assert not msg.flags & dns.flags.AA
