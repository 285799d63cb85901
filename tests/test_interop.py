"""What mcdns answers for the objects each multi-cluster implementation really writes.

Each fixture under ``tests/data/interop/`` is a cluster's state in the exact shapes one
implementation writes (its header cites the source files). For each: a table of expected
answers in both zones, asked over UDP and TCP; which services are degraded (only real
health problems); and the failover scenario (this cluster's pods die -> the multi-cluster
answer; they come back -> the local answer), run from a state file and through the test
API server with the real kubernetes_asyncio client.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest
import yaml
from conftest import DATA, Running, make_config, rrsets, running
from kubeapi import FakeKubeAPI
from kubeharness import running as kube_running

from mcdns import config
from mcdns.app import App

Z, CS = "svc.cluster.local.", "svc.clusterset.local."
INTEROP = DATA / "interop"
Obj = dict[str, Any]
Case = tuple[str, str, str, set[str]]  # qname, qtype, rcode, answer (zone-text RRs)


def a(name: str, *ips: str) -> set[str]:
    return {f"{name} 5 in {'aaaa' if ':' in ip else 'a'} {ip}" for ip in ips}


def ptr(reverse: str, *names: str) -> Case:
    return (reverse, "PTR", "NOERROR", {f"{reverse} 5 in ptr {n}" for n in names})


def srv(name: str, weight: int, port: int, *targets: str) -> Case:
    return (name, "SRV", "NOERROR", {f"{name} 5 in srv 0 {weight} {port} {t}"
                                     for t in targets})


def nodata(name: str, qtype: str = "A") -> Case:
    return (name, qtype, "NOERROR", set())


def nxdomain(name: str, qtype: str = "A") -> Case:
    return (name, qtype, "NXDOMAIN", set())


@dataclass(frozen=True)
class Failover:
    """This cluster's endpoints go down: every endpoint of the ``down`` slices (a
    ``slice/pod`` entry: only that pod's endpoint), then come back."""

    qname: str
    down: tuple[str, ...]
    local: set[str]
    remote: set[str]
    qtype: str = "A"


@dataclass(frozen=True)
class Impl:
    file: str
    cases: list[Case]
    failovers: list[Failover]
    degraded: set[str] = field(default_factory=set)  # services with a real problem

    def objects(self) -> list[Obj]:
        text = (INTEROP / self.file).read_text()
        return [d for d in yaml.safe_load_all(text) if d]


