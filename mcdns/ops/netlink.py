"""Node-local mode: put the addresses mcdns answers on onto an interface, over netlink.

As NodeLocal DNSCache does, mcdns in a hostNetwork DaemonSet answers on a link-local
address (169.254.20.10) that kubelet's clusterDNS names on every node. ``mcdns
setup-interface`` (the DaemonSet's init container, the one holder of NET_ADMIN) puts each
address (/32, /128) on a dummy interface it creates and brings up (``mcdns0``); a kernel
without the dummy link type refuses one (EOPNOTSUPP), and the addresses then go on ``lo``,
with a line saying so. The server that starts next binds them and needs no capability
but NET_BIND_SERVICE.

Idempotent: an address already on any interface (a previous run put it there, or an
administrator) is left as it is, and an existing interface is used, not recreated. The
addresses outlive the server on purpose: while it restarts, a query to an address that is
there but unanswered is refused at once (ICMP port unreachable) and the client moves to
its next nameserver, where an address that is gone would hold it for a whole timeout.
``remove`` (``setup-interface --remove``) takes them away after an uninstall.

Failures are one line naming the operation and the reason, and without CAP_NET_ADMIN
which capability is missing; ``InterfaceError`` is a ``ListenError`` (the arguments are
fine, the node refused), so the CLI exits 1. pyroute2 is imported here only, and this
module only by ``setup-interface`` (pyroute2 is about 9 MiB of a process's memory).
"""

from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mcdns.dns.server import ListenError

LOOPBACK = "lo"
MAX_NAME = 15
"""Longest Linux interface name (IFNAMSIZ - 1)."""
_IFF_UP = 0x1
_IFA_F_NODAD = 0x02
"""No duplicate address detection: an IPv6 address is usable at once (as on lo)."""


class InterfaceError(ListenError):
    """An address or the interface could not be set up: one line, what and why."""


class Netlink(Protocol):
    """The few link and address operations needed (pyroute2's, or a test's fake).
    Failures raise OSError carrying the kernel's errno."""

    def link_index(self, name: str) -> int | None: ...
    def link_state(self, index: int) -> tuple[str | None, bool]: ...
    def add_dummy(self, name: str) -> int: ...
    def set_up(self, index: int) -> None: ...
    def del_link(self, index: int) -> None: ...
    def addresses(self) -> dict[str, int]: ...
    def add_address(self, index: int, ip: str) -> None: ...
    def del_address(self, index: int, ip: str) -> None: ...
    def close(self) -> None: ...


class PyRoute2:
    """``Netlink`` over pyroute2's IPRoute: one netlink socket, closed by ``close``."""

    def __init__(self) -> None:
        from pyroute2 import IPRoute

        self._ipr: Any = IPRoute()

    def _call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            return fn(*args, **kw)
        except NetlinkError as e:
            raise OSError(e.code, os.strerror(e.code)) from None

    def link_index(self, name: str) -> int | None:
        found = self._call(self._ipr.link_lookup, ifname=name)
        return int(found[0]) if found else None

    def link_state(self, index: int) -> tuple[str | None, bool]:
        (msg,) = self._call(self._ipr.get_links, index)
        return msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"), bool(msg["flags"] & _IFF_UP)

    def add_dummy(self, name: str) -> int:
        self._call(self._ipr.link, "add", ifname=name, kind="dummy")
        index = self.link_index(name)
        if index is None:  # pragma: no cover - the kernel has just made it
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        return index

    def set_up(self, index: int) -> None:
        self._call(self._ipr.link, "set", index=index, state="up")

    def del_link(self, index: int) -> None:
        self._call(self._ipr.link, "del", index=index)

    def addresses(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for msg in self._call(self._ipr.get_addr):
            ip = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
            if ip:
                found[str(ipaddress.ip_address(ip.split("%")[0]))] = int(msg["index"])
        return found

    def add_address(self, index: int, ip: str) -> None:
        v6 = ipaddress.ip_address(ip).version == 6
        self._call(self._ipr.addr, "add", index=index, address=ip,
                   prefixlen=128 if v6 else 32, flags=_IFA_F_NODAD if v6 else 0)

    def del_address(self, index: int, ip: str) -> None:
        v6 = ipaddress.ip_address(ip).version == 6
        self._call(self._ipr.addr, "del", index=index, address=ip, prefixlen=128 if v6 else 32)

    def close(self) -> None:
        self._ipr.close()


def parse_addresses(values: list[str]) -> tuple[str, ...]:
    """IP addresses in normal form, duplicates dropped (ValueError names a bad one)."""
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_address(v.strip())))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address") from None
    return tuple(dict.fromkeys(out))


def check_interface_name(name: str) -> str:
    """A name Linux accepts for a link (ValueError says why not)."""
    if (not 0 < len(name) <= MAX_NAME or name in (".", "..")
            or any(c in name for c in "/:") or any(c.isspace() for c in name)):
        raise ValueError(f"{name!r} is not an interface name (1-{MAX_NAME} characters, "
                         "no '/', ':' or space)")
    return name


