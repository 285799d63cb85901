"""The record builder (mcdns.answers.records.build) alone: one service's decision in,
every name and record it owns (both zones, and the reverse zones) out.

Why this exists: the end-to-end tests see these records through the table and the
server, one query at a time, so a missing or extra record only shows when some test
happens to ask for it. Here the whole record set of a service is compared with what
the naming rules give (CoreDNS's kubernetes plugin for the cluster zone, the MCS DNS
specification for the clusterset zone), so a name added or lost anywhere fails a case.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from mcdns.answers import rdata as rd
from mcdns.answers.health import IMPORT, LOCAL, decide
from mcdns.answers.records import Records, Zones, build, dashed
from mcdns.objects.model import (
    Endpoint,
    EndpointSlice,
    Origin,
    Port,
    Service,
    ServiceImport,
    Slim,
)
from mcdns.proto import T_A, T_AAAA, T_CNAME, T_PTR, T_SRV
from mcdns.state.store import Store

ZONES = Zones("cluster.local", "clusterset.local")
NS, NAME = "default", "web"
BASE = f"{NAME}.{NS}.svc.cluster.local."
CBASE = f"{NAME}.{NS}.svc.clusterset.local."
HTTP = Port("http", 80, "TCP")
PG = Port("pg", 5432, "TCP")
DNSU = Port("dns", 53, "UDP")
NONAME = Port("", 9000, "TCP")

Line = tuple[str, str, str]  # (owner name, type mnemonic, rdata text)


def svc(type: str = "ClusterIP", ips: tuple[str, ...] = ("10.96.0.1",),
        ports: tuple[Port, ...] = (HTTP,), external: str = "") -> Service:
    if type != "ClusterIP":
        ips = ()
    return Service(NS, NAME, type, ips[0] if ips else "", external, ports, None, None,
                   tuple(ips[1:]))


def imp(type: str = "ClusterSetIP", ips: tuple[str, ...] = ("10.13.0.1",),
        ports: tuple[Port, ...] = (HTTP,)) -> ServiceImport:
    return ServiceImport(NS, NAME, type, ips if type == "ClusterSetIP" else (), ports, None,
                         None)


def ep(ip: str, hostname: str = "", ready: bool = True) -> Endpoint:
    return Endpoint(ip, hostname, ready)


def local(*eps: Endpoint, family: str = "IPv4", ports: tuple[Port, ...] = (HTTP,),
          name: str = "") -> EndpointSlice:
    return EndpointSlice(NS, name or f"{NAME}-local-{family.lower()}", NAME, "", "",
                         Origin.OWN, family, ports, eps)


def remote(cluster: str, *eps: Endpoint, family: str = "IPv4",
           ports: tuple[Port, ...] = (HTTP,), origin: Origin = Origin.IMPORTED
           ) -> EndpointSlice:
    return EndpointSlice(NS, f"{NAME}-{cluster or 'none'}-{family.lower()}", "", NAME,
                         cluster, origin, family, ports, eps)


# ---- expected records, from the naming rules ----------------------------------------------


def a(name: str, ip: str) -> Line:
    return (name, "AAAA" if ":" in ip else "A", ip)


def ptr(ip: str, name: str) -> Line:
    return (ipaddress.ip_address(ip).reverse_pointer + ".", "PTR", name)


def srv(name: str, weight: int, port: int, target: str) -> Line:
    return (name, "SRV", f"0 {weight} {port} {target}")


def port_name(p: Port, base: str) -> str:
    return f"_{p.name}._{p.protocol.lower()}.{base}"


def lines(recs: Records) -> set[Line]:
    """Every record as (name, type, rdata text), read back with dnspython."""
    out: set[Line] = set()
    for name, types in recs.items():
        for t, rds in types.items():
            for x in rds:
                rdtype = dns.rdatatype.RdataType.make(t)
                r = dns.rdata.from_wire(dns.rdataclass.IN, rdtype, x, 0, len(x))
                out.add((name, dns.rdatatype.to_text(rdtype), r.to_text()))
    return out


def decided(objs: list[Slim], cluster_id: str = "", policy: str = "local-first",
            min_ready: int = 1) -> Records:
    store = Store()
    for obj in objs:
        store.upsert(obj)
    store.commit()
    return build(decide(store, NS, NAME, policy, min_ready, cluster_id), ZONES)


def cluster_ip(base: str, ips: tuple[str, ...], ports: tuple[Port, ...],
               ptrs: bool = True) -> set[Line]:
    """A ClusterIP name: an address and (in the cluster and clusterset zones) a PTR per
    IP, an SRV per port to the name itself (weight 100/n, n = addresses x ports of the
    name, CoreDNS's count), and ``_port._proto`` SRV names for named ports."""
    out = {a(base, ip) for ip in ips}
    if ptrs:
        out |= {ptr(ip, base) for ip in ips}
    n_base = len(ips) * len(ports)
    out |= {srv(base, max(1, 100 // n_base), p.port, base) for p in ports}
    for p in ports:
        if p.name:
            out.add(srv(port_name(p, base), max(1, 100 // len(ips)), p.port, base))
    return out


def endpoint_names(base: str, slices: list[tuple[list[tuple[str, str]], tuple[Port, ...]]]
                   ) -> set[Line]:
    """The endpoint names of a Service with ready endpoints: ``<label>.<svc>`` with an
    address, a PTR and an SRV per port to the name itself."""
    out: set[Line] = set()
    for eps, ports in slices:
        for ip, label in eps:
            name = f"{label}.{base}"
            out |= {a(name, ip), ptr(ip, name)}
            out |= {srv(name, 100, p.port, name) for p in ports}
    return out


@dataclass
class Case:
    """A store for default/web, and the service's whole record set."""

    name: str
    objs: list[Slim]
    want: set[Line]
    choice: str = LOCAL
    cluster_id: str = ""
    absent: set[str] = field(default_factory=set)  # names that must not be there


HL_EPS = [("10.244.1.1", "db-0"), ("10.244.1.2", "10-244-1-2")]
CL = f"member1.{CBASE}"

CASES: list[Case] = [
    Case("clusterip-one-port", [svc()], cluster_ip(BASE, ("10.96.0.1",), (HTTP,))),
    Case("clusterip-two-ports", [svc(ports=(HTTP, DNSU))],
         cluster_ip(BASE, ("10.96.0.1",), (HTTP, DNSU))
         | {srv(f"_dns._udp.{BASE}", 100, 53, BASE)}),
    Case("clusterip-unnamed-port", [svc(ports=(NONAME,))],
         cluster_ip(BASE, ("10.96.0.1",), (NONAME,)), absent={f"_._tcp.{BASE}"}),
    Case("clusterip-no-ports", [svc(ports=())],
         {a(BASE, "10.96.0.1"), ptr("10.96.0.1", BASE)}),
    Case("clusterip-dual-stack", [svc(ips=("10.96.0.1", "fd00::1"))],
         cluster_ip(BASE, ("10.96.0.1", "fd00::1"), (HTTP,))),
    Case("clusterip-with-ready-endpoints",
         [svc(), local(ep("10.244.0.1"), ep("10.244.0.2", ready=False))],
         cluster_ip(BASE, ("10.96.0.1",), (HTTP,))
         | endpoint_names(BASE, [([("10.244.0.1", "10-244-0-1")], (HTTP,))]),
         absent={f"10-244-0-2.{BASE}"}),
    Case("headless-hostname-and-dashed",
         [svc(type="Headless", ports=(PG,)),
          local(ep("10.244.1.1", "db-0"), ep("10.244.1.2"), ports=(PG,))],
         {a(BASE, "10.244.1.1"), a(BASE, "10.244.1.2"),
          srv(BASE, 50, 5432, f"db-0.{BASE}"), srv(BASE, 50, 5432, f"10-244-1-2.{BASE}"),
          srv(port_name(PG, BASE), 50, 5432, f"db-0.{BASE}"),
          srv(port_name(PG, BASE), 50, 5432, f"10-244-1-2.{BASE}")}
         | endpoint_names(BASE, [(HL_EPS, (PG,))])),
    Case("headless-ipv6-ending-in-colons",
         [svc(type="Headless", ports=(NONAME,)),
          local(ep("fd00:10:244:2::"), family="IPv6", ports=(NONAME,))],
         {a(BASE, "fd00:10:244:2::"), srv(BASE, 100, 9000, f"fd00-10-244-2--0.{BASE}")}
         | endpoint_names(BASE, [([("fd00:10:244:2::", "fd00-10-244-2--0")], (NONAME,))])),
    Case("headless-no-ready-endpoint", [svc(type="Headless"), local(ep("10.244.0.1",
                                                                     ready=False))],
         set(), absent={BASE}),
    Case("external-name", [svc(type="ExternalName", external="ext.example.com")],
         {(BASE, "CNAME", "ext.example.com.")}),
    Case("external-name-ip", [svc(type="ExternalName", external="192.0.2.10")], set(),
         absent={BASE}),
    Case("import-only-clustersetip", [imp()], cluster_ip(BASE, ("10.13.0.1",), (HTTP,),
                                                         ptrs=False)
         | cluster_ip(CBASE, ("10.13.0.1",), (HTTP,)), choice=IMPORT),
    Case("local-chosen-clusterset-still-named",
         [svc(), local(ep("10.244.0.1")), imp()],
         cluster_ip(BASE, ("10.96.0.1",), (HTTP,))
         | endpoint_names(BASE, [([("10.244.0.1", "10-244-0-1")], (HTTP,))])
         | cluster_ip(CBASE, ("10.13.0.1",), (HTTP,))),
    Case("fallback-to-clustersetip",
         [svc(), local(ep("10.244.0.1", ready=False)), imp()],
         cluster_ip(BASE, ("10.13.0.1",), (HTTP,), ptrs=False)
         | cluster_ip(CBASE, ("10.13.0.1",), (HTTP,)), choice=IMPORT),
    Case("headless-import-hostname",
         [imp(type="Headless"), remote("member1", ep("10.10.1.3", "pod-a"))],
         {a(BASE, "10.10.1.3"), srv(BASE, 100, 80, f"pod-a.{CL}"),
          srv(port_name(HTTP, BASE), 100, 80, f"pod-a.{CL}"),
          a(CBASE, "10.10.1.3"), a(f"pod-a.{CL}", "10.10.1.3"),
          ptr("10.10.1.3", f"pod-a.{CL}"), srv(CBASE, 100, 80, f"pod-a.{CL}"),
          srv(port_name(HTTP, CBASE), 100, 80, f"pod-a.{CL}")}, choice=IMPORT),
    Case("headless-import-dashed",
         [imp(type="Headless", ports=()), remote("member1", ep("10.10.1.4"), ports=())],
         {a(BASE, "10.10.1.4"), a(CBASE, "10.10.1.4"), a(f"10-10-1-4.{CL}", "10.10.1.4"),
          ptr("10.10.1.4", f"10-10-1-4.{CL}")}, choice=IMPORT),
    Case("headless-import-own-cluster-named-by-cluster-id",
         [svc(type="Headless"), local(ep("10.244.0.1", "web-0")), imp(type="Headless"),
          remote("", ep("10.244.0.1", "web-0"), origin=Origin.MIRROR),
          remote("west", ep("10.20.0.1", "web-0"))],
         # local chosen: the cluster zone answers this cluster's endpoints ...
         {a(BASE, "10.244.0.1"), srv(BASE, 100, 80, f"web-0.{BASE}"),
          srv(port_name(HTTP, BASE), 100, 80, f"web-0.{BASE}")}
         | endpoint_names(BASE, [([("10.244.0.1", "web-0")], (HTTP,))])
         # ... the clusterset zone every cluster's, each under its cluster id
         | {a(CBASE, "10.244.0.1"), a(CBASE, "10.20.0.1"),
            a(f"web-0.east.{CBASE}", "10.244.0.1"), a(f"web-0.west.{CBASE}", "10.20.0.1"),
            ptr("10.20.0.1", f"web-0.west.{CBASE}"),
            srv(CBASE, 50, 80, f"web-0.east.{CBASE}"), srv(CBASE, 50, 80, f"web-0.west.{CBASE}"),
            srv(port_name(HTTP, CBASE), 50, 80, f"web-0.east.{CBASE}"),
            srv(port_name(HTTP, CBASE), 50, 80, f"web-0.west.{CBASE}"),
            # the pod's address is named in both zones: the cluster zone's name wins
            ptr("10.244.0.1", f"web-0.{BASE}")},
         cluster_id="east"),
    Case("headless-import-slice-without-cluster-has-no-endpoint-name",
         [imp(type="Headless"), remote("", ep("10.10.1.5"))],
         {a(BASE, "10.10.1.5"), a(CBASE, "10.10.1.5")}, choice=IMPORT),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_records(case: Case) -> None:
    store = Store()
    for obj in case.objs:
        store.upsert(obj)
    d = decide(store, NS, NAME, "local-first", 1, case.cluster_id)
    assert d.choice == case.choice, d.reason
    recs = build(d, ZONES)
    assert lines(recs) == case.want
    assert not case.absent & set(recs)
    for name, types in recs.items():  # names are absolute, lower case, never empty sets
        assert name.endswith(".") and name == name.lower()
        assert all(types.values()), name


# ---- focused tests -----------------------------------------------------------------------


@pytest.mark.parametrize("ip,label", [
    ("10.244.1.2", "10-244-1-2"),
    ("fd00::1", "fd00--1"),
    ("fd00:10:244:2::", "fd00-10-244-2--0"),
    ("::", "--0"),
    ("::1", "--1"),
])
def test_dashed_endpoint_labels(ip: str, label: str) -> None:
    assert dashed(ip) == label
    assert dns.name.from_text(label, origin=None).labels == (label.encode(),)


def test_srv_targets_over_255_octets_are_left_out() -> None:
    """A cluster id long enough to push ``<host>.<cluster>.<svc>.<ns>.svc.clusterset.local``
    past 255 octets: that endpoint name and every SRV pointing to it go; the others stay,
    with weights counted over the names that are left."""
    long_cluster = ".".join(["c" * 50] * 4)
    long_host = "h" * 63
    target = f"{long_host}.{long_cluster}.{CBASE}"
    assert len(rd.name_wire(target)) > 255 and not rd.fits(target)
    recs = decided([imp(type="Headless"), remote(long_cluster, ep("10.10.0.1", long_host)),
                    remote("member2", ep("10.20.0.1", "pod-b"))])
    assert target not in recs
    every_target = {rd.target(T_SRV, x) for types in recs.values()
                    for x in types.get(T_SRV, [])}
    assert rd.name_wire(target) not in every_target
    short = f"pod-b.member2.{CBASE}"
    assert {srv(CBASE, 100, 80, short)} == {x for x in lines(recs) if x[0] == CBASE
                                            and x[1] == "SRV"}
    # the long cluster's address is still an address of the service
    assert {a(CBASE, "10.10.0.1"), a(CBASE, "10.20.0.1"), a(short, "10.20.0.1")} <= lines(recs)
    assert {a(BASE, "10.10.0.1"), a(BASE, "10.20.0.1")} <= lines(recs)


def test_every_name_fits_a_dns_message() -> None:
    long_host = "h" * 63
    recs = decided([imp(type="Headless"),
                    remote(".".join(["c" * 60] * 3), ep("10.10.0.1", long_host)),
                    remote("ok", ep("10.20.0.1"))])
    for name, types in recs.items():
        assert rd.fits(name), name
        for t in (T_CNAME, T_PTR):
            for x in types.get(t, []):
                assert len(x) <= 255
        for x in types.get(T_SRV, []):
            assert len(x) - 6 <= 255


def test_ptr_of_an_address_named_in_both_zones_keeps_the_cluster_zone() -> None:
    """A Service's ClusterIP that is also its import's clusterset address (a derived
    Service): the cluster zone's name only."""
    recs = decided([svc(ips=("10.13.0.1",)), local(ep("10.244.0.1")), imp()])
    rev = rd.reverse_name("10.13.0.1")
    assert recs[rev] == {T_PTR: [rd.name(BASE)]}


def test_records_follow_the_decision() -> None:
    """The cluster zone's service name carries the chosen answer's addresses only."""
    up = decided([svc(), local(ep("10.244.0.1")), imp()])
    down = decided([svc(), local(ep("10.244.0.1", ready=False)), imp()])
    assert up[BASE][T_A] == [rd.address("10.96.0.1")[1]]
    assert down[BASE][T_A] == [rd.address("10.13.0.1")[1]]
    assert up[CBASE][T_A] == down[CBASE][T_A] == [rd.address("10.13.0.1")[1]]
    assert T_AAAA not in up[BASE]