NGINX_MCS = f"nginx.default.{CS}"
IMPLS: dict[str, Impl] = {
    "mcs-api": Impl("mcs-api.yaml", [
        (f"nginx.default.{Z}", "A", "NOERROR", a(f"nginx.default.{Z}", "10.96.0.10")),
        (f"nginx.default.{Z}", "AAAA", "NOERROR", a(f"nginx.default.{Z}", "fd00:96::10")),
        (NGINX_MCS, "A", "NOERROR", a(NGINX_MCS, "10.96.200.7")),
        (NGINX_MCS, "AAAA", "NOERROR", a(NGINX_MCS, "fd00:96::200:7")),
        srv(f"_http._tcp.{NGINX_MCS}", 50, 80, NGINX_MCS),  # one candidate per address
        (f"db.default.{Z}", "AAAA", "NOERROR",
         a(f"db.default.{Z}", "fd00:244:1::20", "fd00:244:1::21", "fd00:10:244:2::")),
        nodata(f"db.default.{Z}", "A"),
        (f"fd00-10-244-2--0.db.default.{Z}", "AAAA", "NOERROR",
         a(f"fd00-10-244-2--0.db.default.{Z}", "fd00:10:244:2::")),
        nxdomain(f"fd00-10-244-2--.db.default.{Z}", "AAAA"),
        nxdomain(f"db-2.db.default.{Z}", "AAAA"),  # terminating: not ready
        (f"db.default.{CS}", "AAAA", "NOERROR",
         a(f"db.default.{CS}", "fd00:10:1::30", "fd00:10:1::31", "fd00:10:1::32",
           "fd00:10:1::33")),
        (f"db-0.cluster-a.east.db.default.{CS}", "AAAA", "NOERROR",
         a(f"db-0.cluster-a.east.db.default.{CS}", "fd00:10:1::30")),
        nodata(f"cluster-a.east.db.default.{CS}", "AAAA"),  # MUST NOT resolve
        nodata(f"east.db.default.{CS}", "AAAA"),
        srv(f"_pg._tcp.db.default.{CS}", 25, 5432,
            *(f"db-{i}.cluster-a.east.db.default.{CS}" for i in range(4))),
        nodata(f"quiet.{CS}"),
        nxdomain(f"nosuch.{CS}"),
        ptr("7.200.96.10.in-addr.arpa.", f"derived-iuq6ea9f4j.default.{Z}"),
        ("dns-version.clusterset.local.", "TXT", "NOERROR",
         {'dns-version.clusterset.local. 5 in txt "1.0.0"'}),
    ], [
        # one of two pods down: both of its addresses go; 1 pod < min-ready 2
        Failover(f"nginx.default.{Z}",
                 ("nginx-4xk2p/nginx-5d9f7c8b6-fghij", "nginx-9p2mw/nginx-5d9f7c8b6-fghij",
                  "imported-nginx-cluster-b-west-q9z8r/nginx-5d9f7c8b6-fghij"),
                 a(f"nginx.default.{Z}", "10.96.0.10"), a(f"nginx.default.{Z}", "10.96.200.7")),
    ]),
    "lighthouse": Impl("lighthouse.yaml", [
        (f"nginx.default.{Z}", "A", "NOERROR", a(f"nginx.default.{Z}", "10.96.20.20")),
        (NGINX_MCS, "A", "NOERROR", a(NGINX_MCS, "10.96.10.10", "10.96.20.20")),
        srv(f"_http._tcp.{NGINX_MCS}", 50, 80, NGINX_MCS),
        (f"orders.default.{Z}", "A", "NOERROR", a(f"orders.default.{Z}", "10.96.10.30")),
        (f"orders.default.{CS}", "A", "NOERROR", a(f"orders.default.{CS}", "10.96.10.30")),
        srv(f"_grpc._tcp.orders.default.{Z}", 100, 9090, f"orders.default.{Z}"),
        nodata(f"stock.default.{Z}"),  # the import exists, no cluster is ready
        nodata(f"stock.default.{CS}"),
        (f"db.default.{Z}", "A", "NOERROR", a(f"db.default.{Z}", "10.2.3.10", "10.2.3.11")),
        (f"db.default.{CS}", "A", "NOERROR",
         a(f"db.default.{CS}", "10.44.1.5", "10.44.2.7", "10.2.3.10", "10.2.3.11")),
        (f"db-1.cluster1.db.default.{CS}", "A", "NOERROR",
         a(f"db-1.cluster1.db.default.{CS}", "10.44.2.7")),
        (f"db-0.cluster2.db.default.{CS}", "A", "NOERROR",
         a(f"db-0.cluster2.db.default.{CS}", "10.2.3.10")),
        srv(f"_mysql._tcp.db.default.{CS}", 25, 3306,
            *(f"db-{i}.cluster{c}.db.default.{CS}" for i in (0, 1) for c in (1, 2))),
        ptr("20.20.96.10.in-addr.arpa.", f"nginx.default.{Z}"),
        ptr("10.10.96.10.in-addr.arpa.", NGINX_MCS),
        ptr("10.3.2.10.in-addr.arpa.", f"db-0.db.default.{Z}"),
        ptr("5.1.44.10.in-addr.arpa.", f"db-0.cluster1.db.default.{CS}"),
        nxdomain(f"nginx.submariner-k8s-broker.{CS}"),  # the broker's copy serves nothing
    ], [
        Failover(f"nginx.default.{Z}", ("nginx-j8w5d", "nginx-m4d9p"),
                 a(f"nginx.default.{Z}", "10.96.20.20"), a(f"nginx.default.{Z}", "10.96.10.10")),
        Failover(f"db.default.{Z}", ("db-h6kcd", "db-x2v7n"),
                 a(f"db.default.{Z}", "10.2.3.10", "10.2.3.11"),
                 a(f"db.default.{Z}", "10.44.1.5", "10.44.2.7")),
    ], degraded={"stock"}),
    "cilium": Impl("cilium.yaml", [
        (f"nginx.default.{Z}", "A", "NOERROR", a(f"nginx.default.{Z}", "10.96.44.7")),
        (NGINX_MCS, "A", "NOERROR", a(NGINX_MCS, "10.96.120.15")),
        ptr("15.120.96.10.in-addr.arpa.", f"derived-iuq6ea9f4j.default.{Z}"),
        (f"web.default.{Z}", "A", "NOERROR", a(f"web.default.{Z}", "10.96.44.8")),
        (f"db.default.{Z}", "A", "NOERROR", a(f"db.default.{Z}", "10.2.3.10")),
        (f"db.default.{CS}", "A", "NOERROR",
         a(f"db.default.{CS}", "10.1.3.10", "10.1.3.11", "10.2.3.10")),
        (f"db-1.cluster1.db.default.{CS}", "A", "NOERROR",
         a(f"db-1.cluster1.db.default.{CS}", "10.1.3.11")),
        (f"db-0.cluster2.db.default.{CS}", "A", "NOERROR",
         a(f"db-0.cluster2.db.default.{CS}", "10.2.3.10")),
        # the derived Service is a Service too: both cluster-zone names, no clusterset one
        ptr("10.3.2.10.in-addr.arpa.", f"db-0.db.default.{Z}",
            f"db-0.derived-t22juh76sd.default.{Z}"),
        (f"ipfam.default.{Z}", "A", "NOERROR", a(f"ipfam.default.{Z}", "10.96.44.9")),
    ], [
        Failover(f"nginx.default.{Z}", ("nginx-7xk2p", "derived-iuq6ea9f4j-7xk2p"),
                 a(f"nginx.default.{Z}", "10.96.44.7"), a(f"nginx.default.{Z}", "10.96.120.15")),
        # cluster1's web endpoints are down too: nothing better than the local answer
        Failover(f"web.default.{Z}", ("web-5gh7j", "derived-gapqrqeg1j-5gh7j"),
                 a(f"web.default.{Z}", "10.96.44.8"), a(f"web.default.{Z}", "10.96.44.8")),
        Failover(f"db.default.{Z}", ("db-6fj2k", "derived-t22juh76sd-6fj2k"),
                 a(f"db.default.{Z}", "10.2.3.10"),
                 a(f"db.default.{Z}", "10.1.3.10", "10.1.3.11")),
    ], degraded={"ipfam"}),
    "karmada-import": Impl("karmada-import.yaml", [
        (f"serve.default.{Z}", "A", "NOERROR", a(f"serve.default.{Z}", "10.13.0.20")),
        (f"serve.default.{CS}", "A", "NOERROR", a(f"serve.default.{CS}", "10.13.0.57")),
        srv(f"_http._tcp.serve.default.{CS}", 100, 80, f"serve.default.{CS}"),
        (f"derived-serve.default.{Z}", "A", "NOERROR",
         a(f"derived-serve.default.{Z}", "10.13.0.57")),
        ptr("57.0.13.10.in-addr.arpa.", f"derived-serve.default.{Z}"),
        (f"db.default.{Z}", "A", "NOERROR", a(f"db.default.{Z}", "10.3.3.10")),
        (f"db.default.{CS}", "A", "NOERROR", a(f"db.default.{CS}", "10.10.3.10", "10.10.3.11")),
        (f"db-1.member1.db.default.{CS}", "A", "NOERROR",
         a(f"db-1.member1.db.default.{CS}", "10.10.3.11")),
    ], [
        Failover(f"serve.default.{Z}", ("serve-q8v2n",),
                 a(f"serve.default.{Z}", "10.13.0.20"), a(f"serve.default.{Z}", "10.13.0.57")),
        Failover(f"db.default.{Z}", ("db-8s7d6",), a(f"db.default.{Z}", "10.3.3.10"),
                 a(f"db.default.{Z}", "10.10.3.10", "10.10.3.11")),
    ]),
    "karmada-mcs": Impl("karmada-mcs.yaml", [
        (f"serve.default.{Z}", "A", "NOERROR", a(f"serve.default.{Z}", "10.13.0.88")),
        (f"db.default.{Z}", "A", "NOERROR",
         a(f"db.default.{Z}", "10.3.3.10", "10.20.3.10", "10.20.3.11")),
        (f"db-0.db.default.{Z}", "A", "NOERROR", a(f"db-0.db.default.{Z}", "10.3.3.10")),
        (f"10-20-3-11.db.default.{Z}", "A", "NOERROR",
         a(f"10-20-3-11.db.default.{Z}", "10.20.3.11")),
        nxdomain(f"serve.default.{CS}"),  # no ServiceImport in this flow
        nodata(f"default.{CS}"),
        (f"cart.default.{Z}", "A", "NOERROR", a(f"cart.default.{Z}", "10.13.0.90")),
    ], [
        # the consumer's own pods die: the dispatched ones answer (as CoreDNS would)
        Failover(f"db.default.{Z}", ("db-8s7d6",),
                 a(f"db.default.{Z}", "10.3.3.10", "10.20.3.10", "10.20.3.11"),
                 a(f"db.default.{Z}", "10.20.3.10", "10.20.3.11")),
        # kube-proxy serves the dispatched endpoints behind the same ClusterIP
        Failover(f"serve.default.{Z}", ("serve-q8v2n",),
                 a(f"serve.default.{Z}", "10.13.0.88"), a(f"serve.default.{Z}", "10.13.0.88")),
    ]),
    "gke": Impl("gke.yaml", [
        (f"nginx.default.{Z}", "A", "NOERROR", a(f"nginx.default.{Z}", "10.96.50.10")),
        (NGINX_MCS, "A", "NOERROR", a(NGINX_MCS, "10.0.5.9")),
        ptr("9.5.0.10.in-addr.arpa.", f"gke-mcs-ik7gi8ughg.default.{Z}"),
    ], [
        Failover(f"nginx.default.{Z}", ("nginx-b7c8d",),
                 a(f"nginx.default.{Z}", "10.96.50.10"), a(f"nginx.default.{Z}", "10.0.5.9")),
    ]),
}


