"""Real clients and a real forwarder: ``dig`` as a subprocess, and Unbound forwarding the
zones to mcdns the way CoreDNS's ``forward`` plugin does in the stub role.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from conftest import DEMO_STATE, Running, make_config, needs, running
from knot import free_port


@dataclass
class Dig:
    status: str
    flags: set[str]
    answer: list[tuple[str, str, str, str]]  # name, class, type, rdata
    authority: list[tuple[str, str, str, str]]


def dig(host: str, port: int, *args: str) -> Dig:
    needs("dig")
    out = subprocess.run(["dig", f"@{host}", "-p", str(port), "+time=2", "+tries=1",
                          "+noall", "+comments", "+answer", "+authority", *args],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r";; flags: ([a-z ]+);", out)
    assert status and flags, out
    answer: list[tuple[str, str, str, str]] = []
    authority: list[tuple[str, str, str, str]] = []
    section = None
    for line in out.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            section = answer
        elif line.startswith(";; AUTHORITY SECTION"):
            section = authority
        elif line and not line.startswith(";") and section is not None:
            name, _ttl, klass, rtype, rdata = line.split(None, 4)
            section.append((name, klass, rtype, rdata.strip()))
    return Dig(status.group(1), set(flags.group(1).split()), answer, authority)


@pytest.fixture(scope="module")
def demo_srv() -> Iterator[Running]:
    with running(make_config(state=str(DEMO_STATE))) as srv:
        yield srv


def test_dig_fallback_answer(demo_srv: Running) -> None:
    r = dig(demo_srv.host, demo_srv.port, "serve.default.svc.cluster.local")
    assert r.status == "NOERROR" and "aa" in r.flags
    assert r.answer == [("serve.default.svc.cluster.local.", "IN", "A", "10.13.187.164")]


def test_dig_over_tcp_and_srv(demo_srv: Running) -> None:
    r = dig(demo_srv.host, demo_srv.port, "+tcp", "_http._tcp.web.default.svc.cluster.local",
            "SRV")
    assert r.answer == [("_http._tcp.web.default.svc.cluster.local.", "IN", "SRV",
                         "0 100 80 web.default.svc.cluster.local.")]


def test_dig_nxdomain_has_soa(demo_srv: Running) -> None:
    r = dig(demo_srv.host, demo_srv.port, "nope.default.svc.cluster.local")
    assert r.status == "NXDOMAIN" and "aa" in r.flags and not r.answer
    assert len(r.authority) == 1 and r.authority[0][2] == "SOA"
    assert r.authority[0][3].startswith("ns.dns.cluster.local. hostmaster.cluster.local. ")


def test_dig_explain(demo_srv: Running) -> None:
    r = dig(demo_srv.host, demo_srv.port, "serve.default.svc.cluster.local", "CH", "TXT")
    text = " ".join(rd for *_x, rd in r.answer)
    assert r.status == "NOERROR"
    assert '"decision=import degraded=false"' in text
    assert "ready_by_cluster=member1:2" in text


def test_dig_clusterset_headless(demo_srv: Running) -> None:
    r = dig(demo_srv.host, demo_srv.port, "db.shop.svc.clusterset.local")
    assert sorted(rd for *_x, rd in r.answer) == ["10.10.3.5", "10.30.3.6"]


def test_dig_reverse(demo_srv: Running) -> None:
    r = dig(demo_srv.host, demo_srv.port, "-x", "10.96.20.20")
    assert r.answer == [("20.20.96.10.in-addr.arpa.", "IN", "PTR",
                         "web.default.svc.cluster.local.")]


UNBOUND_CONF = """
server:
    interface: 127.0.0.1
    port: {port}
    do-daemonize: no
    use-syslog: no
    logfile: ""
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    do-not-query-localhost: no
    do-ip6: no
    num-threads: 1
    module-config: "iterator"
    qname-minimisation: no
    verbosity: 1
    local-zone: "10.in-addr.arpa." nodefault
    local-zone: "local." nodefault
    domain-insecure: "cluster.local."
    domain-insecure: "clusterset.local."
    domain-insecure: "in-addr.arpa."
remote-control:
    control-enable: no
forward-zone:
    name: "cluster.local."
    forward-addr: 127.0.0.1@{upstream}
forward-zone:
    name: "clusterset.local."
    forward-addr: 127.0.0.1@{upstream}
forward-zone:
    name: "in-addr.arpa."
    forward-addr: 127.0.0.1@{upstream}
"""


@pytest.fixture
def unbound(demo_srv: Running, tmp_path: Path) -> Iterator[int]:
    needs("unbound")
    port = free_port()
    conf = tmp_path / "unbound.conf"
    conf.write_text(UNBOUND_CONF.format(port=port, dir=tmp_path, upstream=demo_srv.port))
    proc = subprocess.Popen(["unbound", "-d", "-c", str(conf)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                q = dns.message.make_query("web.default.svc.cluster.local.", "A")
                dns.query.udp(q, "127.0.0.1", port=port, timeout=0.5)
                break
            except (OSError, dns.exception.Timeout):
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read() if proc.stdout else ""
                    pytest.fail(f"unbound did not start: {out}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_unbound_forwards_zones_to_mcdns(unbound: int) -> None:
    r = dig("127.0.0.1", unbound, "serve.default.svc.cluster.local")
    assert r.status == "NOERROR" and "aa" not in r.flags  # a recursive answer now
    assert r.answer == [("serve.default.svc.cluster.local.", "IN", "A", "10.13.187.164")]
    r = dig("127.0.0.1", unbound, "web.default.svc.cluster.local")
    assert [rd for *_x, rd in r.answer] == ["10.96.20.20"]
    r = dig("127.0.0.1", unbound, "billing.shop.svc.clusterset.local")
    assert [rd for *_x, rd in r.answer] == ["10.13.50.7"]
    r = dig("127.0.0.1", unbound, "search.default.svc.cluster.local", "CNAME")
    assert [rd for *_x, rd in r.answer] == ["search.example.com."]
    r = dig("127.0.0.1", unbound, "missing.default.svc.cluster.local")
    assert r.status == "NXDOMAIN"
    assert r.authority and r.authority[0][2] == "SOA"
    r = dig("127.0.0.1", unbound, "-x", "10.96.20.20")
    assert [rd for *_x, rd in r.answer] == ["web.default.svc.cluster.local."]


def test_forward_health_check_gets_an_answer(demo_srv: Running) -> None:
    """CoreDNS's forward plugin probes with `. IN NS`: it must get an answer (REFUSED)."""
    q = dns.message.make_query(".", "NS")
    resp = dns.query.udp(q, demo_srv.host, port=demo_srv.port, timeout=2)
    assert resp.rcode() == dns.rcode.REFUSED
