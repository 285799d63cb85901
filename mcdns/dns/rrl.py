"""Response rate limiting (RRL) on UDP, per client network, as in BIND and Knot.

UDP source addresses can be forged, so a DNS server can be made to fire its answers at a
victim, or one noisy client can eat the capacity everyone shares. RRL caps the responses
per second each client network (/24 IPv4, /56 IPv6 by default) receives. Over the cap,
every ``slip``-th response goes out as a tiny truncated answer (TC=1, no records): a
real client behind a forged flood retries over TCP, which cannot be forged, and still
gets its answer; the rest are dropped. Off by default (``rrl_responses_per_second: 0``).

Each network has a token bucket holding at most one second of responses. A limited
response still costs a token, so a network that keeps flooding goes into debt, down to
``rrl_window`` seconds' worth, and must be quiet for that long to be answered again.
Unlike BIND, the account is per network only, not per (network, name, type): simpler,
and stricter against one client rotating names.

The table of networks is bounded (``MAX_NETWORKS``; forged sources could otherwise grow
it without end): when it is full, networks with a full bucket (nothing to remember) are
forgotten first, then the oldest, which gives those a fresh second of credit.
``RRL(cfg).check`` is the ``rate_limit`` hook of ``mcdns.dns.server.Listeners``.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from mcdns.config import Config
from mcdns.dns import wire as w
from mcdns.proto import T_OPT

MAX_NETWORKS = 100_000


class _Account:
    __slots__ = ("balance", "slips", "time")

    def __init__(self, balance: float, now: float) -> None:
        self.balance = balance
        self.time = now
        self.slips = 0


class RRL:
    """Token buckets per client network; ``check`` passes, truncates or drops a response."""

    def __init__(self, cfg: Config, clock: Callable[[], float] = time.monotonic,
                 max_networks: int = MAX_NETWORKS) -> None:
        self.rate = float(cfg.rrl_responses_per_second)
        self.slip = cfg.rrl_slip
        self.debt = self.rate * cfg.rrl_window
        self.v4_shift = 32 - cfg.rrl_ipv4_prefix
        self.v6_shift = 128 - cfg.rrl_ipv6_prefix
        self.clock = clock
        self.max_networks = max_networks
        self.accounts: dict[tuple[int, int], _Account] = {}
        self.passed = 0
        self.slipped = 0
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def network(self, client_ip: str) -> tuple[int, int]:
        """The account key of a client: (address family bits, network number)."""
        if ":" in client_ip:
            addr = socket.inet_pton(socket.AF_INET6, client_ip.split("%", 1)[0])
            return 6, int.from_bytes(addr, "big") >> self.v6_shift
        return 4, int.from_bytes(socket.inet_aton(client_ip), "big") >> self.v4_shift

    def check(self, client_ip: str, response: bytes) -> bytes | None:
        """The response to send to ``client_ip``: as is, truncated (slip), or None (drop)."""
        if self.rate <= 0:
            return response
        try:
            key = self.network(client_ip)
        except OSError:  # not an IP address: nothing to account it to
            return response
        now = self.clock()
        acct = self.accounts.get(key)
        if acct is None:
            if len(self.accounts) >= self.max_networks:
                self._evict(now)
            self.accounts[key] = _Account(self.rate - 1, now)
            self.passed += 1
            return response
        balance = min(self.rate, acct.balance + (now - acct.time) * self.rate) - 1
        acct.time = now
        acct.balance = max(balance, -self.debt)
        if balance >= 0:
            self.passed += 1
            return response
        if self.slip:
            acct.slips += 1
            if acct.slips >= self.slip:
                acct.slips = 0
                self.slipped += 1
                return truncated(response)
        self.dropped += 1
        return None

    def _evict(self, now: float) -> None:
        """Forget networks whose bucket has refilled; if that frees less than a tenth of
        the table, the oldest too, down to half (so a full table costs one scan per
        tenth of it, not one per packet)."""
        full = [k for k, a in self.accounts.items()
                if a.balance + (now - a.time) * self.rate >= self.rate]
        for k in full:
            del self.accounts[k]
        if len(self.accounts) > self.max_networks * 9 // 10:
            for k in list(self.accounts)[: len(self.accounts) - self.max_networks // 2]:
                del self.accounts[k]


def truncated(response: bytes) -> bytes:
    """The slip form of a response: same header with TC=1, the question and the OPT
    record kept, no answer, authority or additional records."""
    if len(response) < 12:
        return response
    qd = struct.unpack_from(">H", response, 4)[0]
    end = 12
    if qd:
        name_end = w.skip_name(response, 12)
        if name_end is None or name_end + 4 > len(response):
            return response[:2] + bytes((response[2] | 0x02, response[3])) + b"\x00" * 8
        end = name_end + 4
    opt = _opt_record(response, end)
    return (response[:2] + bytes((response[2] | 0x02, response[3]))
            + struct.pack(">HHHH", 1 if qd else 0, 0, 0, 1 if opt else 0)
            + response[12:end] + opt)


def _opt_record(response: bytes, i: int) -> bytes:
    """The OPT record among the records from ``i`` on (b"" if none)."""
    an, ns, ar = struct.unpack_from(">HHH", response, 6)
    n = len(response)
    for _ in range(an + ns + ar):
        j = w.skip_name(response, i)
        if j is None or j + 10 > n:
            return b""
        rtype, _rclass, _ttl, rdlen = struct.unpack_from(">HHIH", response, j)
        end = j + 10 + rdlen
        if end > n:
            return b""
        if rtype == T_OPT:
            return response[i:end]
        i = end
    return b""