def write_state(path: Path, objs: list[Obj]) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    tmp.replace(path)  # one atomic change for the poller
    return path


def pods_down(objs: list[Obj], down: tuple[str, ...]) -> list[Obj]:
    """``objs`` with the endpoints named by ``down`` not ready (and not serving)."""
    out = copy.deepcopy(objs)
    for obj in out:
        if obj.get("kind") != "EndpointSlice":
            continue
        for entry in down:
            slice_name, _, pod = entry.partition("/")
            if obj["metadata"]["name"] != slice_name:
                continue
            for ep in obj.get("endpoints") or []:
                if not pod or (ep.get("targetRef") or {}).get("name") == pod:
                    ep["conditions"] = {"ready": False, "serving": False, "terminating": False}
    return out


def changed(objs: list[Obj], before: list[Obj]) -> list[Obj]:
    return [o for o, b in zip(objs, before, strict=True) if o != b]


# ---- the answer tables ---------------------------------------------------------------------

@pytest.fixture(scope="module", params=list(IMPLS))
def impl_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[str, Running]]:
    name = request.param
    path = write_state(tmp_path_factory.mktemp(name) / "state.yaml", IMPLS[name].objects())
    with running(make_config(state=str(path))) as srv:
        yield name, srv


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_answers(impl_server: tuple[str, Running], tcp: bool) -> None:
    name, srv = impl_server
    wrong = []
    for qname, qtype, rcode, answer in IMPLS[name].cases:
        msg = srv.query(qname, qtype, tcp=tcp)
        got = (dns.rcode.to_text(msg.rcode()), rrsets(msg.answer))
        if got != (rcode, answer) or not msg.flags & dns.flags.AA:
            wrong.append(f"{qname} {qtype}: got {got}, want {(rcode, answer)}")
        if not answer and rcode in ("NOERROR", "NXDOMAIN") and len(msg.authority) != 1:
            wrong.append(f"{qname} {qtype}: negative answer without the zone's SOA")
    assert not wrong, "\n".join(wrong)


