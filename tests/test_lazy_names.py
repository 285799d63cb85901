"""Names that are not kept compiled (endpoint, ``_port._proto`` and PTR names) answer
like compiled ones, and follow every change of the data behind them.

The table keeps only each service's own names compiled and encodes the others when asked
(``mcdns.answers.table``); these cases change the data under those names and check that
no stale answer, existence or serial survives the change.
"""

from __future__ import annotations

import ipaddress
import urllib.request
from collections.abc import Iterator

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest
from conftest import Running, make_config, rrsets, running
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from statebuild import endpoints, namespace, service, write

from mcdns.answers.rdata import name_wire, reverse_name
from mcdns.answers.revindex import rev_key as _rev_key
from mcdns.answers.revindex import rev_wire as _rev_wire
from mcdns.objects.model import Kind
from mcdns.objects.reduce import reduce

Z = "svc.cluster.local."
STATE = [
    namespace("default"),
    service("db", ports=[("pg", 5432)]),  # headless
    endpoints("db", ready=["10.244.1.1", "10.244.1.2"], ports=[("pg", 5432)],
              hostnames={"10.244.1.1": "db-0"}),
    service("web", ip="10.96.0.1", ports=[("http", 80)]),
    endpoints("web", ready=["10.244.2.1"], ports=[("http", 8080)]),
    # a pod backing two services: its PTR holds both names
    service("api", ip="10.96.0.2", ports=[("http", 80)]),
    endpoints("api", ready=["10.244.2.1"], ports=[("http", 8080)]),
]


@pytest.fixture
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    path = write(tmp_path_factory.mktemp("lazy") / "state.yaml", STATE)
    # in-addr.arpa claimed whole (0.0.0.0/0), as the old default reverse_zones did: the
    # tests below ask for its SOA and for NXDOMAIN on unknown reverse names
    with running(make_config(state=str(path), service_cidrs=["0.0.0.0/0"])) as s:
        yield s


def apply(srv: Running, *objs: dict, delete: tuple[Kind, tuple[str, str]] | None = None
          ) -> None:
    store = srv.app.store

    def run() -> None:
        for obj in objs:
            store.upsert(reduce(obj))
        if delete is not None:
            store.delete(*delete)
        store.commit()

    srv.call(run)


def ptr(srv: Running, ip: str) -> tuple[int, set[str]]:
    name = ".".join(reversed(ip.split("."))) + ".in-addr.arpa."
    msg = srv.query(name, "PTR")
    return msg.rcode(), {line.split()[-1] for line in rrsets(msg.answer)}


def test_lazy_names_answer_like_compiled_ones(srv: Running) -> None:
    msg = srv.query(f"db-0.db.default.{Z}", "A")
    assert rrsets(msg.answer) == {f"db-0.db.default.{Z} 5 in a 10.244.1.1"}
    msg = srv.query(f"10-244-1-2.db.default.{Z}", "A")
    assert rrsets(msg.answer) == {f"10-244-1-2.db.default.{Z} 5 in a 10.244.1.2"}
    # A name of the service that has no A: NODATA, not NXDOMAIN, twice (memoised)
    for _ in range(2):
        msg = srv.query(f"db-0.db.default.{Z}", "AAAA")
        assert msg.rcode() == dns.rcode.NOERROR and not msg.answer and msg.authority
    # _port._proto SRV with the targets' addresses as glue
    msg = srv.query(f"_pg._tcp.db.default.{Z}", "SRV")
    assert len(msg.answer[0]) == 2
    assert rrsets(msg.additional) == {f"db-0.db.default.{Z} 5 in a 10.244.1.1",
                                      f"10-244-1-2.db.default.{Z} 5 in a 10.244.1.2"}
    # _tcp.<svc> is an empty non-terminal; a name below a lazy name does not exist
    assert srv.query(f"_tcp.db.default.{Z}", "A").rcode() == dns.rcode.NOERROR
    assert srv.query(f"x._tcp.db.default.{Z}", "A").rcode() == dns.rcode.NXDOMAIN
    assert srv.query(f"db-9.db.default.{Z}", "A").rcode() == dns.rcode.NXDOMAIN
    # PTR of a ClusterIP, of an endpoint, and of a pod in two services (both names)
    assert ptr(srv, "10.96.0.1") == (dns.rcode.NOERROR, {f"web.default.{Z}"})
    assert ptr(srv, "10.244.1.1") == (dns.rcode.NOERROR, {f"db-0.db.default.{Z}"})
    assert ptr(srv, "10.244.2.1") == (dns.rcode.NOERROR, {f"10-244-2-1.web.default.{Z}",
                                                          f"10-244-2-1.api.default.{Z}"})
    # reverse empty non-terminal vs a name nobody holds
    assert srv.query("244.10.in-addr.arpa.", "PTR").rcode() == dns.rcode.NOERROR
    assert ptr(srv, "10.244.9.9")[0] == dns.rcode.NXDOMAIN


