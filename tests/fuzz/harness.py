"""The fuzz oracle: build a ``Handler`` as ``mcdns.app.App`` does (no sockets), feed it one
input, and check what came back.

Properties checked on every input (``Fuzzer.feed``):
- no exception escapes ``Handler.handle``;
- the result is None exactly when the input is shorter than a header or is a response
  (QR set); otherwise bytes that dnspython parses as a DNS message with the query's ID,
  QR set and the query's opcode;
- over UDP the answer fits what the client advertised (512 without EDNS, the OPT payload
  capped at ``max_udp_size`` with it);
- the next good query (one of a fixed set, taken in turn) gets exactly the answer it got
  before any fuzzing.
Time per ``handle`` call is recorded in nanoseconds for the report. An input over 1 ms is
timed three more times and counts as slow only if every run is (one shared CPU makes
single runs jitter); its best time is what is recorded.
"""

from __future__ import annotations

import gc
import struct
import time
import traceback
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import yaml

from mcdns import config
from mcdns.answers.compiler import Compiler
from mcdns.dns import wire as w
from mcdns.dns.handler import Forwarder, Handler
from mcdns.proto import RCODE_SERVFAIL
from mcdns.state.statefile import SOURCE, load_into
from mcdns.state.store import Store

ROOT = Path(__file__).resolve().parents[2]
DEMO_STATE = ROOT / "config" / "demo-state.yaml"
SLOW_NS = 1_000_000
GOOD = (
    ("web.default.svc.cluster.local.", "A", False, None),  # hot path, no EDNS
    ("web.default.svc.cluster.local.", "A", False, 1232),  # hot path, EDNS
    ("serve.default.svc.cluster.local.", "A", True, None),  # hot path, TCP
    ("nothere.default.svc.cluster.local.", "A", False, 1232),  # NXDOMAIN, slow path
    ("db.default.svc.clusterset.local.", "SRV", False, 4096),  # clusterset, slow path
    ("_http._tcp.web.default.svc.cluster.local.", "SRV", True, None),
)


def fuzz_state(directory: Path) -> Path:
    """The demo state plus a headless service too big for UDP (truncation, minimal
    answers without the additional section, SRV with many targets); returns its path."""
    demo = yaml.safe_load(DEMO_STATE.read_text())
    for name, count in (("big", 150), ("mid", 14)):
        eps = [{"addresses": [f"10.250.{i // 200}.{i % 200 + 1}"], "hostname": f"pod-{i}",
                "conditions": {"ready": i % 7 != 0}} for i in range(count)]
        demo["items"] += [
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": name, "namespace": "default"},
             "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": f"{name}-1", "namespace": "default",
                          "labels": {"kubernetes.io/service-name": name}},
             "addressType": "IPv4", "endpoints": eps,
             "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
        ]
    path = directory / "fuzz-state.yaml"
    path.write_text(yaml.safe_dump(demo))
    return path


def build_handler(state: Path = DEMO_STATE, forwarder: Forwarder | None = None,
                  **values: Any) -> Handler:
    """A Handler over ``state``, wired as App wires it (store, compiler, first load)."""
    cfg = config.build({"listen": ["127.0.0.1:0"], "http": None, "state": str(state),
                        **values})
    store = Store((SOURCE,))
    compiler = Compiler(cfg, store)
    load_into(store, state, strict=True)
    return Handler(cfg, compiler, forwarder)


class RecordingForwarder:
    """The resolver role's engine as a stand-in: answers SERVFAIL at once and notes
    every name it was handed that is not a valid, lower-case question of class IN (or
    ANY, which the full path forwards for reverse names it has no data for)."""

    def __init__(self) -> None:
        self.calls = 0
        self.problems: list[str] = []

    def allowed(self, peer_ip: str) -> bool:
        return True

    def answer(self, wire: bytes, qkey: bytes, tcp: bool) -> bytes:
        self.calls += 1
        name = qkey[:-4]
        if not (w.is_plain_name(name) and name == name.lower()
                and qkey[-2:] in (b"\x00\x01", b"\x00\xff")):
            self.problems.append(f"forwarded a bad question key {qkey.hex()}")
        return w.header_only(wire, RCODE_SERVFAIL, True)


def resolver_fuzzer() -> Fuzzer:
    """A Fuzzer over a resolver-role handler (demo state, RecordingForwarder)."""
    fwd = RecordingForwarder()
    return Fuzzer(build_handler(forwarder=fwd, role="resolver"), forwarder=fwd)


def table_names(handler: Handler) -> list[bytes]:
    """Every wire name the handler has an answer for, compiled or lazy (the seeds of the
    generator)."""
    return sorted(handler.table.served_names())


@dataclass
class Crash:
    """One input that broke a property."""

    data: bytes
    tcp: bool
    problem: str

    def __str__(self) -> str:
        return f"{self.problem} tcp={self.tcp} input={self.data.hex()}"


