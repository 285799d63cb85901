"""UDP abuse: response rate limiting per client network with slip, and answers
that never exceed what the client advertised.

Unit tests drive ``RRL.check`` with a fake clock; the storm tests run the real server.
A storm comes from 127.0.1.2, a different /24 from the legitimate client on 127.0.0.1
(loopback is all of 127/8 on Linux), since RRL groups a /24 into one account.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import dns.flags
import dns.message
import dns.rcode
import pytest
from conftest import Running, make_config, running
from statebuild import endpoints, namespace, service, write

from mcdns.config import Config
from mcdns.dns.rrl import RRL, truncated
from mcdns.dns.server import UDPProtocol

NAME = "serve.default.svc.cluster.local."
STORM_SOURCE = "127.0.1.2"
BIG = [f"10.200.{i // 250}.{i % 250 + 1}" for i in range(200)]  # ~3.2 KB of A records
MID = [f"10.201.0.{i + 1}" for i in range(50)]  # ~850 bytes


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rrl(clock: Clock, **values: int) -> RRL:
    return RRL(make_config(**{"rrl_responses_per_second": 10, **values}), clock=clock)


def answer_wire(name: str = NAME, edns: bool = True) -> bytes:
    q = dns.message.make_query(name, "A", use_edns=edns)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(name, 5, "IN", "A", "10.96.0.1"))
    return r.to_wire()


def verdicts(limiter: RRL, ip: str, n: int) -> list[str]:
    resp = answer_wire()
    out = []
    for _ in range(n):
        got = limiter.check(ip, resp)
        out.append("pass" if got == resp else "drop" if got is None else "slip")
    return out


# ---- the limiter itself ---------------------------------------------------------------

def test_off_by_default_passes_everything_unchanged() -> None:
    limiter = RRL(make_config())
    resp = answer_wire()
    assert not limiter.enabled
    assert all(limiter.check("192.0.2.1", resp) is resp for _ in range(10_000))


def test_burst_of_one_second_then_slip_every_second_response() -> None:
    got = verdicts(rrl(Clock()), "192.0.2.1", 20)
    assert got[:10] == ["pass"] * 10
    assert got[10:] == ["drop", "slip"] * 5


@pytest.mark.parametrize(("slip", "want"), [(0, ["drop"] * 6), (1, ["slip"] * 6),
                                            (3, ["drop", "drop", "slip"] * 2)])
def test_slip_setting(slip: int, want: list[str]) -> None:
    assert verdicts(rrl(Clock(), rrl_slip=slip), "192.0.2.1", 16)[10:] == want


def test_rate_refills_over_time() -> None:
    clock = Clock()
    limiter = rrl(clock, rrl_slip=0)
    assert verdicts(limiter, "192.0.2.1", 10) == ["pass"] * 10
    clock.now += 0.5
    assert verdicts(limiter, "192.0.2.1", 6) == ["pass"] * 5 + ["drop"]
    clock.now += 10
    assert verdicts(limiter, "192.0.2.1", 11) == ["pass"] * 10 + ["drop"]


def test_a_flood_runs_into_debt_of_at_most_the_window() -> None:
    clock = Clock()
    limiter = rrl(clock, rrl_window=2, rrl_slip=0)
    for _ in range(30):  # 3 s at 100/s: far more than the 20 responses of debt allowed
        verdicts(limiter, "192.0.2.1", 10)
        clock.now += 0.1
    clock.now += 1.0  # one quiet second pays back 10 of the 20
    assert verdicts(limiter, "192.0.2.1", 1) == ["drop"]
    clock.now += 2.2  # paid back
    assert verdicts(limiter, "192.0.2.1", 1) == ["pass"]


def test_clients_grouped_by_network() -> None:
    limiter = rrl(Clock())
    assert verdicts(limiter, "192.0.2.1", 10) == ["pass"] * 10
    assert verdicts(limiter, "192.0.2.200", 1) == ["drop"]  # same /24
    assert verdicts(limiter, "192.0.3.1", 1) == ["pass"]  # next /24
    assert verdicts(limiter, "2001:db8:0:1::1", 10) == ["pass"] * 10
    assert verdicts(limiter, "2001:db8:0:ff::2", 1) == ["drop"]  # same /56
    assert verdicts(limiter, "2001:db8:0:100::1", 1) == ["pass"]  # next /56
    assert verdicts(rrl(Clock(), rrl_ipv4_prefix=32), "192.0.2.1", 10) == ["pass"] * 10


def test_network_table_is_bounded() -> None:
    limiter = RRL(make_config(rrl_responses_per_second=1), clock=Clock(), max_networks=1000)
    resp = answer_wire()
    for i in range(20_000):
        limiter.check(f"10.{i // 256 % 256}.{i % 256}.1", resp)
        assert len(limiter.accounts) <= 1000
    assert limiter.passed == 20_000  # every network was new: its first answer passes


def test_slip_form_is_truncated_question_and_opt_only() -> None:
    resp = answer_wire()
    slip = dns.message.from_wire(truncated(resp))
    orig = dns.message.from_wire(resp)
    assert slip.id == orig.id and slip.flags & dns.flags.TC and slip.flags & dns.flags.QR
    assert slip.question == orig.question and not slip.answer and slip.edns == 0
    no_edns = dns.message.from_wire(truncated(answer_wire(edns=False)))
    assert no_edns.edns < 0 and no_edns.flags & dns.flags.TC and not no_edns.answer
    formerr = b"\xbe\xef\x81\x01" + b"\x00" * 8
    assert truncated(formerr) == b"\xbe\xef\x83\x01" + b"\x00" * 8


# ---- the real server ------------------------------------------------------------------

@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("rrl") / "state.yaml", [
        namespace("default"),
        service("serve", ip="10.96.0.1"), endpoints("serve", ready=["10.244.0.1"]),
        service("big"), endpoints("big", ready=BIG),
        service("mid"), endpoints("mid", ready=MID),
    ])


@pytest.fixture
def limited(state: Path) -> Iterator[tuple[Running, RRL]]:
    cfg = make_config(state=str(state), rrl_responses_per_second=50, rrl_slip=2)
    with running(cfg) as srv:
        yield srv, install(srv, cfg)


def install(srv: Running, cfg: Config) -> RRL:
    """Put an RRL on the running server's UDP listeners (as ``App`` wires it)."""
    limiter = RRL(cfg)

    def put() -> None:
        for t in srv.app.listeners.udp:
            cast(UDPProtocol, t.get_protocol()).rate_limit = limiter.check
        for b in srv.app.listeners.batched:
            b.rate_limit = limiter.check
        assert srv.app.listeners.udp or srv.app.listeners.batched

    srv.call(put)
    return limiter


