"""Resource record data in wire form, encoded by hand.

Answers are compiled from these bytes when data changes. Encoding them directly (rather
than through dnslib objects) keeps compiling cheap and leaves nothing but bytes behind:
a large cluster's answer table holds no per-record Python objects.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from mcdns.proto import (
    CLASS_IN,
    QNAME_POINTER,
    T_A,
    T_AAAA,
    T_CNAME,
    T_NS,
    T_PTR,
    T_SRV,
)

NAME_TYPES = (T_NS, T_CNAME, T_PTR)  # rdata is exactly one name
_RR = struct.Struct(">HHIH")


def name_wire(name: str) -> bytes:
    """Lower-case wire form of an absolute name ("a.b." -> b"\\x01a\\x01b\\x00")."""
    text = name.lower().rstrip(".")
    if not text:
        return b"\x00"
    raw = text.encode() if text.isascii() else text.encode("idna")
    return b"".join([_LEN[len(label)] + label for label in raw.split(b".")]) + b"\x00"


_LEN = [bytes((n,)) for n in range(256)]


def fits(name: str) -> bool:
    """True when the absolute name (text, trailing dot optional) fits a DNS message: 255
    octets at most in wire form, every label 1-63 octets."""
    text = name.rstrip(".")
    if len(text) > 253:
        return False
    return not text or all(0 < len(label) <= 63 for label in text.split("."))


def ptr_targets(targets: list[bytes] | tuple[bytes, ...], zone: bytes) -> list[bytes]:
    """The PTR targets an address keeps (wire names): those in ``zone`` (the cluster
    zone's wire form) when there are any, else all. A derived Service's ClusterIP or a
    mirrored pod IP is named in the cluster zone only, not also in the clusterset zone;
    a pod in two Services keeps both names, as CoreDNS answers."""
    preferred = [t for t in targets if zone and t.endswith(zone)]
    return preferred or list(targets)


def name_text(wire: bytes) -> str:
    """Text form of a wire name ("a.b.")."""
    labels, i = [], 0
    while wire[i]:
        labels.append(wire[i + 1:i + 1 + wire[i]].decode("ascii", "replace"))
        i += wire[i] + 1
    return ".".join(labels) + "."


def address(ip: str) -> tuple[int, bytes]:
    """(A or AAAA, rdata) of an IP address (in the normal form the reducer keeps)."""
    if ":" in ip:
        return T_AAAA, socket.inet_pton(socket.AF_INET6, ip)
    return T_A, socket.inet_pton(socket.AF_INET, ip)


def reverse_name(ip: str) -> str:
    """The PTR owner name of an IP ("4.3.2.1.in-addr.arpa.")."""
    if ":" in ip:
        return ipaddress.ip_address(ip).reverse_pointer + "."
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa."


def name(target: str) -> bytes:
    return name_wire(target)


def srv(priority: int, weight: int, port: int, target: str) -> bytes:
    return struct.pack(">HHH", priority, weight, port) + name_wire(target)


def srv_with_weight(rdata: bytes, weight: int) -> bytes:
    return rdata[:2] + struct.pack(">H", weight) + rdata[4:]


def txt(*strings: str) -> bytes:
    out = b""
    for s in strings:
        raw = s.encode()[:255]
        out += bytes([len(raw)]) + raw
    return out


def soa(zone: str, serial: int, ttl: int) -> bytes:
    """The zone's SOA: ns.dns.<zone>. hostmaster.<zone>. <serial> 7200 1800 86400 <ttl>."""
    return (name_wire(f"ns.dns.{zone}.") + name_wire(f"hostmaster.{zone}.")
            + struct.pack(">IIIII", serial, 7200, 1800, 86400, ttl))


def target(qtype: int, rdata: bytes) -> bytes | None:
    """The name an SRV, NS, CNAME or PTR record points to (wire), else None."""
    if qtype == T_SRV:
        return rdata[6:]
    if qtype in NAME_TYPES:
        return rdata
    return None


def rr(owner: bytes, qtype: int, ttl: int, rdata: bytes) -> bytes:
    """One resource record; ``owner`` is a wire name or a compression pointer."""
    return owner + _RR.pack(qtype, CLASS_IN, ttl, len(rdata)) + rdata




def answers_of(body: bytes, count: int, qtype: int) -> list[bytes]:
    """Rdata of the first ``count`` records of ``body`` that are owned by the question's
    name (pointer 0xC00C) and have type ``qtype`` (reads bodies this module wrote)."""
    out, i = [], 0
    for _ in range(count):
        if body[i:i + 2] == QNAME_POINTER:
            owned, j = True, i + 2
        else:
            owned, j = False, body.index(0, i) + 1
        t, _cls, _ttl, rdlen = _RR.unpack_from(body, j)
        start = j + _RR.size
        if owned and t == qtype:
            out.append(body[start:start + rdlen])
        i = start + rdlen
    return out
