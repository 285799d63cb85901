"""Unit tests of the resolver's wire scanning and cache entries (no sockets)."""

from __future__ import annotations

import struct

import dnslib

from mcdns.resolver import wire
from mcdns.resolver.cache import AnswerCache, Entry, make_entry

QNAME = "www.example.test"
OPT = wire.opt_record(1232, False)


def query(
    name: str = QNAME,
    qtype: str = "A",
    edns: int | None = None,
    do: bool = False,
    qid: int = 4242,
    rd: bool = True,
) -> bytes:
    q = dnslib.DNSRecord.question(name, qtype)
    q.header.id = qid
    q.header.rd = int(rd)
    if edns is not None:
        q.add_ar(dnslib.EDNS0(udp_len=edns, flags="do" if do else ""))
    packed: bytes = q.pack()
    return packed


def qkey_of(wire_q: bytes) -> bytes:
    end = wire.skip_name(wire_q, 12) + 4
    name_end = end - 4
    return wire_q[12:name_end].lower() + wire_q[name_end:end]


def reply_for(
    qk: bytes,
    records: list[str],
    auth: list[str] = (),
    rcode: int = 0,
    opt_last: bool = True,
    qid: int = 7,
) -> bytes:
    r = dnslib.DNSRecord(dnslib.DNSHeader(id=qid, qr=1, aa=1, rd=1, rcode=rcode))
    r.add_question(dnslib.DNSQuestion(QNAME, struct.unpack("!H", qk[-4:-2])[0]))
    for text in records:
        r.add_answer(*dnslib.RR.fromZone(text))
    for text in auth:
        r.add_auth(*dnslib.RR.fromZone(text))
    opt = dnslib.EDNS0(udp_len=1232)
    if opt_last:
        r.add_ar(*dnslib.RR.fromZone("ns.example.test. 60 IN A 127.0.0.1"))
        r.add_ar(opt)
    else:
        r.add_ar(opt)
        r.add_ar(*dnslib.RR.fromZone("ns.example.test. 60 IN A 127.0.0.1"))
    packed: bytes = r.pack()
    return packed


def test_client_edns_fast_and_walked_paths() -> None:
    q = query(edns=4096, do=True)
    assert wire.client_edns(q, 12 + len(qkey_of(q))) == (4096, True)
    q = query(edns=100)
    assert wire.client_edns(q, 12 + len(qkey_of(q))) == (512, False)
    q = query()
    assert wire.client_edns(q, 12 + len(qkey_of(q))) == (0, False)
    # an OPT after another additional record is found by the slow path
    r = dnslib.DNSRecord.parse(query())
    r.add_ar(*dnslib.RR.fromZone("x.example. 60 IN A 10.0.0.1"))
    r.add_ar(dnslib.EDNS0(udp_len=1400))
    q = r.pack()
    assert wire.client_edns(q, 12 + len(qkey_of(q))) == (1400, False)


def test_matches_checks_id_question_and_qr() -> None:
    q = query(QNAME.upper())
    qk = qkey_of(q)
    good = reply_for(qk, [f"{QNAME}. 300 IN A 192.0.2.1"], qid=7)
    assert wire.matches(good, 7, qk)
    assert not wire.matches(good, 8, qk)
    other = qkey_of(query("other.example.test"))
    assert not wire.matches(good, 7, other)
    assert not wire.matches(query(qid=7), 7, qk)  # a query (QR=0) is not a reply


def test_entry_counts_ttls_down_and_patches_the_client() -> None:
    q = query("WWW.Example.TEST", edns=1232, qid=999, rd=True)
    qk = qkey_of(q)
    qend = 12 + len(qk)
    reply = reply_for(qk, [f"{QNAME}. 300 IN A 192.0.2.1", f"{QNAME}. 100 IN A 192.0.2.2"])
    entry, cacheable = make_entry(reply, qend, OPT, 50.0, (0, 3600), 60)
    assert cacheable
    assert entry.expires == 150.0 and entry.stale_until == 210.0
    out = dnslib.DNSRecord.parse(entry.render(q, qend, 60.5, 1232, False, 1232))
    assert out.header.id == 999 and out.header.rd == 1 and out.header.aa == 0
    assert out.header.ra == 1
    assert str(out.q.qname) == "WWW.Example.TEST."
    assert [rr.ttl for rr in out.rr] == [290, 90]
    assert out.ar[0].ttl == 50  # additional records count down as well
    assert [rr.rtype for rr in out.ar] == [1, 41]  # our OPT, appended last
    plain = dnslib.DNSRecord.parse(entry.render(query(rd=False), qend, 60.5, 0, False, 1232))
    assert plain.header.rd == 0
    assert all(rr.rtype != 41 for rr in plain.ar)
    assert [rr.ttl for rr in entry_records(entry.render_stale(q, qend, 0, False, 1232))] == [30, 30]


