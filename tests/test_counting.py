"""Every answer is counted once, under its own labels, whichever path built it.

The hot path counts an answer with the stored entry's labels (zone, type, rcode and the
service's decision). Queries it does not take (an EDNS option such as dig's COOKIE, a
truncated answer) go through the full parser; their answers must count the same way,
and a forwarded answer (resolver role) must count once.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import dns.edns
import dns.message
import pytest
from conftest import DEMO_STATE, Running, make_config, needs, running
from knot import ZONE, Knot
from prometheus_client.parser import text_string_to_metric_families

from mcdns.resolver.resolver import Resolver

SERVE_WEB = "web.default.svc.cluster.local."  # local, healthy in the demo state


def metrics(srv: Running) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.app.http.port}/metrics",
                                timeout=5) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def sample(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    """The sum of ``name``'s series whose labels include ``labels`` (CoreDNS's label sets
    add ``server`` and ``family`` to the ones asked for here)."""
    return sum(v for (n, ls), v in m.items()
               if n == name and all(dict(ls).get(k) == want for k, want in labels.items()))


def ask_with_cookie(srv: Running, name: str) -> dns.message.Message:
    """An A query carrying an EDNS COOKIE option, as dig sends by default."""
    cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"\x01" * 8)
    return srv.query(name, "A", use_edns=0, options=[cookie])


def test_answer_off_the_hot_path_counts_under_its_decision() -> None:
    with running(make_config(state=str(DEMO_STATE), http="127.0.0.1:0")) as srv:
        before = metrics(srv)
        for _ in range(3):
            reply = ask_with_cookie(srv, SERVE_WEB)
            assert [r.address for r in reply.answer[0]] == ["10.96.20.20"]
        after = metrics(srv)
    assert (sample(after, "mcdns_answers_total", decision="local")
            - sample(before, "mcdns_answers_total", decision="local")) == 3
    key = {"zone": "cluster.local.", "proto": "udp", "type": "A"}  # with its dot, as CoreDNS
    assert (sample(after, "mcdns_dns_requests_total", **key)
            - sample(before, "mcdns_dns_requests_total", **key)) == 3


@pytest.fixture(scope="module")
def knot() -> Iterator[Knot]:
    needs("knotd")
    with Knot() as k:
        yield k


def test_forwarded_answer_counts_once(knot: Knot) -> None:
    cfg = make_config(role="resolver", upstreams=[knot.address], state=str(DEMO_STATE),
                      http="127.0.0.1:0")
    with running(cfg, forwarder=Resolver(cfg)) as srv:
        before = metrics(srv)
        for _ in range(2):  # forwarded, then from the cache (answered at once)
            reply = ask_with_cookie(srv, f"www.{ZONE}.")
            assert reply.answer
        after = metrics(srv)
    key = {"zone": ".", "proto": "udp", "type": "A"}  # outside the zones: ".", as CoreDNS's root
    assert (sample(after, "mcdns_dns_requests_total", **key)
            - sample(before, "mcdns_dns_requests_total", **key)) == 2
    # forwarded, then from the cache: written by forward, then by the cache
    for plugin in ("forward", "cache"):
        at = {"zone": ".", "rcode": "NOERROR", "plugin": plugin}
        assert (sample(after, "mcdns_dns_responses_total", **at)
                - sample(before, "mcdns_dns_responses_total", **at)) == 1, plugin
