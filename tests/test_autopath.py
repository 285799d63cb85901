"""Autopath: the first search-domain query of an external name answered in one step.

A pod in namespace ``default`` with ``ndots:5`` asks ``www.example.test`` first as
``www.example.test.default.svc.cluster.local``. With ``autopath: true`` mcdns walks the
rest of the search path itself and answers that first query with a CNAME to
``www.example.test.`` and its address, so the client stops searching; a name nobody has
stays NXDOMAIN (the client's search goes on); cluster names are answered as always. In
both resolver roles, and with a real client: glibc's resolver (``getent ahosts``) in a
network and mount namespace of its own, where mcdns serves 127.0.0.1:53.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import dns.rdatatype
import pytest
from conftest import DEMO_STATE, ROOT, Running, make_config, needs, running
from knot import ZONE, Knot

from mcdns.answers.rdata import name_wire
from mcdns.config import ConfigError, build
from mcdns.resolver.autopath import Autopath, read_search

pytestmark = pytest.mark.timeout(120)

SEARCH = ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
FIRST = ".default.svc.cluster.local"


@pytest.fixture(scope="module")
def knot() -> Iterator[Knot]:
    needs("knotd")
    needs("knotc")
    with Knot() as k:
        yield k


@pytest.fixture(scope="module")
def resolver(knot: Knot) -> Iterator[Running]:
    cfg = make_config(role="resolver", state=str(DEMO_STATE), upstreams=[knot.address],
                      autopath=True, search=SEARCH)
    with running(cfg) as srv:
        yield srv


def records(reply: object) -> list[str]:
    return [line for rrset in reply.answer for line in rrset.to_text().splitlines()]  # type: ignore[attr-defined]


def test_an_external_name_is_answered_at_the_first_search_domain(resolver: Running) -> None:
    reply = resolver.query(f"www.{ZONE}{FIRST}")
    assert reply.rcode() == dns.rcode.NOERROR
    cname, a = records(reply)
    assert cname.split()[0] == f"www.{ZONE}{FIRST}." and cname.split()[3:] == [
        "CNAME", f"www.{ZONE}."]
    assert a.split()[0] == f"www.{ZONE}." and a.split()[3:] == ["A", "192.0.2.1"]
    assert not reply.flags & dns.flags.AA
    # a CNAME chain upstream is followed as it stands: alias -> www
    chain = records(resolver.query(f"alias.{ZONE}{FIRST}"))
    assert [r.split()[3] for r in chain] == ["CNAME", "CNAME", "A"]


def test_a_name_nobody_has_stays_nxdomain(resolver: Running) -> None:
    reply = resolver.query(f"missing.{ZONE}{FIRST}")
    assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer


def test_nodata_comes_back_without_a_cname(resolver: Running) -> None:
    """As CoreDNS: NOERROR with no record to point at, the question as asked."""
    reply = resolver.query(f"txt.{ZONE}{FIRST}", "AAAA")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert str(reply.question[0].name) == f"txt.{ZONE}{FIRST}."


def test_cluster_names_are_unaffected(resolver: Running) -> None:
    reply = resolver.query(f"serve{FIRST}")
    assert records(reply) == [f"serve{FIRST}. 5 IN A 10.13.187.164"]
    assert resolver.query(f"nope{FIRST}").rcode() == dns.rcode.NXDOMAIN  # nothing upstream
    # a name under a later search domain is not the first step of a search: as always
    assert resolver.query(f"www.{ZONE}.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_a_service_found_at_a_later_search_domain_wins(resolver: Running) -> None:
    """``web.default`` asked as ``web.default.default.svc.cluster.local``: the walk finds
    ``web.default.svc.cluster.local`` (the next domain) before any upstream."""
    reply = resolver.query(f"web.default{FIRST}")
    assert records(reply)[0].split()[3:] == ["CNAME", f"web{FIRST}."]


def test_large_answers_truncate_and_come_whole_over_tcp(resolver: Running) -> None:
    reply = resolver.query(f"many.{ZONE}{FIRST}", use_edns=False)
    assert reply.flags & dns.flags.TC and not reply.answer
    whole = resolver.query(f"many.{ZONE}{FIRST}", tcp=True)
    assert len(whole.answer[1]) == 100  # the CNAME, then the 100 A records


def test_the_forwarder_role_walks_through_the_cluster_resolver(knot: Knot) -> None:
    with running(make_config(state=str(DEMO_STATE))) as stub, running(make_config(
            role="forwarder", cluster_upstreams=[f"{stub.host}:{stub.port}"],
            upstreams=[knot.address], autopath=True, search=SEARCH)) as fwd:
        assert records(fwd.query(f"www.{ZONE}{FIRST}"))[1].split()[3:] == ["A", "192.0.2.1"]
        assert records(fwd.query(f"serve{FIRST}")) == [f"serve{FIRST}. 5 IN A 10.13.187.164"]
        assert fwd.query(f"missing.{ZONE}{FIRST}").rcode() == dns.rcode.NXDOMAIN


def test_search_path_from_config_or_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\nsearch shop.svc.cluster.local. svc.cluster.local "
                    "cluster.local\noptions ndots:5\n")
    assert read_search(str(conf)) == ("shop.svc.cluster.local", "svc.cluster.local",
                                      "cluster.local")
    cfg = build({"role": "resolver", "autopath": True, "resolv_conf": str(conf),
                 "upstreams": ["10.0.0.1"]})
    ap = Autopath.from_config(cfg)
    assert ap is not None and ap.search[0] == "shop.svc.cluster.local"
    assert ap.applies(name_wire("api.example.com.shop.svc.cluster.local."))
    assert not ap.applies(name_wire("shop.svc.cluster.local."))  # nothing before it
    assert not ap.applies(name_wire("xshop.svc.cluster.local."))  # not a label boundary
    conf.write_text("nameserver 127.0.0.1\n")
    with pytest.raises(ConfigError) as err:
        Autopath.from_config(cfg)
    assert err.value.key == "resolv_conf"
    with pytest.raises(ConfigError) as err:
        build({"role": "resolver", "autopath": True, "search": ["corp.example.com"]})
    assert err.value.key == "search" and "inside zone cluster.local" in str(err.value)
    with pytest.raises(ConfigError) as err:
        build({"autopath": True})
    assert err.value.key == "autopath"


# ---- a real client: glibc's stub resolver ---------------------------------------------

BENCH = ROOT / "bench" / "autopath_bench.py"


def test_glibc_stops_searching_after_one_step() -> None:
    """``getent ahosts www.example.test`` in a namespace whose resolv.conf names mcdns
    (bench/autopath_bench.py does the set-up): four search steps without autopath (A and
    AAAA each), one with it, and the same addresses both ways."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root, unshare and ip (a network and mount namespace)")
    for tool in ("getent", "knotd", "knotc"):
        needs(tool)
    done = subprocess.run([sys.executable, str(BENCH), "--rounds", "1", "--json", "-"],
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.splitlines()[-1])
    off, on = got["off"], got["on"]
    assert off["addresses"] == on["addresses"] == ["192.0.2.1", "2001:db8::1"]
    assert off["queries"] == {"A": 4, "AAAA": 4}
    assert on["queries"] == {"A": 1, "AAAA": 1}