def entry_records(data: bytes) -> list[dnslib.RR]:
    return list(dnslib.DNSRecord.parse(data).rr)


def test_ttls_are_clamped_and_ttl_zero_is_not_cached() -> None:
    q = query()
    qk = qkey_of(q)
    qend = 12 + len(qk)
    reply = reply_for(qk, [f"{QNAME}. 5 IN A 192.0.2.1", f"{QNAME}. 99999 IN A 192.0.2.2"])
    entry, _ = make_entry(reply, qend, OPT, 0.0, (10, 600), 0)
    assert entry.expires == 10.0
    assert [rr.ttl for rr in entry_records(entry.render(q, qend, 0.0, 0, True, 1232))] == [10, 600]
    zero = reply_for(qk, [f"{QNAME}. 0 IN A 192.0.2.1"])
    assert make_entry(zero, qend, OPT, 0.0, (0, 600), 0)[1] is False


def test_negative_answers_use_soa_minimum_and_failures_are_not_cached() -> None:
    q = query()
    qk = qkey_of(q)
    qend = 12 + len(qk)
    soa = "example.test. 3600 IN SOA ns.example.test. h.example.test. 1 7200 1800 86400 7"
    entry, cacheable = make_entry(reply_for(qk, [], [soa], rcode=3), qend, OPT, 0.0, (0, 600), 0)
    assert cacheable and entry.expires == 7.0 and entry.rcode == 3
    soa_short = soa.replace("3600", "4", 1)
    entry, _ = make_entry(reply_for(qk, [], [soa_short]), qend, OPT, 0.0, (0, 600), 0)
    assert entry.expires == 4.0  # NODATA: min(SOA TTL, SOA minimum)
    assert make_entry(reply_for(qk, [], [], rcode=3), qend, OPT, 0.0, (0, 600), 0)[1] is False
    assert make_entry(reply_for(qk, [], [soa], rcode=2), qend, OPT, 0.0, (0, 600), 0)[1] is False
    tc = bytearray(reply_for(qk, [f"{QNAME}. 60 IN A 192.0.2.1"]))
    tc[2] |= 0x02
    assert make_entry(bytes(tc), qend, OPT, 0.0, (0, 600), 0)[1] is False


def test_opt_in_the_middle_is_removed_by_repacking() -> None:
    q = query()
    qk = qkey_of(q)
    qend = 12 + len(qk)
    reply = reply_for(qk, [f"{QNAME}. 60 IN A 192.0.2.1"], opt_last=False)
    entry, cacheable = make_entry(reply, qend, OPT, 0.0, (0, 600), 0)
    out = dnslib.DNSRecord.parse(entry.render(q, qend, 0.0, 0, True, 1232))
    assert cacheable and [rr.rtype for rr in out.ar] == [1]


def test_udp_answers_too_big_for_the_client_are_truncated() -> None:
    q = query()
    qk = qkey_of(q)
    qend = 12 + len(qk)
    records = [f"{QNAME}. 60 IN A 10.0.{i // 250}.{i % 250}" for i in range(60)]
    entry, _ = make_entry(reply_for(qk, records), qend, OPT, 0.0, (0, 600), 0)
    small = dnslib.DNSRecord.parse(entry.render(q, qend, 0.0, 0, False, 1232))
    assert small.header.tc == 1 and not small.rr
    edns_q = query(edns=4096)
    big = dnslib.DNSRecord.parse(entry.render(edns_q, qend, 0.0, 4096, False, 1232))
    assert big.header.tc == 0 and len(big.rr) == 60
    tcp = dnslib.DNSRecord.parse(entry.render(q, qend, 0.0, 0, True, 1232))
    assert len(tcp.rr) == 60


def test_cache_bound_evicts_and_counts() -> None:
    now = [0.0]
    cache = AnswerCache(3, lambda: now[0])
    q = query()
    qk = qkey_of(q)
    reply = reply_for(qk, [f"{QNAME}. 60 IN A 192.0.2.1"])
    for i in range(10):
        entry, _ = make_entry(reply, 12 + len(qk), OPT, now[0], (0, 600), 0)
        cache[bytes([i])] = entry
        assert len(cache) <= 3
    assert cache.evictions == 7
    now[0] = 61.0
    assert cache.get(bytes([9])) is None
    assert isinstance(make_entry(reply, 12 + len(qk), OPT, 0.0, (0, 600), 0)[0], Entry)
