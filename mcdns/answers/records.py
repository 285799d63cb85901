"""Turn one service's decision into DNS records: every name it owns, in both zones.

The output is plain data (name -> type -> rdata list), built when the data changes, never
per query. ``table.AnswerTable`` turns it into pre-encoded answers.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import defaultdict
from dataclasses import dataclass

from mcdns.answers import rdata
from mcdns.answers.health import IMPORT, LOCAL, Decision
from mcdns.objects.model import Endpoint, EndpointSlice, Port
from mcdns.objects.names import is_dns1123_subdomain
from mcdns.proto import T_CNAME, T_PTR, T_SRV

log = logging.getLogger("mcdns.answers")
REPORTED_MAX = 1024  # names too long to encode, logged once each (then no more)
_reported: set[str] = set()

Records = dict[str, dict[int, list[bytes]]]
"""Lower-case absolute name (trailing dot) -> qtype -> rdata in wire form."""


@dataclass(frozen=True, slots=True)
class Zones:
    """The zone names records are built in (lower case, no trailing dot)."""

    cluster: str
    clusterset: str


class RecordSet:
    """Records being collected for one owner, with helpers for the common shapes.

    A name that cannot be encoded (over 255 octets: a long hostname, cluster id, service
    and namespace together) is left out with everything that points to it, and logged
    once: one such name must not make the whole answer malformed."""

    def __init__(self, ptr_zone: str = "") -> None:
        # name -> qtype -> rdata, as insertion-ordered dicts (sets that keep order)
        self.data: dict[str, dict[int, dict[bytes, None]]] = defaultdict(
            lambda: defaultdict(dict))
        self.srv_candidates: dict[str, int] = defaultdict(int)
        self.ptr_zone = rdata.name_wire(ptr_zone) if ptr_zone else b""

    def add(self, name: str, qtype: int, rd: bytes) -> None:
        if _fits(name):
            self.data[name][qtype][rd] = None

    def address(self, name: str, ip: str, ptr: bool = True) -> None:
        self.add(name, *rdata.address(ip))
        if ptr and _fits(name):
            self.add(rdata.reverse_name(ip), T_PTR, rdata.name(name))

    def srv(self, name: str, port: int, target: str) -> None:
        if _fits(name) and _fits(target):
            self.srv_candidates[name] += 1
            self.add(name, T_SRV, rdata.srv(0, 0, port, target))  # weight set in finish()

    def finish(self) -> Records:
        """CoreDNS's SRV weights: 100/n per name, n counting the candidates before
        duplicates were merged (one per address and port), at least 1. PTR names of one
        address name's zone: the cluster zone's names win (rdata.ptr_targets)."""
        out: Records = {}
        for name, types in self.data.items():
            sets = {t: list(rds) for t, rds in types.items()}
            if T_SRV in sets:
                weight = max(1, 100 // self.srv_candidates[name])
                sets[T_SRV] = [rdata.srv_with_weight(rd, weight) for rd in sets[T_SRV]]
            if len(sets.get(T_PTR, ())) > 1:
                sets[T_PTR] = rdata.ptr_targets(sets[T_PTR], self.ptr_zone)
            out[name] = sets
        return out


def _fits(name: str) -> bool:
    """True when ``name`` can be encoded (255 octets at most); else logged, once."""
    if rdata.fits(name):
        return True
    if name not in _reported and len(_reported) < REPORTED_MAX:
        _reported.add(name)
        log.warning("name left out: over 255 octets: %s", name)
    return False


def service_key(labels: list[str], zone: str) -> tuple[str, str] | None:
    """(ns, svc) of a name ``...<svc>.<ns>.svc.<zone>`` given as lower-case labels
    (no root label), else None."""
    zl = zone.split(".")
    if len(labels) < len(zl) + 3 or labels[-len(zl):] != zl or labels[-len(zl) - 1] != "svc":
        return None
    return labels[-len(zl) - 2], labels[-len(zl) - 3]


def dashed(ip: str) -> str:
    """Endpoint name from an IP, as CoreDNS (1.12.3 and later) makes it: 1.2.3.4 ->
    1-2-3-4, ':' -> '-', and a trailing '-' (an address ending in '::') gets a '0'."""
    name = ip.replace(".", "-").replace(":", "-")
    return name + "0" if name.endswith("-") else name


def endpoint_label(ep: Endpoint, ip: str) -> str:
    return (ep.hostname or dashed(ip)).lower()


def _proto(p: Port) -> str:
    return "_" + p.protocol.lower()


def _ready(slices: tuple[EndpointSlice, ...] | list[EndpointSlice]
           ) -> list[tuple[EndpointSlice, Endpoint, str]]:
    return [(s, e, ip) for s in slices if s.address_type != "FQDN"
            for e in s.endpoints if e.ready for ip in e.addresses]


def build(d: Decision, zones: Zones) -> Records:
    """All records of service ``d.namespace/d.name`` in both zones."""
    rs = RecordSet(zones.cluster + ".")
    base = f"{d.name}.{d.namespace}.svc.{zones.cluster}.".lower()
    svc = d.service
    # Endpoint names of the local Service exist whatever the decision (CoreDNS serves
    # <ep>.<svc>.<ns>.svc for every Service with ready endpoints), with an SRV record
    # per port pointing to the name itself, as CoreDNS answers them.
    if svc is not None and svc.type != "ExternalName":
        for s, ep, ip in _ready(d.slices):
            name = f"{endpoint_label(ep, ip)}.{base}"
            rs.address(name, ip)
            for p in s.ports:
                rs.srv(name, p.port, name)
    if d.choice == LOCAL and svc is not None:
        _local(rs, d, base, d.slices)
    elif d.choice == IMPORT:
        _import_cluster_zone(rs, d, base, zones)
    if d.imp is not None:
        _clusterset(rs, d, zones)
    return rs.finish()


def _local(rs: RecordSet, d: Decision, base: str,
           slices: tuple[EndpointSlice, ...]) -> None:
    svc = d.service
    assert svc is not None
    if svc.type == "ExternalName":
        if not _is_ip(svc.external_name):  # an IP is no name to point to: NXDOMAIN
            rs.add(base, T_CNAME, rdata.name(svc.external_name + "."))
        return
    if svc.type == "ClusterIP":
        _cluster_ip(rs, base, svc.cluster_ips, svc.ports)
        return
    for s, ep, ip in _ready(slices):  # headless
        rs.address(base, ip, ptr=False)
        target = f"{endpoint_label(ep, ip)}.{base}"
        for p in s.ports:
            rs.srv(base, p.port, target)
            if p.name:
                rs.srv(f"_{p.name.lower()}.{_proto(p)}.{base}", p.port, target)


def _cluster_ip(rs: RecordSet, base: str, ips: tuple[str, ...], ports: tuple[Port, ...],
                ptr: bool = True) -> None:
    for ip in ips:
        rs.address(base, ip, ptr=ptr)
        for p in ports:  # one SRV candidate per address and port, as CoreDNS counts
            rs.srv(base, p.port, base)
            if p.name:
                rs.srv(f"_{p.name.lower()}.{_proto(p)}.{base}", p.port, base)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def import_ips(d: Decision) -> tuple[str, ...]:
    """The addresses a ClusterSetIP import answers with in the cluster zone."""
    return d.remote.ips


def _import_cluster_zone(rs: RecordSet, d: Decision, base: str, zones: Zones) -> None:
    imp = d.imp
    assert imp is not None
    if imp.type == "ClusterSetIP":
        _cluster_ip(rs, base, d.remote.ips, imp.ports, ptr=False)
        return
    cbase = f"{d.name}.{d.namespace}.svc.{zones.clusterset}.".lower()
    clusters = {id(s): _cluster_label(s, d) for s in d.remote.slices}
    for s, ep, ip in _ready(d.remote.answer_slices):  # the preferred tier's
        rs.address(base, ip, ptr=False)
        cluster = clusters[id(s)]
        if cluster:
            target = f"{endpoint_label(ep, ip)}.{cluster}.{cbase}"
            for p in s.ports:
                rs.srv(base, p.port, target)
                if p.name:
                    rs.srv(f"_{p.name.lower()}.{_proto(p)}.{base}", p.port, target)


def _cluster_label(s: EndpointSlice, d: Decision) -> str:
    """The cluster id naming a slice's endpoints in the clusterset zone (this cluster's
    id for its own slices that name none), or "" when there is none that is a DNS name."""
    own = any(x is s for x in d.remote.own)
    cluster = (s.cluster or (d.remote.cluster_id if own else "")).lower()
    return cluster if cluster and is_dns1123_subdomain(cluster) else ""


def _clusterset(rs: RecordSet, d: Decision, zones: Zones) -> None:
    """MCS DNS specification records for the import: every cluster's, this one's too."""
    imp = d.imp
    assert imp is not None
    cbase = f"{d.name}.{d.namespace}.svc.{zones.clusterset}.".lower()
    if imp.type == "ClusterSetIP":
        _cluster_ip(rs, cbase, d.remote.clusterset_ips, imp.ports)
        return
    every = (*d.remote.slices, *d.remote.own)
    clusters = {id(s): _cluster_label(s, d) for s in every}
    answering = {id(s) for s in d.remote.clusterset_answer_slices}  # the preferred tier
    for s, ep, ip in _ready(every):
        cluster = clusters[id(s)]
        if id(s) in answering:
            rs.address(cbase, ip, ptr=False)
        if not cluster:
            continue
        target = f"{endpoint_label(ep, ip)}.{cluster}.{cbase}"
        rs.address(target, ip)  # every cluster's endpoint names, whatever the tier
        if id(s) not in answering:
            continue
        for p in s.ports:
            rs.srv(cbase, p.port, target)
            if p.name:
                rs.srv(f"_{p.name.lower()}.{_proto(p)}.{cbase}", p.port, target)