def storm(srv: Running, source: str, count: int, seconds: float) -> dict[str, int]:
    """Send ``count`` queries from ``source`` in windows of 32, reading what comes back;
    returns how many full answers, slips (TC) and silences it saw."""
    wire = bytearray(dns.message.make_query(NAME, "A").to_wire())
    seen = {"answer": 0, "slip": 0, "lost": 0}
    deadline = time.monotonic() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(0.02)
        sent = 0
        while sent < count and time.monotonic() < deadline:
            window = min(32, count - sent)
            for _ in range(window):
                wire[0:2] = sent.to_bytes(2, "big") if sent < 65536 else b"\x00\x00"
                s.sendto(wire, (srv.host, srv.port))
                sent += 1
            got = 0
            while got < window:
                try:
                    data = s.recv(65535)
                except TimeoutError:
                    break
                got += 1
                seen["slip" if data[2] & 0x02 else "answer"] += 1
            seen["lost"] += window - got
    seen["sent"] = sent
    return seen


def test_storm_from_one_network_cannot_starve_another(limited: tuple[Running, RRL]) -> None:
    srv, limiter = limited
    result: dict[str, int] = {}
    t = threading.Thread(target=lambda: result.update(storm(srv, STORM_SOURCE, 5000, 5.0)))
    t.start()
    answered, start = 0, time.monotonic()
    for _ in range(100):  # the legitimate client, 100 queries during the storm
        msg = srv.query(NAME, "A")
        answered += bool(msg.answer) and not msg.flags & dns.flags.TC
        time.sleep(0.01)
    t.join(timeout=30)
    assert answered == 100
    took = time.monotonic() - start
    assert result["sent"] == 5000, result
    # At 50/s the storm got one second of burst plus 50/s while it lasted, at most.
    assert result["answer"] <= 50 + 50 * took, result
    assert result["slip"] >= 100 and limiter.slipped >= result["slip"], result
    assert limiter.dropped > 0


def test_slip_answers_send_the_client_to_tcp(limited: tuple[Running, RRL]) -> None:
    srv, _ = limited
    result = storm(srv, STORM_SOURCE, 300, 5.0)
    assert result["slip"] > 50, result
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((STORM_SOURCE, 0))
        s.settimeout(1.0)
        for _ in range(20):  # still flooding: some replies are slips
            s.sendto(dns.message.make_query(NAME, "A").to_wire(), (srv.host, srv.port))
        tcs = 0
        for _ in range(20):
            try:
                tcs += bool(dns.message.from_wire(s.recv(65535)).flags & dns.flags.TC)
            except TimeoutError:
                break
        assert tcs >= 5
    over_tcp = srv.query(NAME, "A", tcp=True)  # the retry a real client makes: never limited
    assert over_tcp.answer and not over_tcp.flags & dns.flags.TC


def test_without_rrl_nothing_is_limited(state: Path) -> None:
    with running(make_config(state=str(state))) as srv:
        result = storm(srv, STORM_SOURCE, 2000, 10.0)
    assert result["sent"] == 2000 and result["slip"] == 0
    assert result["answer"] >= 1990, result  # loopback may lose the odd datagram


# ---- answer size ----------------------------------------------------------------------

@pytest.mark.parametrize("max_udp", [1232, 4096])
@pytest.mark.parametrize("payload", [None, 0, 512, 600, 1000, 1232, 1400, 4096, 65535])
@pytest.mark.parametrize("name", ["big", "mid"])
def test_udp_answers_fit_the_advertised_size(state: Path, servers: dict[int, Running],
                                            max_udp: int, payload: int | None,
                                            name: str) -> None:
    srv = servers[max_udp]
    q = dns.message.make_query(f"{name}.default.svc.cluster.local.", "A",
                               use_edns=payload is not None, payload=payload or 512)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(q.to_wire(), (srv.host, srv.port))
        data = s.recv(65535)
    limit = 512 if payload is None else min(max(512, payload), max_udp)
    msg = dns.message.from_wire(data)
    assert len(data) <= limit
    full = sum(len(rrset) for rrset in msg.answer) == len(BIG if name == "big" else MID)
    assert full != bool(msg.flags & dns.flags.TC)  # complete, or truncated and says so
    assert msg.rcode() == dns.rcode.NOERROR
    if limit >= (3300 if name == "big" else 900):
        assert full  # room enough: the whole answer came


@pytest.fixture(scope="module")
def servers(state: Path) -> Iterator[dict[int, Running]]:
    with running(make_config(state=str(state))) as a, \
            running(make_config(state=str(state), max_udp_size=4096)) as b:
        yield {1232: a, 4096: b}