@dataclass
class Fuzzer:
    """Feeds inputs to one handler and keeps the figures."""

    handler: Handler
    forwarder: RecordingForwarder | None = None
    times: array[int] = field(default_factory=lambda: array("q"))
    crashes: list[Crash] = field(default_factory=list)
    answered: int = 0
    dropped: int = 0
    good: list[tuple[bytes, bool, bytes]] = field(default_factory=list)
    rcodes: dict[int, int] = field(default_factory=dict)
    raw_max_ns: int = 0
    """The longest single call before timing again (scheduler noise included)."""
    slow: list[tuple[int, bytes, bool]] = field(default_factory=list)
    """Inputs over SLOW_NS even when timed again: (best ns, input, tcp)."""
    _turn: int = 0

    def __post_init__(self) -> None:
        for name, rdtype, tcp, payload in GOOD:
            q = dns.message.make_query(name, rdtype, use_edns=payload is not None,
                                       payload=payload or 512)
            wire = q.to_wire()
            resp = self.handler.handle(wire, "127.0.0.1", tcp)
            assert isinstance(resp, bytes), name
            msg = dns.message.from_wire(resp)
            assert msg.rcode() in (0, 3), (name, msg)
            self.good.append((wire, tcp, resp))

    @property
    def inputs(self) -> int:
        return len(self.times)

    def feed(self, data: bytes, tcp: bool) -> Crash | None:
        """Run one input and the next good query; the first broken property, or None."""
        problem = self._check(data, tcp)
        if problem is None and self.forwarder is not None and self.forwarder.problems:
            problem = self.forwarder.problems.pop()
        if problem is None:
            problem = self._good()
        if problem is None:
            return None
        crash = Crash(data, tcp, problem)
        self.crashes.append(crash)
        return crash

    def _check(self, data: bytes, tcp: bool) -> str | None:
        try:
            resp, took = self._timed(data, tcp)
        except Exception:
            return "exception: " + traceback.format_exc()
        self.raw_max_ns = max(self.raw_max_ns, took)
        if took > SLOW_NS:  # a scheduler hiccup, or really slow? Time it again.
            took = min(took, *(self._timed(data, tcp)[1] for _ in range(3)))
            if took > SLOW_NS:
                self.slow.append((took, data, tcp))
        self.times.append(took)
        must_drop = len(data) < 12 or bool(data[2] & 0x80)
        if resp is None:
            self.dropped += 1
            return None if must_drop else "dropped a message with a header"
        if not isinstance(resp, bytes):
            return f"returned {type(resp).__name__}, not bytes"
        if must_drop:
            return "answered a short message or a response"
        self.answered += 1
        if len(resp) >= 4:
            rcode = resp[3] & 0x0F
            self.rcodes[rcode] = self.rcodes.get(rcode, 0) + 1
        return check_response(data, resp, tcp, self.handler.max_udp)

    def _timed(self, data: bytes, tcp: bool) -> tuple[object, int]:
        """One handle call and its duration; the garbage collector, which runs for the
        allocations of the oracle (dnspython), is held off during the call."""
        gc.disable()
        start = time.perf_counter_ns()
        try:
            resp = self.handler.handle(data, "127.0.0.1", tcp)
        finally:
            took = time.perf_counter_ns() - start
            gc.enable()
        return resp, took

    def _good(self) -> str | None:
        wire, tcp, want = self.good[self._turn]
        self._turn = (self._turn + 1) % len(self.good)
        got = self.handler.handle(wire, "127.0.0.1", tcp)
        if got != want:
            return f"good query {wire.hex()} answered {got!r} instead of {want.hex()}"
        return None

    def report(self) -> dict[str, Any]:
        times = sorted(self.times)
        n = len(times)

        def pct(p: float) -> float:
            return times[min(n - 1, int(n * p))] / 1000 if n else 0.0

        return {"inputs": n, "answered": self.answered, "dropped": self.dropped,
                "crashes": len(self.crashes), "p50_us": pct(0.50), "p99_us": pct(0.99),
                "p999_us": pct(0.999), "max_us": times[-1] / 1000 if n else 0.0,
                "first_try_max_us": self.raw_max_ns / 1000,
                "rcodes": dict(sorted(self.rcodes.items())),
                "slow_over_1ms": len(self.slow),
                "forwarded": self.forwarder.calls if self.forwarder else 0}


def check_response(query: bytes, resp: bytes, tcp: bool, max_udp: int) -> str | None:
    """What is wrong with ``resp`` as the answer to ``query``, or None."""
    if len(resp) < 12:
        return f"answer shorter than a header: {resp.hex()}"
    if resp[:2] != query[:2]:
        return "answer ID differs from the query's"
    if not resp[2] & 0x80:
        return "answer without QR"
    if (resp[2] ^ query[2]) & 0x78:
        return "answer opcode differs from the query's"
    try:
        dns.message.from_wire(resp)
    except (dns.exception.DNSException, ValueError, struct.error, IndexError) as e:
        return f"answer does not parse ({type(e).__name__}: {e}): {resp.hex()}"
    if not tcp and len(resp) > udp_limit(query, max_udp):
        return f"UDP answer of {len(resp)} bytes over the limit {udp_limit(query, max_udp)}"
    return None


def udp_limit(query: bytes, max_udp: int) -> int:
    """The largest UDP answer the client allows: independent of mcdns's own parser."""
    try:
        msg = dns.message.from_wire(query)
    except Exception:
        return max_udp  # dnspython cannot read it: only the configured cap is certain
    if msg.edns < 0:
        return 512
    return min(max(512, msg.payload), max_udp)
