"""This host's interface addresses and networks, without shelling out to ``ip``.

The resolver's default allow-list is loopback plus the networks of its listen addresses,
and it must recognise its own addresses among the resolv.conf nameservers. Container
images often lack iproute2, so IPv4 comes from the SIOCGIFADDR/SIOCGIFNETMASK ioctls
(one primary address per interface, which is what pods have) and IPv6 from
/proc/net/if_inet6. Read once: interfaces of a pod do not change while it runs.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from pathlib import Path

SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
IF_INET6 = Path("/proc/net/if_inet6")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.cache
def interface_networks() -> tuple[tuple[Address, Network], ...]:
    """(address, network) of every interface address this host has (best effort)."""
    return tuple(_ipv4()) + tuple(_ipv6())


def local_addresses() -> frozenset[Address]:
    return frozenset(addr for addr, _ in interface_networks())


def _ipv4() -> list[tuple[Address, Network]]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not Linux
        return []
    found: list[tuple[Address, Network]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            req = struct.pack("256s", name.encode()[:15])
            try:
                addr = fcntl.ioctl(s.fileno(), SIOCGIFADDR, req)[20:24]
                mask = fcntl.ioctl(s.fileno(), SIOCGIFNETMASK, req)[20:24]
            except OSError:
                continue
            ip = ipaddress.IPv4Address(addr)
            net = ipaddress.IPv4Network(f"{ip}/{ipaddress.IPv4Address(mask)}", strict=False)
            found.append((ip, net))
    return found


def _ipv6() -> list[tuple[Address, Network]]:
    try:
        lines = IF_INET6.read_text().splitlines()
    except OSError:
        return []
    found: list[tuple[Address, Network]] = []
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        try:
            ip = ipaddress.IPv6Address(bytes.fromhex(parts[0]))
            net = ipaddress.IPv6Network(f"{ip}/{int(parts[2], 16)}", strict=False)
        except ValueError:
            continue
        found.append((ip, net))
    return found