def _problem(what: str, e: OSError) -> str:
    reason = e.strerror or str(e)
    if e.errno in (errno.EPERM, errno.EACCES):
        reason += (" (setting up the node-local addresses needs the NET_ADMIN capability: "
                   "add it to this container, or put the addresses on the node beforehand)")
    return f"cannot {what}: {reason}"


@dataclass
class LocalAddresses:
    """The node-local addresses and the interface meant to hold them."""

    ips: tuple[str, ...]
    interface: str = "mcdns0"
    netlink: Callable[[], Netlink] = PyRoute2
    holder: str = ""
    """The link the addresses went on: ``interface``, or ``lo`` when the kernel has no
    dummy link type (empty while none had to be added)."""
    done: list[str] = field(default_factory=list)
    """What was done, one phrase each, for the caller to print."""

    def setup(self) -> None:
        """Put every address in place (InterfaceError when the node refuses)."""
        with self._open() as nl:
            present = nl.addresses()
            for ip in self.ips:
                if ip in present:
                    self.done.append(f"address {ip} already present, left as it is")
            missing = [ip for ip in self.ips if ip not in present]
            if not missing:
                self._keep_up(nl)
                return
            index = self._holder(nl)
            for ip in missing:
                try:
                    nl.add_address(index, ip)
                except OSError as e:
                    if e.errno == errno.EEXIST:  # added meanwhile: there it is
                        continue
                    raise InterfaceError(_problem(f"add {ip} to {self.holder}", e)) from None
                self.done.append(f"address {ip} added to {self.holder}")

    def _keep_up(self, nl: Netlink) -> None:
        """A dummy ``interface`` that something took down holds its addresses but
        answers nothing: bring it back up."""
        index = nl.link_index(self.interface)
        if index is None or self.interface == LOOPBACK:
            return
        kind, up = nl.link_state(index)
        if kind == "dummy" and not up:
            self._set_up(nl, index, self.interface)
            self.done.append(f"interface {self.interface} brought up")

    def _holder(self, nl: Netlink) -> int:
        """The index of the link the addresses go on, created and brought up if need be."""
        name = self.interface
        index = nl.link_index(name)
        if index is None:
            try:
                index = nl.add_dummy(name)
                self.done.append(f"dummy interface {name} created")
            except OSError as e:
                if e.errno != errno.EOPNOTSUPP:
                    raise InterfaceError(
                        _problem(f"create dummy interface {name}", e)) from None
                self.done.append(f"the kernel has no dummy link type: the addresses go on "
                                 f"{LOOPBACK} instead of {name}")
                name, index = LOOPBACK, nl.link_index(LOOPBACK)
                if index is None:  # pragma: no cover - every network namespace has lo
                    raise InterfaceError("cannot add the addresses: there is no lo") from None
        self.holder = name
        kind, up = nl.link_state(index)
        if not up and (kind == "dummy" or name == LOOPBACK):
            self._set_up(nl, index, name)
        return index

    @staticmethod
    def _set_up(nl: Netlink, index: int, name: str) -> None:
        try:
            nl.set_up(index)
        except OSError as e:
            raise InterfaceError(_problem(f"bring up {name}", e)) from None

    def remove(self) -> None:
        """Take the addresses off whatever interface holds them, and delete ``interface``
        when it is a dummy link left without addresses (after an uninstall)."""
        with self._open() as nl:
            present = nl.addresses()
            for ip in self.ips:
                if ip not in present:
                    self.done.append(f"address {ip} not present")
                    continue
                try:
                    nl.del_address(present[ip], ip)
                except OSError as e:
                    if e.errno != errno.EADDRNOTAVAIL:  # gone meanwhile: fine
                        raise InterfaceError(_problem(f"remove {ip}", e)) from None
                self.done.append(f"address {ip} removed")
            index = nl.link_index(self.interface)
            if index is None or self.interface == LOOPBACK:
                return
            if nl.link_state(index)[0] == "dummy" and index not in nl.addresses().values():
                try:
                    nl.del_link(index)
                except OSError as e:
                    raise InterfaceError(
                        _problem(f"delete interface {self.interface}", e)) from None
                self.done.append(f"dummy interface {self.interface} deleted")

    def _open(self) -> _Session:
        try:
            return _Session(self.netlink())
        except OSError as e:
            raise InterfaceError(_problem("open a netlink socket", e)) from None


class _Session:
    """A ``Netlink`` in a ``with`` block: closed at its end, its OSErrors made
    InterfaceErrors (one line) unless a step already said what failed."""

    def __init__(self, nl: Netlink) -> None:
        self.nl = nl

    def __enter__(self) -> Netlink:
        return self.nl

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: object) -> None:
        self.nl.close()
        if isinstance(e, OSError) and not isinstance(e, InterfaceError):
            raise InterfaceError(_problem("read the node's interfaces", e)) from None
