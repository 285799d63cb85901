"""The CI fuzz pass: a few thousand hostile inputs straight into
``Handler.handle``, from the seeded generator and from hypothesis, plus the inputs that
once broke it. The long run is ``python -m tests.fuzz.run`` (``make fuzz``).
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdataclass
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcdns import config
from mcdns.answers.compiler import Compiler
from mcdns.dns.handler import Handler
from mcdns.state.statefile import SOURCE
from mcdns.state.store import Store

from .gen import QCLASSES, QTYPES, Gen, header, opt
from .harness import (
    DEMO_STATE,
    Fuzzer,
    RecordingForwarder,
    build_handler,
    check_response,
    fuzz_state,
    resolver_fuzzer,
    table_names,
)

CI_BOUND_NS = 50_000_000  # per input; the long run reports the real distribution
ZONE = b"\x07cluster\x05local\x00"
SERVED = b"\x03web\x07default\x03svc" + ZONE


@pytest.fixture(scope="module")
def stub() -> Iterator[Fuzzer]:
    with tempfile.TemporaryDirectory() as tmp:
        fuzzer = Fuzzer(build_handler(fuzz_state(Path(tmp))))
    yield fuzzer
    assert not fuzzer.crashes, "\n".join(str(c) for c in fuzzer.crashes[:5])


@pytest.fixture(scope="module")
def resolver() -> Iterator[Fuzzer]:
    fuzzer = resolver_fuzzer()
    yield fuzzer
    assert not fuzzer.crashes, "\n".join(str(c) for c in fuzzer.crashes[:5])


def assert_clean(fuzzer: Fuzzer, data: bytes, tcp: bool = False) -> None:
    crash = fuzzer.feed(data, tcp)
    assert crash is None, str(crash)


def question(name: bytes, qtype: int = 1, qclass: int = 1, flags: int = 0x0100,
             edns: bool = False) -> bytes:
    return (header(0xBEEF, flags, 1, 0, 0, int(edns)) + name + struct.pack(">HH", qtype, qclass)
            + (opt() if edns else b""))


def rcode_of(fuzzer: Fuzzer, data: bytes) -> int:
    return rcode_of_handler(fuzzer.handler, data)


def rcode_of_handler(handler: Handler, data: bytes) -> int:
    resp = handler.handle(data, "127.0.0.1", False)
    assert isinstance(resp, bytes)
    return int(dns.message.from_wire(resp).rcode())


# ---- generated inputs -----------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2])
def test_seeded_generator(stub: Fuzzer, resolver: Fuzzer, seed: int) -> None:
    gen = Gen(seed, table_names(stub.handler))
    before = stub.inputs
    for i in range(3000):
        data, tcp = gen.next()
        assert_clean(resolver if i % 4 == 3 else stub, data, tcp)
    assert max(stub.times[before:]) < CI_BOUND_NS
    # the generator reaches every kind of answer, not just FORMERR
    assert {0, 1, 3, 4, 5} <= set(stub.rcodes)
    assert resolver.forwarder is not None and resolver.forwarder.calls > 0


@settings(max_examples=600, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=600), st.booleans())
def test_random_bytes(stub: Fuzzer, data: bytes, tcp: bool) -> None:
    assert_clean(stub, data, tcp)


LABEL = st.one_of(st.sampled_from([b"web", b"default", b"svc", b"cluster", b"local", b"pod",
                                   b"clusterset", b"in-addr", b"arpa", b"_http", b"_tcp"]),
                  st.binary(min_size=1, max_size=63))
NAME = st.one_of(
    st.lists(LABEL, max_size=8).map(lambda ls: b"".join(bytes([len(x)]) + x for x in ls)
                                    + b"\x00"),
    st.sampled_from([SERVED, ZONE, b"\xc0\x0c", b"\x01a\xc0\x0e", b"\xc0\xff", b"\x80abc\x00"]),
    st.binary(max_size=300),
)
RECORD = st.builds(
    lambda owner, rtype, rclass, ttl, rdata, lie: owner + struct.pack(
        ">HHIH", rtype, rclass, ttl, len(rdata) if lie is None else lie) + rdata,
    st.sampled_from([b"\x00", b"\xc0\x0c", b"\xc0\x0e", SERVED]),
    st.sampled_from([1, 5, 41, 250, 65535]), st.integers(0, 65535),
    st.integers(0, 2**32 - 1), st.binary(max_size=40),
    st.one_of(st.none(), st.integers(0, 65535)))


@settings(max_examples=800, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(qid=st.integers(0, 65535), flags=st.integers(0, 65535),
       counts=st.one_of(st.none(), st.tuples(*[st.integers(0, 65535)] * 4)),
       name=NAME, qtype=st.one_of(st.sampled_from(QTYPES), st.integers(0, 65535)),
       qclass=st.one_of(st.sampled_from(QCLASSES), st.integers(0, 65535)),
       records=st.lists(RECORD, max_size=3),
       edns=st.one_of(st.none(), st.builds(opt, st.integers(0, 65535), st.booleans(),
                                           st.sampled_from([0, 0, 1, 255]))),
       cut=st.one_of(st.none(), st.integers(0, 400)), tcp=st.booleans())
def test_structured_messages(stub: Fuzzer, resolver: Fuzzer, qid: int, flags: int,
                             counts: tuple[int, int, int, int] | None, name: bytes,
                             qtype: int, qclass: int, records: list[bytes],
                             edns: bytes | None, cut: int | None, tcp: bool) -> None:
    ar = len(records) + (edns is not None)
    qd, an, ns, ar = counts or (1, 0, 0, ar)
    data = (header(qid, flags, qd, an, ns, ar) + name + struct.pack(">HH", qtype, qclass)
            + b"".join(records) + (edns or b""))
    if cut is not None:
        data = data[:cut]
    assert_clean(stub, data, tcp)
    assert_clean(resolver, data, tcp)


# ---- systematic sweeps ------------------------------------------------------------------

def test_every_prefix_of_real_queries(stub: Fuzzer) -> None:
    for name, rdtype, edns in (("web.default.svc.cluster.local.", "A", False),
                               ("big.default.svc.cluster.local.", "A", True),
                               ("_http._tcp.mid.default.svc.cluster.local.", "SRV", True),
                               ("nothere.default.svc.cluster.local.", "AAAA", True)):
        wire = dns.message.make_query(name, rdtype, use_edns=edns, payload=1232).to_wire()
        for n in range(len(wire) + 1):
            assert_clean(stub, wire[:n])
            assert_clean(stub, wire[:n], tcp=True)


def test_every_opcode_and_flag(stub: Fuzzer) -> None:
    for b2 in range(256):
        for b3 in (0x00, 0x0F, 0x10, 0x20, 0x40, 0x80, 0xFF):
            assert_clean(stub, question(SERVED, flags=(b2 << 8) | b3))


def test_qtypes_and_classes(stub: Fuzzer) -> None:
    for qtype in [*range(0, 300), *range(32760, 32780), *range(65270, 65536)]:
        for name in (SERVED, ZONE, b"\x07example\x03com\x00"):
            assert_clean(stub, question(name, qtype=qtype, edns=qtype % 2 == 0))
    for qclass in [*range(0, 260), 65535]:
        assert_clean(stub, question(SERVED, qclass=qclass))
        assert_clean(stub, question(b"\x07version\x04bind\x00", 16, qclass))


def test_before_first_sync_every_input_is_answered_or_dropped_cleanly() -> None:
    cfg = config.build({"listen": ["127.0.0.1:0"], "http": None})
    handler = Handler(cfg, Compiler(cfg, Store((SOURCE,))))
    gen = Gen(3, table_names(build_handler()))
    servfail = 0
    for _ in range(1000):
        data, tcp = gen.next()
        resp = handler.handle(data, "127.0.0.1", tcp)
        if len(data) < 12 or data[2] & 0x80:
            assert resp is None
            continue
        assert isinstance(resp, bytes)
        assert check_response(data, resp, tcp, handler.max_udp) is None
        servfail += resp[3] & 0x0F == dns.rcode.SERVFAIL
    assert servfail > 0
    assert rcode_of_handler(handler, question(SERVED)) == dns.rcode.SERVFAIL


# ---- inputs that once broke the handler ---------------------------------------------------

def test_name_of_256_octets_is_formerr(stub: Fuzzer) -> None:
    """wire.read_name let a 256-octet name through (off by one): an answer echoing a
    question no resolver can read."""
    longest = b"\x01a" * 112 + SERVED
    too_long = b"\x02ab" + b"\x01a" * 111 + SERVED
    assert (len(longest), len(too_long)) == (255, 256)
    assert rcode_of(stub, question(longest)) == dns.rcode.NXDOMAIN
    for qtype in (1, 6, 255):  # hot path, and the full path for SOA and ANY
        assert rcode_of(stub, question(too_long, qtype)) == dns.rcode.FORMERR
        assert_clean(stub, question(too_long, qtype))


@pytest.mark.parametrize("prefix", [b"\x80" + b"a" * 128, b"\x41" + b"a" * 65,
                                    b"\xc0" + b"a" * 40, b"\x01a" * 122])
def test_malformed_names_under_a_zone_are_formerr_not_nxdomain(stub: Fuzzer,
                                                               prefix: bytes) -> None:
    """The hot-path negative answer once answered NXDOMAIN for names with reserved label
    types or over 255 octets, echoing a question dnspython cannot parse."""
    for edns in (False, True):
        data = question(prefix + SERVED, edns=edns)
        assert rcode_of(stub, data) == dns.rcode.FORMERR
        assert_clean(stub, data)


@pytest.mark.parametrize("name", [b"\x3e146\x010\x03250\x0210\x07in-addr\x04arpa\x00",
                                  b"\x80" + b"x" * 20 + b"\x07example\x03com\x00",
                                  b"\x01a" * 130 + b"\x00"])
def test_resolver_role_never_forwards_a_malformed_name(name: bytes) -> None:
    """The hot path handed names with lying label lengths to the forwarder."""
    fwd = RecordingForwarder()
    handler = build_handler(DEMO_STATE, forwarder=fwd, role="resolver")
    for edns in (False, True):
        resp = handler.handle(question(name, edns=edns), "127.0.0.1", False)
        assert isinstance(resp, bytes)
        assert dns.message.from_wire(resp).rcode() == dns.rcode.FORMERR
    assert fwd.calls == 0 and not fwd.problems


@pytest.mark.parametrize("qclass", [dns.rdataclass.ANY, dns.rdataclass.HS,
                                    dns.rdataclass.NONE])
def test_other_classes_outside_the_zones_stay_refused_after_an_in_query(qclass: int) -> None:
    """The resolver role remembers names outside its zones by their class-IN key; a
    query of another class for such a name was forwarded once an IN query had been
    (it is REFUSED, as before that IN query)."""
    fwd = RecordingForwarder()
    handler = build_handler(forwarder=fwd, role="resolver", upstreams=["127.0.0.1:1"])
    inq = dns.message.make_query("example.com.", "A")
    resp = handler.handle(inq.to_wire(), "127.0.0.1", False)
    assert isinstance(resp, bytes) and fwd.calls == 1
    other = dns.message.make_query("example.com.", "A", rdclass=qclass)
    resp = handler.handle(other.to_wire(), "127.0.0.1", False)
    assert isinstance(resp, bytes)
    assert dns.message.from_wire(resp).rcode() == dns.rcode.REFUSED and fwd.calls == 1
