"""Batched UDP (recvmmsg/sendmmsg): bursts, both families, odd datagrams, and the fallback.

Every other UDP test runs through the batched listener too (it is the default); these
cases aim at what only batching can get wrong: answers matched to the wrong client when
a batch mixes senders, a burst larger than one batch, the address buffers being reused
while a forwarded answer waits, and a datagram longer than a receive slot.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import time

import dns.message
import dns.rcode
import pytest
from conftest import DEMO_STATE, make_config, rrsets, running

from mcdns.dns import mmsg

SERVE = "serve.default.svc.cluster.local."
NAMES = {  # name -> A answer in the demo state
    SERVE: "10.13.187.164",
    "web.default.svc.cluster.local.": "10.96.20.20",
    "billing.shop.svc.cluster.local.": "10.13.50.7",
}

pytestmark = pytest.mark.skipif(mmsg.available() is not None,
                                reason=f"batched UDP unavailable: {mmsg.available()}")


def _burst(host: str, port: int, family: int, queries: list[bytes], wait: float = 3.0
           ) -> dict[int, dns.message.Message]:
    """Send every query at once from one socket, then collect answers by message ID."""
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        s.connect((host, port))
        for q in queries:
            s.send(q)
        got: dict[int, dns.message.Message] = {}
        s.settimeout(0.2)
        deadline = time.monotonic() + wait
        while len(got) < len(queries) and time.monotonic() < deadline:
            try:
                msg = dns.message.from_wire(s.recv(65535))
            except TimeoutError:
                continue
            got[msg.id] = msg
        return got


def _queries(n: int) -> tuple[list[bytes], dict[int, str]]:
    names = sorted(NAMES)
    wires, want = [], {}
    for i in range(n):
        q = dns.message.make_query(names[i % len(names)], "A")
        q.id = i
        wires.append(q.to_wire())
        want[i] = names[i % len(names)]
    return wires, want


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_burst_larger_than_a_batch_is_answered_in_full(family: int, host: str) -> None:
    # 3.5 batches in one go: every query answered once, each with its own question.
    n = mmsg.BATCH * 3 + mmsg.BATCH // 2
    with running(make_config(state=str(DEMO_STATE), listen=[f"[{host}]:0" if ":" in host
                                                            else f"{host}:0"])) as srv:
        assert srv.app.listeners.batched, "the batched listener is the default"
        wires, want = _queries(n)
        got = _burst(host, srv.port, family, wires)
    assert sorted(got) == list(range(n))
    for i, msg in got.items():
        assert msg.question[0].name.to_text() == want[i]
        assert rrsets(msg.answer) == {f"{want[i]} 5 in a {NAMES[want[i]]}"}


def test_answers_go_back_to_each_sender_when_a_batch_mixes_clients() -> None:
    # Several client sockets send interleaved bursts: batches hold datagrams from all of
    # them, and each answer must reach the socket that asked (its ID says which query).
    with running(make_config(state=str(DEMO_STATE))) as srv:
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(6)]
        try:
            for c in clients:
                c.connect((srv.host, srv.port))
                c.settimeout(3)
            for round_ in range(40):
                for k, c in enumerate(clients):
                    q = dns.message.make_query(SERVE, "A")
                    q.id = k * 1000 + round_
                    c.send(q.to_wire())
            for k, c in enumerate(clients):
                ids = set()
                for _ in range(40):
                    msg = dns.message.from_wire(c.recv(65535))
                    assert msg.rcode() == dns.rcode.NOERROR
                    ids.add(msg.id)
                assert ids == {k * 1000 + r for r in range(40)}
        finally:
            for c in clients:
                c.close()


def test_datagram_longer_than_a_receive_slot_is_dropped_and_serving_goes_on() -> None:
    with running(make_config(state=str(DEMO_STATE))) as srv, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        big = dns.message.make_query(SERVE, "A").to_wire() + b"\x00" * (mmsg.RECV_SLOT + 100)
        s.sendto(big, (srv.host, srv.port))
        with pytest.raises(TimeoutError):
            s.recv(65535)
        reply = srv.query(SERVE)
        assert rrsets(reply.answer) == {f"{SERVE} 5 in a 10.13.187.164"}


@pytest.mark.parametrize("batch", [True, False])
def test_udp_batch_setting_picks_the_listener(batch: bool) -> None:
    with running(make_config(state=str(DEMO_STATE), udp_batch=batch)) as srv:
        assert bool(srv.app.listeners.batched) is batch
        assert bool(srv.app.listeners.udp) is not batch
        wires, want = _queries(150)
        got = _burst(srv.host, srv.port, socket.AF_INET, wires)
        assert sorted(got) == list(range(150))
        for i, msg in got.items():
            assert rrsets(msg.answer) == {f"{want[i]} 5 in a {NAMES[want[i]]}"}


def test_an_answer_the_kernel_refuses_costs_only_that_answer() -> None:
    # sendmmsg fails on one message (EINVAL, as for a spoofed source port 0): that answer
    # is dropped and the rest of its batch still goes out.
    n = 40
    with running(make_config(state=str(DEMO_STATE))) as srv:
        batched = srv.app.listeners.batched[0]
        real, failed = batched._send, []

        def send_refusing_once(fd: int, msgs: object, count: int, flags: int) -> int:
            if not failed:
                failed.append(count)
                ctypes.set_errno(errno.EINVAL)
                return -1
            return int(real(fd, msgs, count, flags))

        srv.call(lambda: setattr(batched, "_send", send_refusing_once))
        srv.loop.call_soon_threadsafe(time.sleep, 0.3)  # the queries queue up: one batch
        wires, _ = _queries(n)
        got = _burst("127.0.0.1", srv.port, socket.AF_INET, wires, wait=2.0)
    assert failed and failed[0] > 1, "the failure hit a batch of several answers"
    assert len(got) == n - 1