def test_lazy_names_follow_changes(srv: Running) -> None:
    # warm every memo first, so stale answers would show
    assert ptr(srv, "10.244.1.1")[0] == dns.rcode.NOERROR
    assert srv.query(f"db-0.db.default.{Z}", "A").answer
    assert srv.query("5.1.244.10.in-addr.arpa.", "PTR").rcode() == dns.rcode.NXDOMAIN
    serial = srv.query("in-addr.arpa.", "SOA").answer[0][0].serial
    # db-0 moves to a new pod IP
    apply(srv, endpoints("db", ready=["10.244.1.5", "10.244.1.2"], ports=[("pg", 5432)],
                         hostnames={"10.244.1.5": "db-0"}))
    msg = srv.query(f"db-0.db.default.{Z}", "A")
    assert rrsets(msg.answer) == {f"db-0.db.default.{Z} 5 in a 10.244.1.5"}
    assert ptr(srv, "10.244.1.1")[0] == dns.rcode.NXDOMAIN
    assert ptr(srv, "10.244.1.5") == (dns.rcode.NOERROR, {f"db-0.db.default.{Z}"})
    assert srv.query("in-addr.arpa.", "SOA").answer[0][0].serial > serial
    msg = srv.query(f"_pg._tcp.db.default.{Z}", "SRV")
    assert f"db-0.db.default.{Z} 5 in a 10.244.1.5" in rrsets(msg.additional)
    # the second service of the shared pod goes: the PTR keeps the other name
    assert len(ptr(srv, "10.244.2.1")[1]) == 2
    apply(srv, delete=(Kind.SERVICE, ("default", "api")))
    assert ptr(srv, "10.244.2.1") == (dns.rcode.NOERROR, {f"10-244-2-1.web.default.{Z}"})
    assert srv.query(f"10-244-2-1.api.default.{Z}", "A").rcode() == dns.rcode.NXDOMAIN
    # every endpoint of db goes not ready: its endpoint names and PTRs go with them
    apply(srv, endpoints("db", not_ready=["10.244.1.5", "10.244.1.2"], ports=[("pg", 5432)],
                         hostnames={"10.244.1.5": "db-0"}))
    assert srv.query(f"db-0.db.default.{Z}", "A").rcode() == dns.rcode.NXDOMAIN
    assert srv.query(f"_pg._tcp.db.default.{Z}", "SRV").rcode() == dns.rcode.NXDOMAIN
    assert ptr(srv, "10.244.1.5")[0] == dns.rcode.NXDOMAIN
    assert srv.query("1.244.10.in-addr.arpa.", "PTR").rcode() == dns.rcode.NXDOMAIN


