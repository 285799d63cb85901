"""Answer tables for the decision, the zones and the negative answers, over real UDP and TCP
sockets with dnspython.

One cluster (below) exercises the §5 decision table for ClusterIP and headless services,
the policies and annotations, both Karmada conventions, the clusterset zone (§6), PTR,
and the negative answers of §7. Each case is (qname, qtype, rcode, answer, authority):
answer is a set of zone-text RRs; authority is "SOA" (the zone's SOA must be there) or
empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from conftest import Running, make_config, rrsets, running
from statebuild import Obj, endpoints, namespace, service, service_import, write

POLICY = "mcdns.io/policy"
MIN_READY = "mcdns.io/min-ready"
KARMADA_PROVISION = "endpointslice.karmada.io/provision-cluster"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"

def traffic_local(svc: Obj) -> Obj:
    svc["spec"]["internalTrafficPolicy"] = "Local"
    return svc


CLUSTER = [
    namespace("default"), namespace("other"),
    # 1. local healthy + import -> local
    service("healthy", ip="10.96.0.1"), endpoints("healthy", ready=["10.244.0.1"]),
    service_import("healthy", ips=["10.13.0.1"]),
    # 2. local 0 ready + import with ready remote endpoints -> import
    service("fallback", ip="10.96.0.2"), endpoints("fallback", not_ready=["10.244.0.2"]),
    service_import("fallback", ips=["10.13.0.2"]),
    endpoints("", mcs="fallback", cluster="member1", ready=["10.10.0.2"]),
    # 3. local 0 ready + import known to have 0 ready -> local (nothing better)
    service("bothdown", ip="10.96.0.3"), endpoints("bothdown", not_ready=["10.244.0.3"]),
    service_import("bothdown", ips=["10.13.0.3"]),
    endpoints("", mcs="bothdown", cluster="member1", not_ready=["10.10.0.3"]),
    # 4. import only -> import; import only with 0 ready -> still the import
    service_import("onlyimport", ips=["10.13.0.4"]),
    service_import("onlyimportdown", ips=["10.13.0.5"]),
    endpoints("", mcs="onlyimportdown", cluster="member1", not_ready=["10.10.0.5"]),
    # 5. local only, 0 ready -> local (CoreDNS's answer)
    service("onlylocal", ip="10.96.0.6"), endpoints("onlylocal", not_ready=["10.244.0.6"]),
    # 6. local 0 ready + import with no endpoint information (unknown = available)
    service("unknown", ip="10.96.0.7"), service_import("unknown", ips=["10.13.0.7"]),
    # headless: local ready
    service("hl-ok", ports=[("db", 5432)]),
    endpoints("hl-ok", ready=["10.244.1.1", "10.244.1.2"], ports=[("db", 5432)],
              hostnames={"10.244.1.1": "db-0"}),
    # headless: local 0 ready + headless import ready in two clusters -> remote endpoints
    service("hl-fb"), endpoints("hl-fb", not_ready=["10.244.1.3"]),
    service_import("hl-fb", headless=True),
    endpoints("", mcs="hl-fb", cluster="member1", ready=["10.10.1.3"],
              hostnames={"10.10.1.3": "pod-a"}),
    endpoints("", mcs="hl-fb", cluster="member3", ready=["10.30.1.3"], not_ready=["10.30.1.4"]),
    # headless: local 0 ready, no import -> NXDOMAIN
    service("hl-down"), endpoints("hl-down", not_ready=["10.244.1.5"]),
    # headless import only; headless import only with 0 ready -> NXDOMAIN
    service_import("hl-imp", headless=True),
    endpoints("", mcs="hl-imp", cluster="member1", ready=["10.10.1.6"]),
    service_import("hl-impdown", headless=True),
    endpoints("", mcs="hl-impdown", cluster="member1", not_ready=["10.10.1.7"]),
    # policies by annotation
    service("lonly", ip="10.96.0.8", annotations={POLICY: "local-only"}),
    endpoints("lonly", not_ready=["10.244.0.8"]), service_import("lonly", ips=["10.13.0.8"]),
    service("ifirst", ip="10.96.0.9"), endpoints("ifirst", ready=["10.244.0.9"]),
    service_import("ifirst", ips=["10.13.0.9"], annotations={POLICY: "import-first"}),
    service("svcwins", ip="10.96.0.10", annotations={POLICY: "local-first"}),
    endpoints("svcwins", ready=["10.244.0.10"]),
    service_import("svcwins", ips=["10.13.0.10"], annotations={POLICY: "import-first"}),
    service("ifirstdown", ip="10.96.0.11"), endpoints("ifirstdown", ready=["10.244.0.11"]),
    service_import("ifirstdown", ips=["10.13.0.11"], annotations={POLICY: "import-first"}),
    endpoints("", mcs="ifirstdown", cluster="member1", not_ready=["10.10.0.11"]),
    service("minready", ip="10.96.0.12", annotations={MIN_READY: "2"}),
    endpoints("minready", ready=["10.244.0.12"]), service_import("minready", ips=["10.13.0.12"]),
    # Karmada ServiceImport flow: no IPs on the import; derived-<svc> Service + its slices
    service("cart", ip="10.96.0.13"), endpoints("cart", not_ready=["10.244.0.13"]),
    service_import("cart"), service("derived-cart", ip="10.96.0.113"),
    endpoints("derived-cart", name="imported-member1-cart-abc", ready=["10.10.0.13"],
              labels={MANAGED_BY: "endpointslice-controller.karmada.io"}),
    # Karmada derived flow, remote endpoints all down -> back to the local answer
    service("cart2", ip="10.96.0.14"), endpoints("cart2", not_ready=["10.244.0.14"]),
    service_import("cart2"), service("derived-cart2", ip="10.96.0.114"),
    endpoints("derived-cart2", name="imported-member1-cart2-abc", not_ready=["10.10.0.14"],
              labels={MANAGED_BY: "endpointslice-controller.karmada.io"}),
    # Karmada MCS dispatch: remote endpoints dispatched into the Service do not count local
    service("dispatched", ip="10.96.0.15"), service_import("dispatched", ips=["10.13.0.15"]),
    endpoints("dispatched", name="dispatched-m1", ready=["10.10.0.15"],
              annotations={KARMADA_PROVISION: "member1"}),
    # ExternalName: CNAME, never a fallback
    service("ext", external="ext.example.com"), service_import("ext", ips=["10.13.0.16"]),
    # dual-stack
    service("dual", ip=["10.96.0.17", "fd00::17"]), endpoints("dual", ready=["10.244.0.17"]),
    # v1beta1 ServiceImport in another namespace
    service_import("beta", ns="other", ips=["10.13.0.18"], version="v1beta1"),
    # an ExternalName holding an IP is no name to point to: NXDOMAIN, as CoreDNS answers
    service("extip", external="192.0.2.10"),
    # min-ready counts pods: one dual-stack pod (an IPv4 and an IPv6 endpoint) is one pod,
    # below min-ready 2 -> the import
    service("dspod", ip=["10.96.0.19", "fd00::19"], annotations={MIN_READY: "2"}),
    endpoints("dspod", ready=["10.244.0.19"]),
    endpoints("dspod", ready=["fd00:244::19"], family="IPv6"),
    service_import("dspod", ips=["10.13.0.19"]),
    endpoints("", mcs="dspod", cluster="member1", ready=["10.10.0.19"]),
    # an IPv6 endpoint ending in "::" is named with a trailing 0 (CoreDNS 1.12.3 and later)
    service("v6hl"), endpoints("v6hl", ready=["fd00:10:244:2::"], family="IPv6"),
    # internalTrafficPolicy: Local keeps traffic in the cluster: no fallback, unless the
    # Service's own mcdns.io/policy annotation asks for one
    traffic_local(service("itp", ip="10.96.0.21")), endpoints("itp", not_ready=["10.244.0.21"]),
    service_import("itp", ips=["10.13.0.21"]),
    traffic_local(service("itpann", ip="10.96.0.22", annotations={POLICY: "local-first"})),
    endpoints("itpann", not_ready=["10.244.0.22"]), service_import("itpann", ips=["10.13.0.22"]),
    # a namespace with no imports exists in the clusterset zone too (NODATA)
    namespace("empty"), service("lonely", ns="empty", ip="10.96.0.23"),
]

SOA = "SOA"
Z, CS = "svc.cluster.local.", "svc.clusterset.local."


def a(name: str, *ips: str, ttl: int = 5) -> set[str]:
    return {f"{name} {ttl} in {'aaaa' if ':' in ip else 'a'} {ip}" for ip in ips}


CASES: list[tuple[str, str, str, set[str], str]] = [
    # §5 decision table, ClusterIP
    (f"healthy.default.{Z}", "A", "NOERROR", a(f"healthy.default.{Z}", "10.96.0.1"), ""),
    (f"fallback.default.{Z}", "A", "NOERROR", a(f"fallback.default.{Z}", "10.13.0.2"), ""),
    (f"bothdown.default.{Z}", "A", "NOERROR", a(f"bothdown.default.{Z}", "10.96.0.3"), ""),
    (f"onlyimport.default.{Z}", "A", "NOERROR", a(f"onlyimport.default.{Z}", "10.13.0.4"), ""),
    (f"onlyimportdown.default.{Z}", "A", "NOERROR",
     a(f"onlyimportdown.default.{Z}", "10.13.0.5"), ""),
    (f"onlylocal.default.{Z}", "A", "NOERROR", a(f"onlylocal.default.{Z}", "10.96.0.6"), ""),
    (f"unknown.default.{Z}", "A", "NOERROR", a(f"unknown.default.{Z}", "10.13.0.7"), ""),
    (f"neither.default.{Z}", "A", "NXDOMAIN", set(), SOA),
    # §5 decision table, headless
    (f"hl-ok.default.{Z}", "A", "NOERROR", a(f"hl-ok.default.{Z}", "10.244.1.1", "10.244.1.2"),
     ""),
    (f"hl-fb.default.{Z}", "A", "NOERROR", a(f"hl-fb.default.{Z}", "10.10.1.3", "10.30.1.3"), ""),
    (f"hl-down.default.{Z}", "A", "NXDOMAIN", set(), SOA),
    (f"hl-imp.default.{Z}", "A", "NOERROR", a(f"hl-imp.default.{Z}", "10.10.1.6"), ""),
    (f"hl-impdown.default.{Z}", "A", "NXDOMAIN", set(), SOA),
    # headless endpoint names and SRV
    (f"db-0.hl-ok.default.{Z}", "A", "NOERROR", a(f"db-0.hl-ok.default.{Z}", "10.244.1.1"), ""),
    (f"10-244-1-2.hl-ok.default.{Z}", "A", "NOERROR",
     a(f"10-244-1-2.hl-ok.default.{Z}", "10.244.1.2"), ""),
    (f"_db._tcp.hl-ok.default.{Z}", "SRV", "NOERROR",
     {f"_db._tcp.hl-ok.default.{Z} 5 in srv 0 50 5432 db-0.hl-ok.default.{Z}",
      f"_db._tcp.hl-ok.default.{Z} 5 in srv 0 50 5432 10-244-1-2.hl-ok.default.{Z}"}, ""),
    # policies and annotations
    (f"lonly.default.{Z}", "A", "NOERROR", a(f"lonly.default.{Z}", "10.96.0.8"), ""),
    (f"ifirst.default.{Z}", "A", "NOERROR", a(f"ifirst.default.{Z}", "10.13.0.9"), ""),
    (f"svcwins.default.{Z}", "A", "NOERROR", a(f"svcwins.default.{Z}", "10.96.0.10"), ""),
    (f"ifirstdown.default.{Z}", "A", "NOERROR", a(f"ifirstdown.default.{Z}", "10.96.0.11"), ""),
    (f"minready.default.{Z}", "A", "NOERROR", a(f"minready.default.{Z}", "10.13.0.12"), ""),
    # Karmada
    (f"cart.default.{Z}", "A", "NOERROR", a(f"cart.default.{Z}", "10.96.0.113"), ""),
    (f"cart2.default.{Z}", "A", "NOERROR", a(f"cart2.default.{Z}", "10.96.0.14"), ""),
    (f"dispatched.default.{Z}", "A", "NOERROR", a(f"dispatched.default.{Z}", "10.13.0.15"), ""),
    (f"cart.default.{CS}", "A", "NOERROR", a(f"cart.default.{CS}", "10.96.0.113"), ""),
    # ExternalName
    (f"ext.default.{Z}", "A", "NOERROR", {f"ext.default.{Z} 5 in cname ext.example.com."}, ""),
    (f"ext.default.{Z}", "CNAME", "NOERROR", {f"ext.default.{Z} 5 in cname ext.example.com."},
     ""),
    # dual-stack, NODATA for the missing family
    (f"dual.default.{Z}", "AAAA", "NOERROR", a(f"dual.default.{Z}", "fd00::17"), ""),
    (f"dual.default.{Z}", "A", "NOERROR", a(f"dual.default.{Z}", "10.96.0.17"), ""),
    (f"healthy.default.{Z}", "AAAA", "NOERROR", set(), SOA),
    # SRV of a ClusterIP service (named port)
    (f"_http._tcp.healthy.default.{Z}", "SRV", "NOERROR",
     {f"_http._tcp.healthy.default.{Z} 5 in srv 0 100 80 healthy.default.{Z}"}, ""),
    (f"_http._tcp.fallback.default.{Z}", "SRV", "NOERROR",
     {f"_http._tcp.fallback.default.{Z} 5 in srv 0 100 80 fallback.default.{Z}"}, ""),
    (f"_nope._tcp.healthy.default.{Z}", "SRV", "NXDOMAIN", set(), SOA),
    # PTR
    ("1.0.96.10.in-addr.arpa.", "PTR", "NOERROR",
     {f"1.0.96.10.in-addr.arpa. 5 in ptr healthy.default.{Z}"}, ""),
    ("2.0.13.10.in-addr.arpa.", "PTR", "NOERROR",
     {f"2.0.13.10.in-addr.arpa. 5 in ptr fallback.default.{CS}"}, ""),
    ("1.1.244.10.in-addr.arpa.", "PTR", "NOERROR",
     {f"1.1.244.10.in-addr.arpa. 5 in ptr db-0.hl-ok.default.{Z}"}, ""),
    ("9.9.9.10.in-addr.arpa.", "PTR", "NXDOMAIN", set(), SOA),
    # clusterset zone (§6)
    (f"fallback.default.{CS}", "A", "NOERROR", a(f"fallback.default.{CS}", "10.13.0.2"), ""),
    (f"healthy.default.{CS}", "A", "NOERROR", a(f"healthy.default.{CS}", "10.13.0.1"), ""),
    (f"_http._tcp.healthy.default.{CS}", "SRV", "NOERROR",
     {f"_http._tcp.healthy.default.{CS} 5 in srv 0 100 80 healthy.default.{CS}"}, ""),
    (f"hl-fb.default.{CS}", "A", "NOERROR", a(f"hl-fb.default.{CS}", "10.10.1.3", "10.30.1.3"),
     ""),
    (f"pod-a.member1.hl-fb.default.{CS}", "A", "NOERROR",
     a(f"pod-a.member1.hl-fb.default.{CS}", "10.10.1.3"), ""),
    (f"member1.hl-fb.default.{CS}", "A", "NOERROR", set(), SOA),  # MUST NOT resolve
    (f"_http._tcp.hl-fb.default.{CS}", "SRV", "NOERROR",
     {f"_http._tcp.hl-fb.default.{CS} 5 in srv 0 50 8080 pod-a.member1.hl-fb.default.{CS}",
      f"_http._tcp.hl-fb.default.{CS} 5 in srv 0 50 8080 10-30-1-3.member3.hl-fb.default.{CS}"},
     ""),
    (f"hl-impdown.default.{CS}", "A", "NXDOMAIN", set(), SOA),
    (f"onlylocal.default.{CS}", "A", "NXDOMAIN", set(), SOA),
    (f"beta.other.{CS}", "A", "NOERROR", a(f"beta.other.{CS}", "10.13.0.18"), ""),
    ("dns-version.clusterset.local.", "TXT", "NOERROR",
     {'dns-version.clusterset.local. 5 in txt "1.0.0"'}, ""),
    ("dns-version.cluster.local.", "TXT", "NOERROR",
     {'dns-version.cluster.local. 5 in txt "1.1.0"'}, ""),
    # apex and structure: NODATA vs NXDOMAIN
    ("clusterset.local.", "NS", "NOERROR",
     {"clusterset.local. 5 in ns ns.dns.clusterset.local."}, ""),
    ("cluster.local.", "A", "NOERROR", set(), SOA),
    ("svc.cluster.local.", "A", "NOERROR", set(), SOA),
    (f"default.{Z}", "A", "NOERROR", set(), SOA),
    (f"nonamespace.{Z}", "A", "NXDOMAIN", set(), SOA),
    (f"other.{CS}", "A", "NOERROR", set(), SOA),
    ("what.cluster.local.", "A", "NXDOMAIN", set(), SOA),
    # pods insecure
    ("10-1-2-3.default.pod.cluster.local.", "A", "NOERROR",
     a("10-1-2-3.default.pod.cluster.local.", "10.1.2.3"), ""),
    ("10-1-2-3.default.pod.cluster.local.", "AAAA", "NOERROR", set(), SOA),
    ("10-1-2-3.nons.pod.cluster.local.", "A", "NXDOMAIN", set(), SOA),
    ("not-an-ip.default.pod.cluster.local.", "A", "NXDOMAIN", set(), SOA),
    (f"extip.default.{Z}", "A", "NXDOMAIN", set(), SOA),
    (f"extip.default.{Z}", "CNAME", "NXDOMAIN", set(), SOA),
    (f"dspod.default.{Z}", "A", "NOERROR", a(f"dspod.default.{Z}", "10.13.0.19"), ""),
    (f"fd00-10-244-2--0.v6hl.default.{Z}", "AAAA", "NOERROR",
     a(f"fd00-10-244-2--0.v6hl.default.{Z}", "fd00:10:244:2::"), ""),
    (f"fd00-10-244-2--.v6hl.default.{Z}", "AAAA", "NXDOMAIN", set(), SOA),
    (f"itp.default.{Z}", "A", "NOERROR", a(f"itp.default.{Z}", "10.96.0.21"), ""),
    (f"itpann.default.{Z}", "A", "NOERROR", a(f"itpann.default.{Z}", "10.13.0.22"), ""),
    (f"empty.{CS}", "A", "NOERROR", set(), SOA),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    path = write(tmp_path_factory.mktemp("answers") / "state.yaml", CLUSTER)
    # every IPv4 address's reverse name is mcdns's (the zone in-addr.arpa, as the old
    # default reverse_zones claimed it), so the unknown one below is NXDOMAIN
    with running(make_config(state=str(path), service_cidrs=["0.0.0.0/0"])) as srv:
        yield srv


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_answer(cluster: Running, case: tuple[str, str, str, set[str], str], tcp: bool) -> None:
    qname, qtype, rcode, answer, authority = case
    msg = cluster.query(qname, qtype, tcp=tcp)
    assert dns.rcode.to_text(msg.rcode()) == rcode
    assert msg.flags & dns.flags.AA, "AA on every answer from a served zone"
    assert not msg.flags & dns.flags.TC
    assert rrsets(msg.answer) == answer
    if authority == SOA:
        zone = "clusterset.local." if "clusterset" in qname else (
            "in-addr.arpa." if qname.endswith("in-addr.arpa.") else "cluster.local.")
        (soa,) = msg.authority
        assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == zone
        assert soa.ttl == 5
        assert soa[0].mname.to_text() == "ns.dns." + zone
        assert soa[0].rname.to_text() == "hostmaster." + zone
        assert (soa[0].refresh, soa[0].retry, soa[0].expire, soa[0].minimum) == (
            7200, 1800, 86400, 5)
    else:
        assert msg.authority == []


def test_srv_glue_in_additional(cluster: Running) -> None:
    msg = cluster.query(f"_db._tcp.hl-ok.default.{Z}", "SRV")
    assert rrsets(msg.additional) == (a(f"db-0.hl-ok.default.{Z}", "10.244.1.1")
                                      | a(f"10-244-1-2.hl-ok.default.{Z}", "10.244.1.2"))


def test_case_insensitive_and_question_echoed(cluster: Running) -> None:
    msg = cluster.query(f"FallBack.Default.{Z.upper()}", "A")
    assert msg.question[0].name.to_text() == f"FallBack.Default.{Z.upper()}"
    assert {r.lower() for r in rrsets(msg.answer)} == a(f"fallback.default.{Z}", "10.13.0.2")


def test_out_of_zone_refused_without_aa(cluster: Running) -> None:
    msg = cluster.query("example.com.", "A")
    assert msg.rcode() == dns.rcode.REFUSED
    assert not msg.flags & dns.flags.AA
    msg = cluster.query(".", "NS")  # CoreDNS's forward health check: answered
    assert msg.rcode() == dns.rcode.REFUSED


def test_serial_changes_when_zone_data_changes(cluster: Running, tmp_path: Path) -> None:
    before = cluster.query("cluster.local.", "SOA").answer[0][0].serial
    cluster_before = cluster.query("clusterset.local.", "SOA").answer[0][0].serial
    store = cluster.app.store
    from mcdns.objects.reduce import reduce

    obj = service("newsvc", ip="10.96.9.9")
    cluster.call(lambda: (store.upsert(reduce(obj)), store.commit()))
    msg = cluster.query(f"newsvc.default.{Z}", "A")
    assert rrsets(msg.answer) == a(f"newsvc.default.{Z}", "10.96.9.9")
    after = cluster.query("cluster.local.", "SOA").answer[0][0].serial
    assert after > before
    assert cluster.query("clusterset.local.", "SOA").answer[0][0].serial == cluster_before


@pytest.mark.parametrize("policy,expect", [("local-only", "10.96.0.2"),
                                            ("import-first", "10.13.0.1"),
                                            ("local-first", "10.96.0.1")])
def test_global_policy(tmp_path: Path, policy: str, expect: str) -> None:
    path = write(tmp_path / "s.yaml", CLUSTER)
    with running(make_config(state=str(path), policy=policy)) as srv:
        name = f"{'fallback' if policy == 'local-only' else 'healthy'}.default.{Z}"
        assert rrsets(srv.query(name, "A").answer) == a(name, expect)


def test_ttl_setting(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", CLUSTER)
    with running(make_config(state=str(path), ttl=42)) as srv:
        msg = srv.query(f"fallback.default.{Z}", "A")
        assert msg.answer[0].ttl == 42
        msg = srv.query(f"neither.default.{Z}", "A")
        assert msg.authority[0].ttl == 42 and msg.authority[0][0].minimum == 42


def test_pods_disabled(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", CLUSTER)
    with running(make_config(state=str(path), pods="disabled")) as srv:
        msg = srv.query("10-1-2-3.default.pod.cluster.local.", "A")
        assert msg.rcode() == dns.rcode.NXDOMAIN


def test_any_query_answers_every_record_of_the_name(cluster: Running) -> None:
    name = f"healthy.default.{Z}"
    msg = cluster.query(name, "ANY", tcp=True)
    assert msg.rcode() == dns.rcode.NOERROR
    assert rrsets(msg.answer) == a(name, "10.96.0.1") | {f"{name} 5 in srv 0 100 80 {name}"}


def test_endpoint_srv_is_built_on_demand(cluster: Running) -> None:
    name = f"db-0.hl-ok.default.{Z}"
    msg = cluster.query(name, "SRV")
    assert rrsets(msg.answer) == {f"{name} 5 in srv 0 100 5432 {name}"}
    assert rrsets(msg.additional) == a(name, "10.244.1.1")
