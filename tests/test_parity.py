"""Parity with CoreDNS's kubernetes plugin: with no ServiceImports, mcdns answers the
cluster zone as CoreDNS does, using CoreDNS's own test expectations.

Deliberate deviations (strict DNS instead of a CoreDNS quirk) are listed in DEVIATIONS
with the reason; everything else must match exactly (rcode, and every section as a set).
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from conftest import DATA, Running, make_config, rrsets, running
from coredns_cases import CASES, Case, rrset

ENT = "RFC 8020: an empty non-terminal is NODATA, not NXDOMAIN"
CNAME_ALL = "RFC 1034 §3.6.2: a CNAME owner answers every type with the CNAME"
# (qname, qtype) -> why mcdns answers differently on purpose.
DEVIATIONS: dict[tuple[str, str], str] = {
    ("dns-version.cluster.local.", "TXT"): "every answer has TTL `ttl` (CoreDNS 28800)",
    ("dns-version.cluster.local.", "A"): "the name exists: NODATA, not NXDOMAIN (RFC 2308)",
    ("external.testns.svc.cluster.local.", "SRV"): CNAME_ALL,
    ("external.testns.svc.cluster.local.", "TXT"): CNAME_ALL,
    ("_http._tcp.external.testns.svc.cluster.local.", "SRV"):
        "no SRV is made up below an ExternalName: NXDOMAIN",
    ("external-to-service.testns.svc.cluster.local.", "AAAA"):
        CNAME_ALL + "; the chased target has no AAAA",
    ("_tcp.svc1.testns.svc.cluster.local.", "SRV"): ENT,
    ("dns.cluster.local.", "A"): ENT + " (ns.dns.<zone> exists)",
    ("svc0.testns.svc.cluster.local.", "TXT"): "a name that does not exist is NXDOMAIN "
                                               "for every type (RFC 1034 §4.3.2)",
    ("svc0.testns.svc.cluster.local.", "SOA"): "as for TXT: NXDOMAIN for every type",
    ("_http._tcp.svc1.testns.svc.cluster.local.", "A"): "SRV owner names hold only SRV",
    ("http.tcp.svc1.testns.svc.cluster.local.", "SRV"): "RFC 2782 names need underscores",
    ("a.10-240-0-1.podns.pod.cluster.local.", "A"): "labels left of a pod name do not exist",
}


@pytest.fixture(scope="module")
def coredns_fixture() -> Iterator[Running]:
    # The cases assume the kubeadm Corefile's `kubernetes cluster.local in-addr.arpa
    # ip6.arpa`: the same zones as CIDRs (CoreDNS expands 0.0.0.0/0 to in-addr.arpa and
    # ::/0 to ip6.arpa), so unknown reverse names stay NXDOMAIN with that zone's SOA.
    with running(make_config(state=str(DATA / "coredns_state.yaml"),
                             service_cidrs=["0.0.0.0/0", "::/0"])) as srv:
        yield srv


def _expect(texts: list[str], serial: int) -> set[str]:
    out: set[str] = set()
    for t in texts:
        out |= rrsets([rrset(t, serial)])
    return out


def _serial(msg: dns.message.Message) -> int:
    for rr in msg.authority + msg.answer:
        if rr.rdtype == dns.rdatatype.SOA:
            return int(rr[0].serial)
    return 0


CHECKED = [c for c in CASES if (c[0].lower(), c[1]) not in DEVIATIONS]


def test_deviations_are_real_cases() -> None:
    """Every deviation names a CoreDNS case (so none silently hides nothing)."""
    keys = {(c[0].lower(), c[1]) for c in CASES}
    assert set(DEVIATIONS) <= keys


@pytest.mark.parametrize("case", CHECKED, ids=[f"{c[0]}-{c[1]}" for c in CHECKED])
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_coredns_parity(coredns_fixture: Running, case: Case, tcp: bool) -> None:
    qname, qtype, rcode, answer, ns, extra = case
    # UDP with EDNS as resolvers send it (without EDNS, 512 bytes drop additionals).
    msg = coredns_fixture.query(qname, qtype, tcp=tcp, use_edns=None if tcp else 0)
    serial = _serial(msg)
    assert dns.rcode.to_text(msg.rcode()) == rcode
    assert msg.flags & dns.flags.AA
    assert rrsets(msg.answer) == _expect(answer, serial)
    assert rrsets(msg.authority) == _expect(ns, serial)
    assert rrsets(msg.additional) == _expect(extra, serial)
