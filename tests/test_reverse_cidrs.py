"""Reverse zones scoped to the cluster's networks (``service_cidrs``, ``pod_cidrs``).

mcdns is authoritative for the reverse zones of these CIDRs exactly as CoreDNS expands a
CIDR written as a server-block zone; inside them it answers as CoreDNS's kubernetes
plugin does (PTR, NXDOMAIN with that zone's SOA, NODATA). Outside them it never says
NXDOMAIN: the PTR of an address it hands out (a remote cluster's, say) is still answered,
every other reverse name is REFUSED in the stub role and forwarded upstream in the
resolver role, as stock CoreDNS's ``fallthrough in-addr.arpa ip6.arpa`` does.

End to end: the real server on 127.0.0.1 with dnspython and dig as clients, Knot as the
real upstream of the resolver role.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest
from conftest import DEMO_STATE, ROOT, Running, make_config, needs, running
from knot import Knot

from mcdns import config
from mcdns.answers.zone import cidr_zones
from mcdns.resolver.resolver import Resolver

pytestmark = pytest.mark.timeout(60)

# The demo cluster's networks (config/demo-state.yaml, config/mcdns.yaml): kubeadm's
# default service CIDR and the pod CIDR of flannel's example.
SERVICE_CIDR, POD_CIDR = "10.96.0.0/12", "10.244.0.0/16"
KNOWN_IN = ("10.96.20.20", "web.default.svc.cluster.local.")  # a ClusterIP
KNOWN_POD = ("10.244.1.40", "redis-0.redis.default.svc.cluster.local.")  # a pod
# addresses mcdns hands out outside the CIDRs: a remote cluster's
KNOWN_OUT = ("10.13.187.164", "serve.default.svc.clusterset.local.")  # a ServiceImport IP
UNKNOWN_IN = "10.111.255.254"  # in the service CIDR's last zone, 111.10.in-addr.arpa
UNKNOWN_OUT = "8.8.8.8"


# ---- the expansion, against CoreDNS's own examples (plugin/pkg/cidr/cidr_test.go) -------

@pytest.mark.parametrize("cidr,zones", [
    ("10.0.0.0/15", ["0.10.in-addr.arpa", "1.10.in-addr.arpa"]),
    ("10.0.0.0/16", ["0.10.in-addr.arpa"]),
    ("192.168.1.1/23", ["0.168.192.in-addr.arpa", "1.168.192.in-addr.arpa"]),
    ("10.129.60.0/22", ["60.129.10.in-addr.arpa", "61.129.10.in-addr.arpa",
                        "62.129.10.in-addr.arpa", "63.129.10.in-addr.arpa"]),
    # the service CIDR of the CoreDNS docs' example: /12 is sixteen /16 zones
    ("10.96.0.0/12", [f"{n}.10.in-addr.arpa" for n in range(96, 112)]),
    ("10.0.0.0/8", ["10.in-addr.arpa"]),
    ("10.1.2.3/32", ["3.2.1.10.in-addr.arpa"]),
    ("0.0.0.0/0", ["in-addr.arpa"]),
    # IPv6 splits on nibbles: a /64 is one zone of 16 nibbles, a /63 two /64s
    ("2001:db8::/64", ["0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"]),
    ("2001:db8::/63", ["0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
                       "1.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"]),
    ("fd00:10:96::/112", ["0." * 16 + "6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa"]),
    ("fd00::/7", ["c.f.ip6.arpa", "d.f.ip6.arpa"]),
    ("::/0", ["ip6.arpa"]),
])
def test_cidr_zones_as_coredns_expands_them(cidr: str, zones: list[str]) -> None:
    assert cidr_zones(cidr) == zones


def test_every_address_of_a_cidr_falls_in_its_zones() -> None:
    """Each zone of a CIDR is a suffix of the reverse name of every address inside it,
    and of no address outside."""
    for cidr in ("10.96.0.0/12", "192.168.0.0/23", "fd00:10:96::/110"):
        zones = [z + "." for z in cidr_zones(cidr)]
        net = ipaddress.ip_network(cidr)
        for ip in (net[0], net[1], net[-1], net[net.num_addresses // 2]):
            name = ip.reverse_pointer + "."
            assert sum(name.endswith("." + z) for z in zones) == 1, (cidr, ip)
        after = net[-1] + 1
        assert not any((after.reverse_pointer + ".").endswith("." + z) for z in zones)


# ---- config ----------------------------------------------------------------------------

def test_cidrs_are_validated_and_normalised() -> None:
    cfg = config.build({"service_cidrs": ["10.96.0.1/12", "10.96.0.0/12"],
                        "pod_cidrs": "FD00:10:244::/64"})
    assert cfg.service_cidrs == ("10.96.0.0/12",)  # host bits cleared, as CoreDNS does
    assert cfg.pod_cidrs == ("fd00:10:244::/64",)
    assert config.Config().reverse_zones == ()  # no longer claimed by default


@pytest.mark.parametrize("key,value", [
    ("service_cidrs", "10.96.0.1"), ("pod_cidrs", "10.244.0.0/33"), ("pod_cidrs", "pods"),
])
def test_bad_cidr_is_one_line_naming_the_key(tmp_path: Path, key: str, value: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"{key}: ['{value}']\n")
    for args in (["check-config", str(path)], ["serve", "--config", str(path)]):
        done = subprocess.run([sys.executable, "-m", "mcdns", *args], capture_output=True,
                              text=True, timeout=30, cwd=ROOT)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1, done.stderr
        assert f"config key '{key}'" in done.stderr and "is not a CIDR" in done.stderr


def test_cidr_flags() -> None:
    from mcdns.cli import overrides, parser
    args = parser().parse_args(["serve", "--service-cidr", SERVICE_CIDR, "--pod-cidr",
                                POD_CIDR, "--pod-cidr", "fd00:10:244::/64"])
    cfg = config.build(overrides(args))
    assert cfg.service_cidrs == (SERVICE_CIDR,)
    assert cfg.pod_cidrs == (POD_CIDR, "fd00:10:244::/64")


# ---- the stub role ---------------------------------------------------------------------

def ptr_query(srv: Running, ip: str, rdtype: str = "PTR") -> dns.message.Message:
    return srv.query(dns.reversename.from_address(ip).to_text(), rdtype)


def ptrs(msg: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in msg.answer for rd in rrset]


def soa_zone(msg: dns.message.Message) -> str:
    (soa,) = msg.authority
    assert soa.rdtype == dns.rdatatype.SOA
    return str(soa.name.to_text())


@pytest.fixture(scope="module")
def stub() -> Iterator[Running]:
    cfg = make_config(state=str(DEMO_STATE), service_cidrs=[SERVICE_CIDR],
                      pod_cidrs=[POD_CIDR, "fd00:10:244::/64"])
    with running(cfg) as srv:
        yield srv


def test_stub_ptr_inside_the_cidrs(stub: Running) -> None:
    for ip, name in (KNOWN_IN, KNOWN_POD):
        msg = ptr_query(stub, ip)
        assert msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA
        assert ptrs(msg) == [name]
    # an unknown address: NXDOMAIN with the SOA of the zone it falls in, not in-addr.arpa
    msg = ptr_query(stub, UNKNOWN_IN)
    assert msg.rcode() == dns.rcode.NXDOMAIN and msg.flags & dns.flags.AA
    assert soa_zone(msg) == "111.10.in-addr.arpa."
    msg = ptr_query(stub, "10.244.200.1")
    assert msg.rcode() == dns.rcode.NXDOMAIN and soa_zone(msg) == "244.10.in-addr.arpa."
    msg = ptr_query(stub, "fd00:10:244::99")
    assert msg.rcode() == dns.rcode.NXDOMAIN
    assert soa_zone(msg) == "0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa."
    # another type of a known name: NODATA with the zone's SOA
    msg = ptr_query(stub, KNOWN_IN[0], "TXT")
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer
    assert soa_zone(msg) == "96.10.in-addr.arpa."
    # each zone of the CIDR has its apex
    soa = stub.query("100.10.in-addr.arpa.", "SOA")
    assert soa.rcode() == dns.rcode.NOERROR and soa.answer[0].name.to_text() == (
        "100.10.in-addr.arpa.")


def test_stub_refuses_reverse_names_outside_the_cidrs(stub: Running) -> None:
    for name, rdtype in ((f"{UNKNOWN_OUT}", "PTR"), ("10.13.0.1", "PTR"),
                         ("192.0.2.1", "PTR"), ("2001:db8::1", "PTR")):
        msg = ptr_query(stub, name, rdtype)
        assert msg.rcode() == dns.rcode.REFUSED, name
    for name in ("in-addr.arpa.", "ip6.arpa.", "10.in-addr.arpa.", "13.10.in-addr.arpa."):
        for rdtype in ("SOA", "NS", "PTR"):
            assert stub.query(name, rdtype).rcode() == dns.rcode.REFUSED, (name, rdtype)


def test_stub_answers_ptr_of_a_remote_address_it_hands_out(stub: Running) -> None:
    """Outside the CIDRs, a PTR mcdns has (the ServiceImport's IP it answers for
    serve.default.svc.cluster.local) is still answered; other types of that name are not
    mcdns's to answer."""
    msg = ptr_query(stub, KNOWN_OUT[0])
    assert msg.rcode() == dns.rcode.NOERROR and ptrs(msg) == [KNOWN_OUT[1]]
    assert ptr_query(stub, KNOWN_OUT[0], "TXT").rcode() == dns.rcode.REFUSED
    assert stub.query("187.13.10.in-addr.arpa.", "PTR").rcode() == dns.rcode.REFUSED


