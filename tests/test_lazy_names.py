"""Names that are not kept compiled (endpoint, ``_port._proto`` and PTR names) answer
like compiled ones, and follow every change of the data behind them.

The table keeps only each service's own names compiled and encodes the others when asked
(``mcdns.answers.table``); these cases change the data under those names and check that
no stale answer, existence or serial survives the change.
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.rcode
import pytest
from conftest import Running, make_config, rrsets, running
from statebuild import endpoints, namespace, service, write

from mcdns.kube.reduce import reduce
from mcdns.model import Kind

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
    with running(make_config(state=str(path))) as s:
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
