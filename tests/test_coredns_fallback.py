"""The CoreDNS safety net, with real parts: while no mcdns process answers, the cluster
zone keeps answering from the fallback, and answers come from mcdns again once it is back.

No CoreDNS binary can be had here, so two real servers stand in for the two parts of the
shipped Corefile (config/coredns/Corefile):

- dnsdist (Debian's) for CoreDNS's ``forward . MCDNS 127.0.0.1:5301 { policy sequential }``:
  its ``firstAvailable`` policy sends every query to the first upstream its health checks
  call up, in the order given, as ``sequential`` does. One difference makes the gap
  measured here an upper bound: CoreDNS retries a failed query on the next upstream at
  once, dnsdist does not (the client's query times out until the health check marks
  mcdns down).
- Knot for the loopback block running CoreDNS's kubernetes plugin: it serves the cluster
  zone with the local Service's ClusterIP, which is what that plugin answers.

The name queried is the demo's ``serve``: its local pods are all down, so mcdns answers the
import's IP and the fallback the local ClusterIP, and each answer says who gave it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest
from conftest import DEMO_STATE, ROOT, STARTED, needs
from knot import Knot, free_port

NAME = "serve.default.svc.cluster.local."
FROM_MCDNS = "10.13.187.164"  # the ServiceImport's IP (config/demo-state.yaml)
FROM_FALLBACK = "10.96.10.10"  # the local Service's ClusterIP, as the kubernetes plugin says
ZONE_TEXT = f"""$ORIGIN cluster.local.
$TTL 5
@ IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5
@ IN NS ns.dns
ns IN A 127.0.0.1
ns.dns IN A 127.0.0.1
serve.default.svc IN A {FROM_FALLBACK}
"""
DNSDIST_CONF = """setSecurityPollSuffix("")
setLocal("127.0.0.1:{port}")
-- CoreDNS probes every 0.5s and needs 2 failures; dnsdist's interval is whole seconds.
newServer({{address="127.0.0.1:{mcdns}", name="mcdns", order=1, checkName="cluster.local.",
           checkType="SOA", checkInterval=1, checkTimeout=500, maxCheckFailures=1, rise=1}})
newServer({{address="127.0.0.1:{fallback}", name="fallback", order=2,
           checkName="cluster.local.", checkType="SOA", checkInterval=1}})