def _answers_local(srv: Running) -> float:
    """mcdns_answers_total{decision="local"}, scraped from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.app.http.port}/metrics",
                                timeout=5) as r:
        text = r.read().decode()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "mcdns_answers_total" and s.labels.get("decision") == "local":
                return s.value
    raise AssertionError("no mcdns_answers_total{decision=local}")


def test_service_srv_is_encoded_when_asked_and_follows_changes(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """A service's own name keeps only its address answers compiled; its SRV answer is
    built on first ask, counted under the service's decision, and never outlives a
    change of the service's ports or endpoints."""
    path = write(tmp_path_factory.mktemp("lazy-srv") / "state.yaml", STATE)
    with running(make_config(state=str(path), http="127.0.0.1:0")) as srv:
        table = srv.app.compiler.table
        web = f"web.default.{Z}"
        srv_suffix = (33).to_bytes(2, "big") + b"\x00\x01"
        assert not [k for k in table.entries if k.endswith(srv_suffix)], \
            "service SRV answers are not kept compiled"
        local = _answers_local(srv)
        for _ in range(3):  # first ask encodes it, the others hit the memo
            msg = srv.query(web, "SRV")
            assert rrsets(msg.answer) == {f"{web} 5 in srv 0 100 80 {web}"}
            assert rrsets(msg.additional) == {f"{web} 5 in a 10.96.0.1"}
        assert _answers_local(srv) == local + 3
        # headless: one SRV per endpoint, each target's address as glue (and over TCP)
        msg = srv.query(f"db.default.{Z}", "SRV", tcp=True)
        assert rrsets(msg.answer) == {
            f"db.default.{Z} 5 in srv 0 50 5432 db-0.db.default.{Z}",
            f"db.default.{Z} 5 in srv 0 50 5432 10-244-1-2.db.default.{Z}"}
        assert rrsets(msg.additional) == {f"db-0.db.default.{Z} 5 in a 10.244.1.1",
                                          f"10-244-1-2.db.default.{Z} 5 in a 10.244.1.2"}
        # ANY still has every type of the name
        any_types = {r.rdtype for r in srv.query(web, "ANY", tcp=True).answer}
        assert any_types == {dns.rdatatype.A, dns.rdatatype.SRV}
        serial = srv.query("cluster.local.", "SOA").answer[0][0].serial
        # the port changes: the memoised answer goes, the zone serial moves
        apply(srv, service("web", ip="10.96.0.1", ports=[("http", 8080)]))
        msg = srv.query(web, "SRV")
        assert rrsets(msg.answer) == {f"{web} 5 in srv 0 100 8080 {web}"}
        assert srv.query("cluster.local.", "SOA").answer[0][0].serial > serial
        # one db endpoint goes not ready: its SRV record and glue go with it
        apply(srv, endpoints("db", ready=["10.244.1.1"], not_ready=["10.244.1.2"],
                             ports=[("pg", 5432)], hostnames={"10.244.1.1": "db-0"}))
        msg = srv.query(f"db.default.{Z}", "SRV")
        assert rrsets(msg.answer) == {f"db.default.{Z} 5 in srv 0 100 5432 db-0.db.default.{Z}"}
        assert rrsets(msg.additional) == {f"db-0.db.default.{Z} 5 in a 10.244.1.1"}
        # a service without SRV records: NODATA, the name still exists
        portless = service("web", ip="10.96.0.1")
        portless["spec"]["ports"] = []
        apply(srv, portless)
        msg = srv.query(web, "SRV")
        assert msg.rcode() == dns.rcode.NOERROR and not msg.answer and msg.authority
        assert srv.query(web, "A").answer


@given(st.ip_addresses())
def test_reverse_index_key_round_trips(ip: ipaddress.IPv4Address | ipaddress.IPv6Address
                                       ) -> None:
    """The reverse index keys a PTR name by its address; the key gives the name back."""
    wire = name_wire(reverse_name(str(ip)))
    key = _rev_key(wire)
    assert key == (int(ip) if ip.version == 4 else (1 << 128) + int(ip))
    assert _rev_wire(key) == wire


@pytest.mark.parametrize("name", [
    "01.0.96.10.in-addr.arpa.",  # leading zero: another name than 1.0.96.10
    "256.0.96.10.in-addr.arpa.", "0.96.10.in-addr.arpa.", "1.1.0.96.10.in-addr.arpa.",
    "x.0.96.10.in-addr.arpa.", "in-addr.arpa.", "1.ip6.arpa.", "1-2.0.96.10.in-addr.arpa.",
    "g." + "0." * 31 + "ip6.arpa.", "00." + "0." * 31 + "ip6.arpa."])
def test_reverse_index_keeps_other_names_as_names(name: str) -> None:
    assert _rev_key(name_wire(name)) == name_wire(name)