def test_dig_x_outside_the_cidrs_is_refused_not_nxdomain() -> None:
    """`dig -x 8.8.8.8` against the default config: REFUSED (CoreDNS, which forwards only
    the CIDRs' zones to mcdns, answers it from upstream), never mcdns's NXDOMAIN."""
    needs("dig")
    with running(make_config(state=str(DEMO_STATE))) as srv:
        out = subprocess.run(["dig", f"@{srv.host}", "-p", str(srv.port), "+time=2",
                              "+tries=1", "-x", UNKNOWN_OUT], capture_output=True, text=True,
                             timeout=20, check=True).stdout
        assert "status: REFUSED" in out, out
        assert "NXDOMAIN" not in out


def test_the_demo_config_answers_dig_x_of_a_cluster_ip() -> None:
    """config/mcdns.yaml (`make run`) sets the demo's CIDRs: the README's `dig -x` of a
    ClusterIP answers, an unknown address inside is NXDOMAIN, 8.8.8.8 is REFUSED."""
    cfg = config.load(ROOT / "config" / "mcdns.yaml", {
        "listen": ["127.0.0.1:0"], "http": None, "state": str(DEMO_STATE)})
    assert cfg.service_cidrs == (SERVICE_CIDR,) and cfg.pod_cidrs == (POD_CIDR,)
    with running(cfg) as srv:
        assert ptrs(ptr_query(srv, KNOWN_IN[0])) == [KNOWN_IN[1]]
        assert ptr_query(srv, UNKNOWN_IN).rcode() == dns.rcode.NXDOMAIN
        assert ptr_query(srv, UNKNOWN_OUT).rcode() == dns.rcode.REFUSED


