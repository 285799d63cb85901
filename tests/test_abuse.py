"""TCP abuse against the real server: the connection limit holds, idle and slow
clients do not delay anyone else, idle connections are closed, and a client that sends
queries without reading the answers cannot make the server buffer without bound.

Latency figures are printed (``pytest -s``) for the README; the assertions use generous
bounds so a loaded CI machine does not flake.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import statistics
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from conftest import Running, make_config, running
from statebuild import endpoints, namespace, service, write

NAME = "serve.default.svc.cluster.local."
BIG = [f"10.200.{i // 250}.{i % 250 + 1}" for i in range(250)]  # ~4 KB over TCP


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("abuse") / "state.yaml", [
        namespace("default"),
        service("serve", ip="10.96.0.1"), endpoints("serve", ready=["10.244.0.1"]),
    ])


@pytest.fixture(scope="module")
def big_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("abuse") / "big.yaml", [
        namespace("default"),
        service("serve", ip="10.96.0.1"), endpoints("serve", ready=["10.244.0.1"]),
        service("big"), endpoints("big", ready=BIG),
    ])


@pytest.fixture(scope="module", autouse=True)
def enough_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4096) if hard != resource.RLIM_INFINITY else 4096
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@contextlib.contextmanager
def connections(srv: Running, n: int) -> Iterator[list[socket.socket]]:
    """``n`` open TCP connections to the server, all closed at the end."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection((srv.host, srv.port), timeout=5))
        yield socks
    finally:
        for s in socks:
            s.close()


def frame(wire: bytes) -> bytes:
    return struct.pack(">H", len(wire)) + wire


def read_frame(s: socket.socket) -> bytes:
    head = recv_exactly(s, 2)
    return recv_exactly(s, struct.unpack(">H", head)[0])


def recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def tcp_ask(s: socket.socket, name: str = NAME) -> dns.message.Message:
    s.sendall(frame(dns.message.make_query(name, "A").to_wire()))
    return dns.message.from_wire(read_frame(s))