def test_endpoint_with_several_addresses_serves_each(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """An endpoint keeps its first address apart from the others (memory); every one of
    them is still answered, at the service name and the endpoint's own name."""
    eps = endpoints("multi", ready=["10.244.7.1"], ports=[("http", 80)])
    eps["endpoints"][0]["addresses"] = ["10.244.7.1", "10.244.7.2", "10.244.7.3"]
    eps["endpoints"][0]["hostname"] = "m-0"
    slim = reduce(eps)
    assert [e.addresses for e in slim.endpoints] == [("10.244.7.1", "10.244.7.2",
                                                       "10.244.7.3")]
    path = write(tmp_path_factory.mktemp("multi") / "state.yaml",
                 [namespace("default"), service("multi", ports=[("http", 80)]), eps])
    with running(make_config(state=str(path))) as srv:
        want = {"10.244.7.1", "10.244.7.2", "10.244.7.3"}
        for name in (f"multi.default.{Z}", f"m-0.multi.default.{Z}"):
            msg = srv.query(name, "A")
            assert {line.split()[-1] for line in rrsets(msg.answer)} == want
        assert ptr(srv, "10.244.7.3") == (dns.rcode.NOERROR, {f"m-0.multi.default.{Z}"})


def test_truncated_lazy_answer_is_encoded_once(tmp_path_factory: pytest.TempPathFactory
                                               ) -> None:
    """An SRV answer too large for UDP goes the full path (for TC) every time; it is still
    built once (one lazy_entry) and then taken from the memo."""
    ips = [f"10.244.9.{i}" for i in range(1, 101)]
    path = write(tmp_path_factory.mktemp("trunc") / "state.yaml", [
        namespace("default"), service("many", ports=[("http", 80)]),
        endpoints("many", ready=ips, ports=[("http", 80)])])
    with running(make_config(state=str(path))) as srv:
        table, calls = srv.app.compiler.table, []
        build = table.lazy_entry
        srv.call(lambda: setattr(table, "lazy_entry", lambda *a: calls.append(a) or build(*a)))
        for _ in range(3):
            msg = srv.query(f"many.default.{Z}", "SRV")
            assert msg.flags & dns.flags.TC and not msg.answer
        assert len(srv.query(f"many.default.{Z}", "SRV", tcp=True).answer[0]) == 100
    assert len(calls) == 1


def test_cname_to_a_lazy_name_carries_and_follows_its_addresses(srv: Running) -> None:
    """An ExternalName pointing at an endpoint name (not kept compiled) answers the CNAME
    and the target's address, as CoreDNS does, and follows the target when it moves."""
    alias = f"alias.default.{Z}"
    apply(srv, service("alias", external=f"db-0.db.default.{Z}"))
    msg = srv.query(alias, "A")
    assert rrsets(msg.answer) == {f"{alias} 5 in cname db-0.db.default.{Z}",
                                  f"db-0.db.default.{Z} 5 in a 10.244.1.1"}
    apply(srv, endpoints("db", ready=["10.244.1.7", "10.244.1.2"], ports=[("pg", 5432)],
                         hostnames={"10.244.1.7": "db-0"}))
    msg = srv.query(alias, "A")
    assert rrsets(msg.answer) == {f"{alias} 5 in cname db-0.db.default.{Z}",
                                  f"db-0.db.default.{Z} 5 in a 10.244.1.7"}


def test_endpoint_srv_is_a_lazy_record_like_the_others(srv: Running) -> None:
    name = f"db-0.db.default.{Z}"
    for _ in range(2):
        msg = srv.query(name, "SRV")
        assert rrsets(msg.answer) == {f"{name} 5 in srv 0 100 5432 {name}"}
        assert rrsets(msg.additional) == {f"{name} 5 in a 10.244.1.1"}
    # memoised with the other lazy answers: the hot path answers the second ask
    key = name_wire(name) + b"\x00\x21\x00\x01"
    assert key in srv.app.compiler.table.negative_cache


def test_a_new_namespace_moves_the_serial(srv: Running) -> None:
    serial = srv.query("cluster.local.", "SOA").answer[0][0].serial
    assert srv.query(f"ns1.{Z}", "A").rcode() == dns.rcode.NXDOMAIN
    apply(srv, namespace("ns1"))
    assert srv.query(f"ns1.{Z}", "A").rcode() == dns.rcode.NOERROR
    assert srv.query("cluster.local.", "SOA").answer[0][0].serial > serial


def test_a_change_that_touches_no_answer_keeps_the_memo(srv: Running) -> None:
    """A slice of a Service that does not exist compiles to nothing: the memo of lazy
    and negative answers survives it."""
    assert ptr(srv, "10.244.1.1")[0] == dns.rcode.NOERROR
    memo = srv.app.compiler.table.negative_cache
    before = len(memo)
    assert before > 0
    apply(srv, endpoints("ghost", ready=["10.244.3.3"]))
    assert len(memo) == before