def test_explicit_reverse_zones_keep_their_meaning_in_the_stub_role(
        caplog: pytest.LogCaptureFixture) -> None:
    """A config written for the old default (reverse_zones: [in-addr.arpa, ip6.arpa]) is
    still accepted and claims those zones whole, as before, with a warning."""
    caplog.set_level(logging.WARNING, logger="mcdns.answers")
    cfg = make_config(state=str(DEMO_STATE), reverse_zones=["in-addr.arpa", "ip6.arpa"])
    with running(cfg) as srv:
        msg = ptr_query(srv, UNKNOWN_OUT)
        assert msg.rcode() == dns.rcode.NXDOMAIN and soa_zone(msg) == "in-addr.arpa."
        assert ptrs(ptr_query(srv, KNOWN_IN[0])) == [KNOWN_IN[1]]
    assert any("'reverse_zones' is deprecated" in m and "service_cidrs" in m
               for m in caplog.messages)


# ---- the resolver role -----------------------------------------------------------------

KNOT_ZONE = "in-addr.arpa"
KNOT_TEXT = f"""$ORIGIN {KNOT_ZONE}.
$TTL 60
@ 3600 IN SOA ns.{KNOT_ZONE}. hostmaster.example.test. 1 7200 1800 86400 3
@ IN NS ns
ns IN A 127.0.0.1
8.8.8.8 IN PTR dns.google.
164.187.13.10 IN PTR from-knot.example.test.
254.255.111.10 IN PTR from-knot.example.test.
"""


