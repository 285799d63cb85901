"""Who may use the resolver: an allow-list of client networks, checked once per client IP.

An open resolver on a node network is an amplification tool, so the resolver role answers
only the configured networks (``allow``), by default loopback plus the networks of its
listen addresses. The check sits on every query, so the verdict is remembered per IP
string in a bounded dict (cleared when full: spoofed UDP sources must not grow it).
"""

from __future__ import annotations

import ipaddress

from mcdns.config import Config
from mcdns.resolver.netinfo import Network, interface_networks

LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
MAX_REMEMBERED = 65536


def default_networks(cfg: Config) -> tuple[Network, ...]:
    """Loopback plus the network of every listen address (all networks for a wildcard)."""
    nets: list[Network] = list(LOOPBACK)
    for hp in cfg.listen:
        try:
            own = ipaddress.ip_address(hp.host)
        except ValueError:
            continue
        on_interfaces = [
            net
            for addr, net in interface_networks()
            if addr.version == own.version and (own.is_unspecified or addr == own)
        ]
        nets.extend(on_interfaces or [ipaddress.ip_network(own)])
    return tuple(dict.fromkeys(nets))


class AccessList:
    """The allow-list check with a per-IP memo."""

    def __init__(self, cfg: Config) -> None:
        if cfg.allow:
            self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in cfg.allow)
        else:
            self.networks = default_networks(cfg)
        self._seen: dict[str, bool] = {}

    def allowed(self, peer_ip: str) -> bool:
        verdict = self._seen.get(peer_ip)
        if verdict is None:
            verdict = self._check(peer_ip)
            if len(self._seen) >= MAX_REMEMBERED:
                self._seen.clear()
            self._seen[peer_ip] = verdict
        return verdict

    def _check(self, peer_ip: str) -> bool:
        try:
            ip = ipaddress.ip_address(peer_ip.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)