def is_closed(s: socket.socket, timeout: float) -> bool:
    """True once the server closed (or reset) ``s``; False if still open at ``timeout``."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def latencies(srv: Running, n: int) -> list[float]:
    """Seconds per answer for ``n`` queries from a fresh client: half UDP, half TCP on one
    new connection."""
    out = []
    q = dns.message.make_query(NAME, "A")
    with socket.create_connection((srv.host, srv.port), timeout=5) as conn:
        for i in range(n):
            start = time.perf_counter()
            msg = (tcp_ask(conn) if i % 2
                   else dns.query.udp(q, srv.host, port=srv.port, timeout=2))
            out.append(time.perf_counter() - start)
            assert msg.rcode() == dns.rcode.NOERROR and msg.answer
    return out


def p99(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * 0.99))]


def server_connections(srv: Running) -> int:
    return srv.call(lambda: len(srv.app.listeners.state.connections))


def test_connection_limit_holds(state: Path) -> None:
    with running(make_config(state=str(state), tcp_max_connections=20)) as srv:
        with connections(srv, 20) as socks:
            for s in socks:
                assert tcp_ask(s).answer  # all 20 accepted and served
            with connections(srv, 5) as extra:
                for s in extra:
                    assert is_closed(s, 2.0)  # the 21st and later: closed at once
            assert server_connections(srv) == 20
            socks[0].close()
            deadline = time.monotonic() + 5
            while server_connections(srv) >= 20 and time.monotonic() < deadline:
                time.sleep(0.01)
            with connections(srv, 1) as again:  # a freed slot is usable again
                assert tcp_ask(again[0]).answer
            for s in socks[1:]:
                assert tcp_ask(s).answer  # the others were never disturbed


def test_500_idle_connections_do_not_delay_a_new_client(state: Path) -> None:
    with running(make_config(state=str(state))) as srv:
        baseline = latencies(srv, 200)
        with connections(srv, 500) as socks:
            assert tcp_ask(socks[-1]).answer
            deadline = time.monotonic() + 5
            while server_connections(srv) < 500 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server_connections(srv) == 500
            loaded = latencies(srv, 200)
    print(f"\n500 idle TCP connections: p99 {p99(loaded) * 1000:.2f} ms "
          f"(median {statistics.median(loaded) * 1000:.2f} ms; without them p99 "
          f"{p99(baseline) * 1000:.2f} ms) over 200 queries")
    assert p99(loaded) < 0.1


def test_slow_client_one_byte_a_second_does_not_delay_others(state: Path) -> None:
    with running(make_config(state=str(state), tcp_idle_timeout=2.0)) as srv:
        slow = socket.create_connection((srv.host, srv.port), timeout=5)
        msg = frame(dns.message.make_query(NAME, "A").to_wire())
        times: list[float] = []
        try:
            for i in range(3):  # three bytes, one a second; others query in between
                slow.sendall(msg[i:i + 1])
                until = time.monotonic() + 1.0
                while time.monotonic() < until:
                    times += latencies(srv, 10)
            slow.sendall(msg[3:])  # the rest arrives: the slow client is answered too
            assert dns.message.from_wire(read_frame(slow)).answer
        finally:
            slow.close()
    print(f"\nslow client (1 byte/s): others' p99 {p99(times) * 1000:.2f} ms "
          f"over {len(times)} queries")
    assert len(times) >= 30 and p99(times) < 0.1


def test_idle_connections_are_closed_after_the_timeout(state: Path) -> None:
    with running(make_config(state=str(state), tcp_idle_timeout=0.5)) as srv:
        with connections(srv, 50) as socks:
            assert tcp_ask(socks[0]).answer
            half = socks[1:25]
            for s in half:  # half send a partial frame and stall: idle as well
                s.sendall(b"\x00\x30\x12")
            start = time.monotonic()
            for s in socks:
                assert is_closed(s, 5.0)
            took = time.monotonic() - start
        assert 0.3 < took < 3.0
        deadline = time.monotonic() + 2
        while server_connections(srv) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server_connections(srv) == 0
        assert srv.query(NAME, "A", tcp=True).answer  # and new clients are still served


def test_client_that_never_reads_cannot_grow_server_buffers(big_state: Path) -> None:
    """5,000 pipelined queries for a 4 KB answer (20 MB of answers) with no reading:
    the server stops reading from that client instead of buffering everything."""
    with running(make_config(state=str(big_state))) as srv:
        hog = socket.create_connection((srv.host, srv.port), timeout=5)
        try:
            hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            q = frame(dns.message.make_query("big.default.svc.cluster.local.", "A").to_wire())
            hog.setblocking(False)
            sent, deadline = 0, time.monotonic() + 3
            data = q * 5000
            while sent < len(data) and time.monotonic() < deadline:
                try:
                    sent += hog.send(data[sent:sent + 65536])
                except BlockingIOError:
                    time.sleep(0.01)
            time.sleep(0.3)
            buffered = srv.call(lambda: sum(
                c.transport.get_write_buffer_size() for c in srv.app.listeners.state.connections
                if c.transport is not None))
            print(f"\nnon-reading client: server buffered {buffered} bytes "
                  f"after {sent // len(q)} queries")
            assert buffered < 1 << 20
            assert latencies(srv, 20)  # others are still answered
        finally:
            hog.close()


def test_pipelined_client_that_reads_late_gets_every_answer(big_state: Path) -> None:
    """Flow control pauses, then resumes: 1,000 queries written first, answers read after,
    all of them, in order."""
    with running(make_config(state=str(big_state))) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=10) as s:
            queries = []
            for i in range(1000):
                q = dns.message.make_query("big.default.svc.cluster.local.", "A")
                q.id = i
                queries.append(frame(q.to_wire()))
            s.sendall(b"".join(queries))  # the server pauses reading part way through
            answers = [read_frame(s) for _ in range(1000)]
    assert [struct.unpack_from(">H", a)[0] for a in answers] == list(range(1000))
    assert len(dns.message.from_wire(answers[-1]).answer[0]) == len(BIG)


def test_answer_larger_than_a_tcp_message_is_truncated_and_the_connection_lives(
        tmp_path: Path) -> None:
    """5,000 endpoints make an 80 KB A answer and a larger SRV one: more than a TCP
    message's 16-bit length holds. The client gets TC (RFC 2181 §9), not a dropped
    connection, and the same connection goes on answering."""
    huge = [f"10.201.{i // 250}.{i % 250 + 1}" for i in range(5000)]
    path = write(tmp_path / "huge.yaml", [
        namespace("default"), service("serve", ip="10.96.0.1"),
        endpoints("serve", ready=["10.244.0.1"]), service("huge"),
        endpoints("huge", ready=huge)])
    with running(make_config(state=str(path))) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=10) as s:
            for qtype in ("A", "SRV", "A"):  # the second A comes from the compiled entry
                q = dns.message.make_query("huge.default.svc.cluster.local.", qtype)
                s.sendall(frame(q.to_wire()))
                reply = dns.message.from_wire(read_frame(s))
                assert reply.id == q.id and reply.flags & dns.flags.TC and not reply.answer
            s.sendall(frame(dns.message.make_query(NAME, "A").to_wire()))
            reply = dns.message.from_wire(read_frame(s))
    assert [rr.to_text() for rr in reply.answer[0]] == ["10.96.0.1"]