@pytest.fixture(scope="module")
def knot() -> Iterator[Knot]:
    needs("knotd")
    needs("knotc")
    with Knot(KNOT_ZONE, KNOT_TEXT) as k:
        yield k


@pytest.fixture(scope="module")
def resolver(knot: Knot) -> Iterator[Running]:
    cfg = make_config(role="resolver", upstreams=[knot.address], state=str(DEMO_STATE),
                      service_cidrs=[SERVICE_CIDR], pod_cidrs=[POD_CIDR])
    with running(cfg, forwarder=Resolver(cfg)) as srv:
        yield srv


def test_resolver_forwards_reverse_names_outside_the_cidrs(resolver: Running,
                                                           knot: Knot) -> None:
    before = knot.queries()
    msg = ptr_query(resolver, UNKNOWN_OUT)
    assert msg.rcode() == dns.rcode.NOERROR and ptrs(msg) == ["dns.google."]
    assert not msg.flags & dns.flags.AA  # a forwarded answer
    # names mcdns used to answer itself from in-addr.arpa: the apex, an empty non-terminal
    # above a remote address it knows
    soa = resolver.query("in-addr.arpa.", "SOA")
    assert [rd.mname.to_text() for rd in soa.answer[0]] == ["ns.in-addr.arpa."]
    ent = resolver.query("187.13.10.in-addr.arpa.", "PTR")
    assert ent.rcode() == dns.rcode.NOERROR and soa_zone(ent) == "in-addr.arpa."
    assert knot.queries() == before + 3


def test_resolver_answers_inside_the_cidrs_and_known_addresses_itself(
        resolver: Running, knot: Knot) -> None:
    before = knot.queries()
    msg = ptr_query(resolver, UNKNOWN_IN)  # Knot has a PTR for it; mcdns is authoritative
    assert msg.rcode() == dns.rcode.NXDOMAIN and soa_zone(msg) == "111.10.in-addr.arpa."
    assert ptrs(ptr_query(resolver, KNOWN_IN[0])) == [KNOWN_IN[1]]
    assert ptrs(ptr_query(resolver, KNOWN_OUT[0])) == [KNOWN_OUT[1]]  # not Knot's
    assert knot.queries() == before


def test_dig_x_through_the_resolver(resolver: Running) -> None:
    needs("dig")
    out = subprocess.run(["dig", f"@{resolver.host}", "-p", str(resolver.port), "+time=5",
                          "+tries=1", "-x", UNKNOWN_OUT], capture_output=True, text=True,
                         timeout=20, check=True).stdout
    assert "status: NOERROR" in out and "dns.google." in out, out
