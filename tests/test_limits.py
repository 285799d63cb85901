"""Input limits: oversized state and config files are refused with a clear
message; absurd objects are rejected one by one with a log line naming each, never crash
the loader and never change the answers for anyone else.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import dns.rcode
import pytest
from conftest import Running, make_config, running
from statebuild import Obj, endpoints, namespace, service, service_import, write

from mcdns.config import MAX_CONFIG_BYTES, ConfigError, read_file
from mcdns.objects.model import EndpointSlice, Kind, Service
from mcdns.objects.names import SUBDOMAIN_MAX
from mcdns.objects.reduce import MAX_PORTS, ReduceError, reduce
from mcdns.state.statefile import MAX_STATE_BYTES, StateError, read_objects, reduce_all

WEB = "web.default.svc.cluster.local."
POD = "pod-0.db.default.svc.cluster.local."


def good() -> list[Obj]:
    return [
        namespace("default"),
        service("web", ip="10.96.0.1"), endpoints("web", ready=["10.244.0.1"]),
        service("db"), endpoints("db", ready=["10.244.0.2"], hostnames={"10.244.0.2": "pod-0"}),
        service_import("imp", ips=["10.13.0.1"]),
    ]


def with_field(obj: Obj, path: str, value: Any) -> Obj:
    """``obj`` with the dotted ``path`` set to ``value`` (list indexes as numbers)."""
    node: Any = obj
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return obj


def many_ports(n: int) -> list[dict[str, Any]]:
    return [{"name": f"p{i}", "port": 1 + i % 65535, "protocol": "TCP"} for i in range(n)]


# (object, what the log line must say besides the object's name)
ABSURD: dict[str, tuple[Obj, str]] = {
    "10,000 service ports": (
        with_field(service("ports", ip="10.96.9.1"), "spec.ports", many_ports(10_000)),
        f"limit {MAX_PORTS}"),
    "10,000 slice ports": (
        with_field(endpoints("web", name="web-ports"), "ports", many_ports(10_000)),
        f"limit {MAX_PORTS}"),
    "300-char service name": (service("s" * 300, ip="10.96.9.2"), "not a valid name"),
    "64-char label in a name": (service("l" * 64, ip="10.96.9.3"), "not a valid name"),
    "300-char namespace": (service("ok", ns="n" * 300, ip="10.96.9.4"), "not a valid namespace"),
    "cluster IP not an IP": (service("badip", ip="10.96.300.1"), "not an IP address"),
    "endpoint address not an IP": (
        endpoints("web", name="web-badaddr", ready=["example.com"]), "not an IP address"),
    "IPv4 in an IPv6 slice": (
        endpoints("web", name="web-v6", ready=["10.244.0.9"], family="IPv6"), "IPv6 slice"),
    "IPv6 in an IPv4 slice": (
        endpoints("web", name="web-v4", ready=["fd00::9"]), "IPv4 slice"),
    "negative port": (service("neg", ip="10.96.9.5", ports=[("http", -1)]),
                      "not a port number"),
    "port 70000": (service("big", ip="10.96.9.6", ports=[("http", 70000)]),
                   "not a port number"),
    "port as a string": (with_field(service("strport", ip="10.96.9.7"), "spec.ports.0.port",
                                    "80"), "not a port number"),
    "ports not a list": (with_field(service("plist", ip="10.96.9.8"), "spec.ports", "80"),
                         "not a list"),
    "endpoints not a list": (with_field(endpoints("web", name="web-eps"), "endpoints", "x"),
                             "not a list"),
    "endpoint not a mapping": (with_field(endpoints("web", name="web-ep"), "endpoints", [7]),
                               "malformed"),
    "spec not a mapping": (with_field(service("spec", ip="10.96.9.9"), "spec", ["x"]),
                           "malformed"),
    "metadata not a mapping": ({"apiVersion": "v1", "kind": "Service", "metadata": "x"},
                               "without metadata"),
    "hostname not a label": (
        endpoints("db", name="db-host", ready=["10.244.0.3"],
                  hostnames={"10.244.0.3": "a.b"}), "not a DNS-1123 label"),
    "protocol unknown": (with_field(service("proto", ip="10.96.9.10"),
                                    "spec.ports.0.protocol", "QUIC"), "not TCP, UDP or SCTP"),
    "address type unknown": (with_field(endpoints("web", name="web-type"), "addressType",
                                        "IPv5"), "is not IPv4, IPv6 or FQDN"),
    "import type unknown": (with_field(service_import("imp2"), "spec.type", "Magic"),
                            "not ClusterSetIP or Headless"),
    "import ips not a list": (with_field(service_import("imp3"), "spec.ips", "10.0.0.1"),
                              "not a list"),
    "min-ready annotation not a number": (
        service("ann", ip="10.96.9.11", annotations={"mcdns.io/min-ready": "lots"}),
        "not an integer"),
    "externalName over 253": (service("ext", external="e" * 300 + ".com"),
                              "not a domain name"),
    # these four slipped through before (reduce.py now checks them):
    "dotted name shadowing another service's pod": (
        service("pod-0.db", ip="10.66.6.6"), "DNS-1035 label"),
    "service name starting with a digit": (service("1st", ip="10.66.6.8"), "DNS-1035 label"),
    "upper-case slice name": (endpoints("web", name="Web-Abc"), "DNS-1123 subdomain"),
    "dotted namespace": (service("s", ns="db.default", ip="10.66.6.7"),
                         "not a valid namespace"),
    "externalName with a 64-octet label": (service("ext2", external="x" * 64 + ".com"),
                                           "not a domain name"),
    "externalName with an empty label": (service("ext3", external="a..b"),
                                         "not a domain name"),
    "5,000 addresses in one endpoint": (
        with_field(endpoints("web", name="web-addrs"), "endpoints",
                   [{"addresses": [f"10.2.{i // 250}.{i % 250 + 1}" for i in range(5000)]}]),
        "limit 100"),
    # A label value is at most 63 characters; the API server refuses longer ones. (A
    # dotted source cluster is no longer here: cluster ids may be DNS subdomains, and
    # tests/test_interop.py answers for one.)
    "300-char source cluster": (endpoints("imp", name="imp-c1", mcs="imp", cluster="c" * 300,
                                          ready=["10.3.0.1"]), "not a valid label value"),
}


def name_of(obj: Obj) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name")) if isinstance(meta, dict) else ""


# ---- size limits ------------------------------------------------------------------------

def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space."""
    path.write_text("apiVersion: v1\nkind: List\nitems: []\n")
    os.truncate(path, size)
    return path


