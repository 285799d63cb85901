"""Which upstreams the resolver uses and whom it answers (no sockets beyond ioctls)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from mcdns.config import HostPort, build
from mcdns.resolver.access import AccessList
from mcdns.resolver.netinfo import interface_networks
from mcdns.resolver.upstream import UpstreamStats, choose_upstreams, is_self, read_resolv_conf


def test_resolv_conf_nameservers_in_order(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# generated\nsearch shop.svc.cluster.local svc.cluster.local\n"
        "nameserver 10.96.0.10\nnameserver fe80::1%eth0\nnameserver not-an-ip\n"
        "options ndots:5\n  nameserver 192.0.2.53  # trailing\n"
    )
    assert read_resolv_conf(str(conf)) == [
        HostPort("10.96.0.10", 53),
        HostPort("fe80::1", 53),
        HostPort("192.0.2.53", 53),
    ]
    assert read_resolv_conf(str(tmp_path / "missing")) == []


def test_configured_upstreams_win_and_self_is_skipped(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.1\n")
    cfg = build(
        {
            "upstreams": ["127.0.0.1:53", "192.0.2.9:5353"],
            "resolv_conf": str(conf),
            "listen": ["127.0.0.1:53"],
        }
    )
    assert choose_upstreams(cfg) == [HostPort("192.0.2.9", 5353)]
    cfg = build({"resolv_conf": str(conf), "listen": ["127.0.0.1:53"]})
    assert choose_upstreams(cfg) == [HostPort("192.0.2.1", 53)]


def test_wildcard_listen_is_every_local_address() -> None:
    wildcard = (HostPort("0.0.0.0", 53),)
    assert is_self(HostPort("127.0.0.53", 53), wildcard)
    assert not is_self(HostPort("127.0.0.53", 5353), wildcard)
    assert not is_self(HostPort("192.0.2.200", 53), (HostPort("127.0.0.1", 53),))
    for addr, _ in interface_networks():
        assert is_self(HostPort(str(addr), 53), (HostPort("::", 53), *wildcard))


def test_default_allow_list_is_loopback_and_listen_networks() -> None:
    lan = [(a, n) for a, n in interface_networks() if a.version == 4 and not a.is_loopback]
    listen = [f"{lan[0][0]}:53"] if lan else ["127.0.0.1:53"]
    access = AccessList(build({"listen": listen}))
    assert access.allowed("127.0.0.1") and access.allowed("::1")
    assert not access.allowed("198.18.0.1")
    if lan:
        addr, net = lan[0]
        assert ipaddress.ip_network(net) in access.networks
        neighbour = next((ip for ip in net.hosts() if ip != addr), None)
        assert neighbour is None or access.allowed(str(neighbour))


def test_duration_histogram_buckets() -> None:
    stats = UpstreamStats()
    for seconds in (0.0005, 0.003, 0.003, 9.0):
        stats.duration.observe(seconds)
    assert stats.duration.counts[0] == 1 and stats.duration.counts[2] == 2
    assert stats.duration.counts[-1] == 1
    assert round(stats.duration.sum, 4) == 9.0065
