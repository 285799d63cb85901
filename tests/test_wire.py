"""The wire edge: malformed input, opcodes, EDNS0, truncation, TCP framing,
chaos TXT, SERVFAIL before sync. Raw sockets where dnspython would refuse to send.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import pytest
from conftest import DEMO_STATE, Running, make_config, running
from statebuild import endpoints, namespace, service, write

from mcdns.state.store import Store

BIG = [f"10.200.{i // 250}.{i % 250 + 1}" for i in range(260)]  # ~4.2 KB of A records


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    path = write(tmp_path_factory.mktemp("wire") / "state.yaml", [
        namespace("default"), service("big"), endpoints("big", ready=BIG),
        service("serve", ip="10.96.0.1"), endpoints("serve", ready=["10.244.0.1"]),
    ])
    with running(make_config(state=str(path))) as s:
        yield s


def udp_exchange(srv: Running, payload: bytes, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, (srv.host, srv.port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def good_query(srv: Running) -> None:
    msg = srv.query("serve.default.svc.cluster.local.", "A")
    assert msg.rcode() == dns.rcode.NOERROR and msg.answer


def query_wire(name: str = "serve.default.svc.cluster.local.", qid: int = 0x1234) -> bytes:
    q = dns.message.make_query(name, "A")
    q.id = qid
    return q.to_wire()


def test_short_packet_dropped(srv: Running) -> None:
    assert udp_exchange(srv, b"\x12\x34\x01\x00\x00", timeout=0.5) is None
    good_query(srv)


def test_response_packets_are_not_answered(srv: Running) -> None:
    wire = bytearray(query_wire())
    wire[2] |= 0x80  # QR
    assert udp_exchange(srv, bytes(wire), timeout=0.5) is None
    good_query(srv)


def test_garbage_after_header_is_formerr(srv: Running) -> None:
    header = struct.pack(">HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0)
    resp = udp_exchange(srv, header + b"\xff\xfe\x00garbage")
    assert resp is not None
    qid, flags = struct.unpack(">HH", resp[:4])
    assert qid == 0xBEEF and flags & 0x8000 and flags & 0x0F == dns.rcode.FORMERR
    good_query(srv)


def test_trailing_junk_is_formerr(srv: Running) -> None:
    resp = udp_exchange(srv, query_wire() + b"junk")
    assert resp is not None and resp[3] & 0x0F == dns.rcode.FORMERR


@pytest.mark.parametrize("qdcount", [0, 2])
def test_question_count_other_than_one_is_formerr(srv: Running, qdcount: int) -> None:
    wire = bytearray(query_wire())
    struct.pack_into(">H", wire, 4, qdcount)
    if qdcount == 2:
        wire += wire[12:]  # a second, identical question
    resp = udp_exchange(srv, bytes(wire))
    assert resp is not None
    assert struct.unpack(">H", resp[:2])[0] == 0x1234 and resp[3] & 0x0F == dns.rcode.FORMERR


def test_notify_is_notimp(srv: Running) -> None:
    q = dns.message.make_query("cluster.local.", "SOA")
    q.set_opcode(dns.opcode.NOTIFY)
    resp = dns.query.udp(q, srv.host, port=srv.port, timeout=2)
    assert resp.rcode() == dns.rcode.NOTIMP
    assert resp.opcode() == dns.opcode.NOTIFY


def test_edns_version_1_is_badvers(srv: Running) -> None:
    q = dns.message.make_query("serve.default.svc.cluster.local.", "A", use_edns=1)
    resp = dns.query.udp(q, srv.host, port=srv.port, timeout=2)
    assert resp.rcode() == dns.rcode.BADVERS
    assert resp.edns == 0 and not resp.answer


def test_edns_opt_echoed_with_our_payload_and_do(srv: Running) -> None:
    q = dns.message.make_query("serve.default.svc.cluster.local.", "A", use_edns=0,
                               payload=4096, want_dnssec=True)
    resp = dns.query.udp(q, srv.host, port=srv.port, timeout=2)
    assert resp.edns == 0 and resp.payload == 1232
    assert resp.ednsflags & dns.flags.DO
    q = dns.message.make_query("serve.default.svc.cluster.local.", "A", use_edns=0)
    resp = dns.query.udp(q, srv.host, port=srv.port, timeout=2)
    assert resp.edns == 0 and not resp.ednsflags & dns.flags.DO
    resp = srv.query("serve.default.svc.cluster.local.", "A")  # no EDNS in, none out
    assert resp.edns == -1


def test_edns_with_options_takes_the_full_path(srv: Running) -> None:
    opt = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)
    q = dns.message.make_query("serve.default.svc.cluster.local.", "A", use_edns=0,
                               options=[opt])
    resp = dns.query.udp(q, srv.host, port=srv.port, timeout=2)
    assert resp.rcode() == dns.rcode.NOERROR and resp.answer and resp.edns == 0


def test_big_answer_truncated_over_udp_complete_over_tcp(srv: Running) -> None:
    name = "big.default.svc.cluster.local."
    udp = srv.query(name, "A")
    assert udp.flags & dns.flags.TC
    assert len(udp.to_wire()) <= 512 and not udp.answer
    q = dns.message.make_query(name, "A", use_edns=0, payload=4096)
    edns = dns.query.udp(q, srv.host, port=srv.port, timeout=2)
    assert edns.flags & dns.flags.TC, "payload is capped at max_udp_size 1232"
    tcp = srv.query(name, "A", tcp=True)
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.to_wire()) > 4000
    assert {r.address for r in tcp.answer[0]} == set(BIG)


def test_max_udp_size_setting(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", [service("big"), endpoints("big", ready=BIG)])
    with running(make_config(state=str(path), max_udp_size=8192)) as s:
        q = dns.message.make_query("big.default.svc.cluster.local.", "A", use_edns=0,
                                   payload=8192)
        resp = dns.query.udp(q, s.host, port=s.port, timeout=2)
        assert not resp.flags & dns.flags.TC and len(resp.answer[0]) == len(BIG)


def test_tcp_several_queries_on_one_connection(srv: Running) -> None:
    with socket.create_connection((srv.host, srv.port), timeout=3) as s:
        ids = list(range(100, 110))
        batch = b""
        for qid in ids:
            wire = query_wire(qid=qid)
            batch += struct.pack(">H", len(wire)) + wire
        s.sendall(batch[:7])  # a split length prefix and message
        time.sleep(0.05)
        s.sendall(batch[7:])
        got = []
        buf = b""
        while len(got) < len(ids):
            buf += s.recv(65535)
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack(">H", buf[:2])[0]:
                n = struct.unpack(">H", buf[:2])[0]
                got.append(dns.message.from_wire(buf[2:2 + n]).id)
                buf = buf[2 + n:]
        assert got == ids


def test_tcp_idle_timeout_closes(tmp_path: Path) -> None:
    with running(make_config(state=str(DEMO_STATE), tcp_idle_timeout=0.3)) as s:
        with socket.create_connection((s.host, s.port), timeout=3) as c:
            start = time.monotonic()
            assert c.recv(10) == b""  # closed by the server
            assert 0.2 < time.monotonic() - start < 2.5


def test_tcp_max_queries_per_connection(tmp_path: Path) -> None:
    with running(make_config(state=str(DEMO_STATE), tcp_max_queries=2)) as s:
        with socket.create_connection((s.host, s.port), timeout=3) as c:
            for qid in (1, 2, 3):
                wire = query_wire(qid=qid)
                c.sendall(struct.pack(">H", len(wire)) + wire)
            data = b""
            while chunk := c.recv(65535):
                data += chunk
            n1 = struct.unpack(">H", data[:2])[0]
            rest = data[2 + n1:]
            n2 = struct.unpack(">H", rest[:2])[0]
            assert rest[2 + n2:] == b"", "exactly two answers, then the connection closes"


def test_chaos_version_and_id(srv: Running) -> None:
    resp = srv.query("version.bind.", "TXT", rdclass="CH")
    assert resp.answer[0][0].strings[0].decode().startswith("mcdns ")
    resp = srv.query("id.server.", "TXT", rdclass="CH")
    assert resp.answer[0][0].strings[0].decode() == socket.gethostname()
    resp = srv.query("other.example.", "TXT", rdclass="CH")
    assert resp.rcode() == dns.rcode.REFUSED


def test_explain_txt_says_why() -> None:
    with running(make_config(state=str(DEMO_STATE))) as s:
        resp = s.query("serve.default.svc.cluster.local.", "TXT", rdclass="CH", tcp=True)
        text = "\n".join(b"".join(r.strings).decode() for r in resp.answer[0])
        assert resp.answer[0].rdclass == dns.rdataclass.CH
        for want in ("policy=local-first", "decision=import", "local=present",
                     "ready=0", "ips=10.13.187.164", "ready_by_cluster=member1:2",
                     "ttl=5", "generation=", "synced=true"):
            assert want in text, want
        resp = s.query("web.default.svc.cluster.local.", "TXT", rdclass="CH", use_edns=0)
        text = "\n".join(b"".join(r.strings).decode() for r in resp.answer[0])
        assert "decision=local" in text and "healthy" in text


def test_servfail_before_first_sync() -> None:
    store = Store(sources=("services",))
    with running(make_config(), store=store, sources=False) as s:
        resp = s.query("serve.default.svc.cluster.local.", "A")
        assert resp.rcode() == dns.rcode.SERVFAIL
        explain = s.query("serve.default.svc.cluster.local.", "TXT", rdclass="CH", tcp=True)
        assert any(b"synced=false" in b"".join(r.strings) for r in explain.answer[0])
        from mcdns.objects.reduce import reduce

        obj = service("serve", ip="10.96.0.1")
        s.call(lambda: (store.upsert(reduce(obj)), store.mark_synced("services"),
                        store.commit()))
        resp = s.query("serve.default.svc.cluster.local.", "A")
        assert resp.rcode() == dns.rcode.NOERROR and resp.answer[0][0].address == "10.96.0.1"
        resp = s.query("nothere.default.svc.cluster.local.", "A")
        assert resp.rcode() == dns.rcode.NXDOMAIN


def test_exception_while_answering_is_servfail(srv: Running,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: object) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(srv.app.handler, "_pod", boom)
    resp = srv.query("1-2-3-4.default.pod.cluster.local.", "A")
    assert resp.rcode() == dns.rcode.SERVFAIL
    monkeypatch.undo()
    good_query(srv)