def test_state_file_over_the_limit_is_refused_naming_it(tmp_path: Path) -> None:
    path = sparse(tmp_path / "huge.yaml", MAX_STATE_BYTES + 1)
    with pytest.raises(StateError, match=r"huge\.yaml: \d+ bytes is over the limit of"):
        read_objects(path)


def test_config_file_over_the_limit_is_refused_naming_it(tmp_path: Path) -> None:
    path = sparse(tmp_path / "huge-config.yaml", MAX_CONFIG_BYTES + 1)
    with pytest.raises(ConfigError, match=r"huge-config\.yaml is larger than"):
        read_file(path)


def test_yaml_alias_bomb_is_cheap(tmp_path: Path) -> None:
    """A "billion laughs" file: aliases are references, and nothing walks them."""
    lines = ["apiVersion: v1", "kind: List", "bomb:", "  l0: &l0 [lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        lines.append(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]")
    lines += ["items:", "- apiVersion: v1", "  kind: Service",
              "  metadata: {name: bomb, namespace: default, annotations: {x: *l9}}",
              "  spec: {clusterIP: 10.96.9.99, ports: *l9}"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    by_kind = reduce_all(read_objects(path), strict=False)
    assert time.monotonic() - start < 2
    assert by_kind[Kind.SERVICE] == []  # ports of a billion lols: rejected, quickly


# ---- absurd objects, one at a time ---------------------------------------------------------

@pytest.mark.parametrize("case", list(ABSURD))
def test_absurd_object_is_skipped_alone_with_a_log_line(case: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    bad, problem = ABSURD[case]
    objs = [*good(), bad]
    with caplog.at_level(logging.WARNING, logger="mcdns.state"):
        by_kind = reduce_all(objs, strict=False)
    kept = sum(len(v) for v in by_kind.values())
    assert kept == len(good())  # every good object kept, the bad one gone
    lines = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(lines) == 1, lines
    assert problem in lines[0] and name_of(bad)[:50] in lines[0], lines[0]
    with pytest.raises(StateError, match=problem.split(" ")[0]):
        reduce_all(objs, strict=True)  # at start-up the same object is fatal, and named


def dotted(length: int) -> str:
    """A domain name of exactly ``length`` characters: labels of 63, the last shorter."""
    name = ".".join(["x" * 63] * 5)[:length]
    assert len(name) == length and not name.endswith(".")
    return name


def test_name_length_limit_is_dns_limit() -> None:
    """A name's text may be as long as DNS allows (253 characters, 255 octets on the
    wire): an ExternalName target or an EndpointSlice name of 253 is kept, 254 refused.
    An EndpointSlice name is a DNS subdomain, not a label: Karmada's 121-character
    ``imported-<cluster>-<slice>`` names have no dot and are valid."""
    assert SUBDOMAIN_MAX == 253
    karmada = "imported-" + "m" * 48 + "-" + "s" * 63
    eps = reduce(endpoints("derived-web", name=karmada, ready=["10.244.0.1"]))
    assert isinstance(eps, EndpointSlice) and eps.name == karmada and len(karmada) == 121
    longest, over = dotted(253), dotted(254)
    ext = reduce(service("ext", external=longest))
    assert isinstance(ext, Service) and ext.external_name == longest
    ext = reduce(service("ext", external=longest + "."))  # the root's dot is not counted
    assert isinstance(ext, Service) and ext.external_name == longest
    with pytest.raises(ReduceError, match=r"spec\.externalName .* is not a domain name"):
        reduce(service("ext", external=over))
    eps = reduce(endpoints("web", name=longest, ready=["10.244.0.1"]))
    assert isinstance(eps, EndpointSlice) and eps.name == longest
    with pytest.raises(ReduceError, match=r"metadata\.name .* is not a valid name"):
        reduce(endpoints("web", name=over, ready=["10.244.0.1"]))


# ---- the running server: reload with every absurd object at once ---------------------------

def answers(srv: Running) -> dict[str, list[str]]:
    out = {}
    for name, rdtype in ((WEB, "A"), (POD, "A"), ("imp.default.svc.clusterset.local.", "A"),
                         ("_http._tcp.web.default.svc.cluster.local.", "SRV")):
        msg = srv.query(name, rdtype)
        assert msg.rcode() == dns.rcode.NOERROR, (name, msg)
        out[name] = sorted(str(r) for rrset in msg.answer for r in rrset)
    return out


def test_reload_with_every_absurd_object_keeps_everyone_elses_answers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "state.yaml", good())
    with running(make_config(state=str(path))) as srv:
        before = answers(srv)
        gen = srv.app.store.generation
        objs = [*good(), *(bad for bad, _ in ABSURD.values()),
                service("fresh", ip="10.96.0.77")]  # a good change in the same file
        with caplog.at_level(logging.WARNING, logger="mcdns.state"):
            tmp = path.with_suffix(".tmp")
            write(tmp, objs)
            tmp.replace(path)
            deadline = time.monotonic() + 10
            while srv.app.store.generation == gen and time.monotonic() < deadline:
                time.sleep(0.02)
        assert srv.app.store.generation != gen, "the file was not reloaded"
        assert answers(srv) == before
        fresh = srv.query("fresh.default.svc.cluster.local.", "A")
        assert [r.address for rrset in fresh.answer for r in rrset] == ["10.96.0.77"]
        skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
        assert len(skipped) == len(ABSURD), skipped
        for name in ("ports", "badip", "neg", "strport"):
            msg = srv.query(f"{name}.default.svc.cluster.local.", "A")
            assert msg.rcode() == dns.rcode.NXDOMAIN


def test_oversized_state_file_on_reload_keeps_the_last_good_state(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "state.yaml", good())
    with running(make_config(state=str(path))) as srv:
        before = answers(srv)
        source = srv.app.state_source
        assert source is not None
        failures = source.failures
        with caplog.at_level(logging.ERROR, logger="mcdns.state"):
            sparse(tmp_path / "big.tmp", MAX_STATE_BYTES + 1).replace(path)
            deadline = time.monotonic() + 10
            while source.failures == failures and time.monotonic() < deadline:
                time.sleep(0.02)
        assert source.failures == failures + 1
        assert any("over the limit" in r.getMessage() for r in caplog.records)
        assert answers(srv) == before