def test_only_real_problems_are_degraded(impl_server: tuple[str, Running]) -> None:
    name, srv = impl_server
    decisions = srv.call(lambda: dict(srv.app.compiler.decisions))
    degraded = {key[1] for key, d in decisions.items() if d.degraded}
    assert degraded == IMPLS[name].degraded


# ---- failover from a state file -----------------------------------------------------------

def wait_answer(srv: Running, qname: str, qtype: str, want: set[str],
                timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = rrsets(srv.query(qname, qtype).answer)
        if got == want:
            return
        assert time.monotonic() < deadline, f"{qname}: got {got}, want {want}"
        time.sleep(0.05)


@pytest.mark.parametrize("impl", list(IMPLS))
def test_failover_from_state_file(impl: str, tmp_path: Path) -> None:
    spec = IMPLS[impl]
    objs = spec.objects()
    path = write_state(tmp_path / "state.yaml", objs)
    with running(make_config(state=str(path))) as srv:
        for f in spec.failovers:
            wait_answer(srv, f.qname, f.qtype, f.local)
            write_state(path, pods_down(objs, f.down))
            wait_answer(srv, f.qname, f.qtype, f.remote)
            write_state(path, objs)
            wait_answer(srv, f.qname, f.qtype, f.local)


# ---- failover through the test API server -------------------------------------------------

async def ask(app: App, qname: str, qtype: str) -> set[str]:
    addr = app.addresses[0]
    reply = await dns.asyncquery.udp(dns.message.make_query(qname, qtype), addr.host,
                                     port=addr.port, timeout=2)
    return rrsets(reply.answer)


async def until_answer(app: App, qname: str, qtype: str, want: set[str],
                       timeout: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got = await ask(app, qname, qtype)
    while got != want:
        assert loop.time() < deadline, f"{qname}: got {got}, want {want}"
        await asyncio.sleep(0.02)
        got = await ask(app, qname, qtype)


@pytest.mark.parametrize("impl", list(IMPLS))
def test_failover_through_the_api_server(impl: str) -> None:
    spec = IMPLS[impl]
    objs = spec.objects()
    api = FakeKubeAPI()
    for obj in objs:
        api.apply(obj)

    async def go() -> None:
        async with kube_running(api) as r:
            cfg = config.build({"listen": ["127.0.0.1:0"], "http": None})
            async with App(cfg, store=r.store, sources=False) as app:
                await r.watching()
                for qname, qtype, _rcode, answer in spec.cases:  # the same answers
                    assert await ask(app, qname, qtype) == answer, qname
                for f in spec.failovers:
                    await until_answer(app, f.qname, f.qtype, f.local)
                    for obj in changed(pods_down(objs, f.down), objs):
                        api.apply(obj)
                    await until_answer(app, f.qname, f.qtype, f.remote)
                    for obj in changed(objs, pods_down(objs, f.down)):
                        api.apply(obj)
                    await until_answer(app, f.qname, f.qtype, f.local)

    asyncio.run(asyncio.wait_for(go(), 60))


# ---- names that cannot be encoded ----------------------------------------------------------

def test_srv_targets_over_255_octets_are_left_out(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A long hostname, a long cluster id, a long service and namespace:
    ``<hostname>.<cluster>.<svc>.<ns>.svc.clusterset.local`` can pass 255 octets. That
    target is left out (and logged once); the others, and the reply, stay valid."""
    from statebuild import endpoints, namespace, service_import, write

    svc, ns = "s" * 63, "n" * 63
    cluster = "c" * 60
    long_host = "h" * 63
    objs = [namespace(ns), service_import(svc, ns=ns, headless=True),
            endpoints("", ns=ns, mcs=svc, cluster=cluster, name="long-slice",
                      ready=["10.1.0.1", "10.1.0.2"], hostnames={"10.1.0.2": long_host})]
    path = write(tmp_path / "state.yaml", objs)
    base = f"{svc}.{ns}.{CS}"
    short_target = f"10-1-0-1.{cluster}.{base}"
    assert len(short_target) <= 254 < len(f"{long_host}.{cluster}.{base}")
    with caplog.at_level("WARNING", logger="mcdns.answers"):
        with running(make_config(state=str(path))) as srv:
            for tcp in (False, True):
                msg = srv.query(f"_http._tcp.{base}", "SRV", tcp=tcp, use_edns=0,
                                payload=1232)  # parses: well formed
                assert rrsets(msg.answer) == {
                    f"_http._tcp.{base} 5 in srv 0 100 8080 {short_target}"}
                assert rrsets(msg.additional) == a(short_target, "10.1.0.1")
                assert rrsets(srv.query(base, "A", tcp=tcp).answer) == a(
                    base, "10.1.0.1", "10.1.0.2")
                cluster_zone = f"_http._tcp.{svc}.{ns}.{Z}"  # the import's cluster-zone SRV
                assert rrsets(srv.query(cluster_zone, "SRV", tcp=tcp).answer) == {
                    f"{cluster_zone} 5 in srv 0 100 8080 {short_target}"}
    too_long = [r.getMessage() for r in caplog.records if "over 255 octets" in r.getMessage()]
    assert len(too_long) == 1 and long_host in too_long[0], too_long