setServerPolicy(firstAvailable)
"""
QUERY_EVERY = 0.02
QUERY_TIMEOUT = 0.3
WORKERS = "2"


@dataclass
class Probe:
    """A client asking NAME every QUERY_EVERY seconds: (time, answer or None) per query."""

    port: int
    seen: list[tuple[float, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        deadline = time.monotonic() + 60  # bounded whatever happens
        while not self.stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                resp = dns.query.udp(dns.message.make_query(NAME, "A"), "127.0.0.1",
                                     port=self.port, timeout=QUERY_TIMEOUT)
                ips = [rr.address for rrset in resp.answer for rr in rrset]
                answer = ips[0] if ips else f"rcode {resp.rcode()}"
            except (dns.exception.Timeout, OSError):
                answer = None
            self.seen.append((started, answer))
            time.sleep(max(0.0, QUERY_EVERY - (time.monotonic() - started)))

    def first(self, answer: str, after: float, timeout: float = 10.0) -> float:
        """When the first query sent after ``after`` got ``answer`` (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, got in list(self.seen):
                if t >= after and got == answer:
                    return t
            time.sleep(0.02)
        raise AssertionError(f"no {answer} after {after}: {self.tail()}")

    def between(self, start: float, end: float) -> list[str | None]:
        return [got for t, got in self.seen if start <= t < end]

    def tail(self) -> list[tuple[float, str | None]]:
        return self.seen[-20:]


def start_mcdns_group(port: int) -> subprocess.Popen[str]:
    """mcdns with two workers on a fixed port, in its own process group (so every
    process of it can be killed at once); returns once it logged that it serves."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcdns", "serve", "--state", str(DEMO_STATE), "--listen",
         f"127.0.0.1:{port}", "--workers", WORKERS, "--failback-delay", "0", "--http", ""],
        stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if STARTED.search(line):
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
            return proc
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("mcdns did not start:\n" + "".join(seen))


def group_alive(pgid: int) -> list[int]:
    """Pids still in process group ``pgid`` (zombies excluded)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def kill_group(proc: subprocess.Popen[str]) -> None:
    pgid = proc.pid
    os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not group_alive(pgid), "an mcdns process survived SIGKILL of its group"


@pytest.fixture
def fallback() -> Iterator[Knot]:
    needs("knotd")
    with Knot(zone="cluster.local", text=ZONE_TEXT) as knot:
        yield knot


def test_cluster_dns_keeps_answering_with_every_mcdns_process_stopped(
        fallback: Knot, tmp_path: Path) -> None:
    needs("dnsdist")
    needs("dig")
    mcdns_port, front_port = free_port(), free_port()
    conf = tmp_path / "dnsdist.conf"
    conf.write_text(DNSDIST_CONF.format(port=front_port, mcdns=mcdns_port,
                                        fallback=fallback.port))
    mcdns = start_mcdns_group(mcdns_port)
    front = subprocess.Popen(["dnsdist", "--supervised", "--disable-syslog", "-C", str(conf)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = Probe(front_port)
    thread = threading.Thread(target=probe.run, daemon=True)
    try:
        thread.start()
        # Both upstreams up: mcdns, first in order, answers (its failover answer).
        settled = probe.first(FROM_MCDNS, after=time.monotonic())
        time.sleep(1.0)
        killed = time.monotonic()
        kill_group(mcdns)
        # Every mcdns process gone: the fallback answers.
        took_over = probe.first(FROM_FALLBACK, after=killed)
        time.sleep(2.0)
        dug = subprocess.run(["dig", "+short", "+tries=1", "+time=1", "-p", str(front_port),
                              "@127.0.0.1", NAME, "A"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        assert dug.split() == [FROM_FALLBACK]
        restarted_at = time.monotonic()
        mcdns = start_mcdns_group(mcdns_port)
        ready = time.monotonic()
        back = probe.first(FROM_MCDNS, after=ready)
        time.sleep(1.5)
        probe.stop.set()
        thread.join(timeout=5)
    finally:
        probe.stop.set()
        front.terminate()
        front.wait(timeout=10)
        if mcdns.poll() is None:
            kill_group(mcdns)

    before = probe.between(settled, killed)
    gap = probe.between(killed, took_over)
    during = probe.between(took_over, restarted_at)
    handover = probe.between(ready, back)
    after = probe.between(back, float("inf"))
    print(f"\nfallback: first fallback answer {took_over - killed:.3f}s after SIGKILL; "
          f"{gap.count(None)} of {len(gap)} queries in between unanswered; "
          f"{len(during)} queries answered by the fallback; "
          f"mcdns answering again {back - ready:.3f}s after it started "
          f"({time.monotonic() - restarted_at:.1f}s restart)")
    assert before and set(before) == {FROM_MCDNS}
    # The gap is dnsdist's health check (1 s interval, 0.5 s timeout); CoreDNS's forward
    # retries the next upstream within the query, so there it is a failed attempt per query.
    assert took_over - killed < 3.0, probe.tail()
    assert set(gap) <= {FROM_MCDNS, None}, gap
    # Once the fallback took over, every query is answered, by the fallback.
    assert len(during) > 50 and set(during) == {FROM_FALLBACK}, during
    # mcdns back: it answers again within a health-check round, and keeps answering.
    assert back - ready < 3.0
    assert set(handover) <= {FROM_FALLBACK}, handover
    assert len(after) > 20 and set(after) == {FROM_MCDNS}, after
