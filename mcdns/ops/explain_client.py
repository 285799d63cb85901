"""Client side of ``mcdns explain``: ask a server for a name's CH TXT explain record.

Uses dnslib (a runtime dependency) over UDP, retrying over TCP when truncated, so the
command works wherever mcdns is installed.
"""

from __future__ import annotations

import socket
import struct

from dnslib import CLASS, QTYPE, RCODE, DNSQuestion, DNSRecord

from mcdns.config import HostPort


class ExplainError(Exception):
    """The server could not be asked, or gave no explanation."""


def fetch_explain(name: str, server: HostPort, timeout: float = 3.0) -> list[str]:
    """The explain strings for ``name`` from ``server``."""
    q = DNSRecord(q=DNSQuestion(name, QTYPE.TXT, CLASS.CH))
    q.add_ar(_opt())
    wire = q.pack()
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(wire, (server.host, server.port))
            reply = DNSRecord.parse(s.recv(65535))
        if reply.header.tc:
            reply = _tcp(wire, server, family, timeout)
    except (OSError, TimeoutError) as e:
        raise ExplainError(f"cannot ask {server}: {e}") from None
    rcode = reply.header.rcode
    if rcode != 0:
        text = RCODE.get(rcode, str(rcode))
        raise ExplainError(f"{server} answered {text} for {name}: is the name in a zone "
                           f"mcdns serves?")
    return [b"".join(rr.rdata.data).decode("utf-8", "replace") for rr in reply.rr]


def _opt() -> object:
    from dnslib import EDNS0

    return EDNS0(udp_len=4096)


def _tcp(wire: bytes, server: HostPort, family: int, timeout: float) -> DNSRecord:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((server.host, server.port))
        s.sendall(struct.pack(">H", len(wire)) + wire)
        head = _recv(s, 2)
        return DNSRecord.parse(_recv(s, struct.unpack(">H", head)[0]))


def _recv(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ExplainError("connection closed early")
        data += chunk
    return data
