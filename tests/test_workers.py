"""Supervised workers, as a user runs them: ``mcdns serve --workers N``, real processes
and sockets on 127.0.0.1.

A worker killed with SIGKILL is logged and restarted within the backoff while every
query is answered and /health stays 200; a worker that cannot start again (its config
file broke meanwhile) fails /health with the reason; /metrics counts every worker's
queries exactly, and keeps counting them after the worker that answered them died;
SIGTERM reaches every worker and leaves no process, and so does the first process dying.
The supervisor's restart and health rules are also checked on small real commands with
short delays, and a worker's command line reproduces the first process's flags.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest
from conftest import DEMO_STATE, ROOT
from knot import free_port
from prometheus_client.parser import text_string_to_metric_families

from mcdns import cli, config
from mcdns.ops.workers import Supervisor

SERVE = "serve.default.svc.cluster.local."
IMPORT_IP = "10.13.187.164"
WORKER_STARTED = r"worker (\d+) pid=(\d+) started"


class Server:
    """``mcdns serve --workers N`` in its own process group, its log read as it comes."""

    def __init__(self, tmp_path: Path, workers: int, config_text: str) -> None:
        self.config = tmp_path / "mcdns.yaml"
        self.config.write_text(config_text)
        self.port = free_port()
        self.workers = workers
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcdns", "serve", "--config", str(self.config), "--state",
             str(DEMO_STATE), "--listen", f"127.0.0.1:{self.port}", "--http", "127.0.0.1:0",
             "--workers", str(workers), "--failback-delay", "0"],
            stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.http_port = 0

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line))

    def wait_line(self, pattern: str, since: int = 0, timeout: float = 20
                  ) -> tuple[int, float, re.Match[str]]:
        """The first log line from index ``since`` on matching ``pattern``: its index,
        when it was read, the match."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(since, len(self.lines)):
                at, line = self.lines[i]
                if m := re.search(pattern, line):
                    return i, at, m
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"no log line {pattern!r}:\n" + self.log(since))
            time.sleep(0.02)

    def log(self, since: int = 0) -> str:
        return "".join(line for _, line in self.lines[since:])

    def start(self) -> dict[int, int]:
        """Wait for the first process and every worker to serve; worker number -> pid."""
        _, _, m = self.wait_line(r"mcdns started .* http=127\.0\.0\.1:(\d+)")
        self.http_port = int(m.group(1))
        pids: dict[int, int] = {}
        since = 0
        while len(pids) < self.workers - 1:
            since, _, m = self.wait_line(WORKER_STARTED, since)
            pids[int(m.group(1))] = int(m.group(2))
            since += 1
        return pids

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                        timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s series whose labels include ``labels`` (CoreDNS's label
        sets add ``server`` and ``family`` to the ones asked for here)."""
        status, text = self.get("/metrics")
        assert status == 200
        return sum(s.value for fam in text_string_to_metric_families(text)
                   for s in fam.samples if s.name == name
                   and all(s.labels.get(k) == want for k, want in labels.items()))

    def requests(self) -> float:  # the zone with its trailing dot, as CoreDNS writes it
        return self.metric("mcdns_dns_requests_total", zone="cluster.local.", proto="udp",
                           type="A")

    def ask(self, n: int) -> int:
        """Send ``n`` queries, each from a new socket (so SO_REUSEPORT spreads them);
        how many were answered right."""
        q = dns.message.make_query(SERVE, "A")
        right = 0
        for _ in range(n):
            resp = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=2)
            right += [r.address for r in resp.answer[0]] == [IMPORT_IP]
        return right


def alive(pgid: int) -> list[int]:
    """Pids still in process group ``pgid`` (zombies excluded)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    out.append(int(entry.name))
    return out


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pgid)


@contextlib.contextmanager
def serving(tmp_path: Path, workers: int = 2, config_text: str = "lameduck: 0.2\n"
            ) -> Iterator[tuple[Server, dict[int, int]]]:
    srv = Server(tmp_path, workers, config_text)
    try:
        yield srv, srv.start()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(srv.proc.pid, signal.SIGKILL)  # a failed test leaves nothing behind
        srv.proc.wait(timeout=10)


def test_a_killed_worker_is_logged_and_restarted_while_every_query_is_answered(
        tmp_path: Path) -> None:
    with serving(tmp_path) as (srv, pids):
        assert srv.ask(50) == 50
        old = pids[1]
        since = len(srv.lines)
        killed = time.monotonic()
        os.kill(old, signal.SIGKILL)
        i, _, m = srv.wait_line(rf"worker 1 pid={old} (.*); restarting in 1s", since, 5)
        assert m.group(1).startswith("killed by SIGKILL after ")
        # while it is away the first process answers everything, and it is alive
        assert srv.get("/health") == (200, "OK\n")
        assert srv.ask(100) == 100
        _, at, m = srv.wait_line(WORKER_STARTED, i, 15)
        new = int(m.group(2))
        print(f"restart: {at - killed:.2f}s from SIGKILL to the new worker serving")
        assert m.group(1) == "1" and new != old
        assert at - killed >= 1.0, "restarted before the backoff"
        assert parent_of(new) == srv.proc.pid
        assert srv.ask(200) == 200
        assert srv.get("/health") == (200, "OK\n")
        assert srv.metric("mcdns_workers") == 2
        assert srv.metric("mcdns_worker_restarts_total") == 1


def test_a_worker_that_cannot_start_again_fails_health_with_the_reason(
        tmp_path: Path) -> None:
    with serving(tmp_path) as (srv, pids):
        # The running processes refuse a broken file and keep their config; a worker
        # started now reads it and exits 2, every time.
        since = len(srv.lines)
        srv.config.write_text("ttl: banana\n")
        srv.wait_line("config reload refused", since, 5)
        killed = time.monotonic()
        os.kill(pids[1], signal.SIGKILL)
        srv.wait_line(r"worker 1 pid=\d+ exited with status 2 after", since, 10)
        assert srv.get("/health")[0] == 200, "one failed restart is not a dead pod"
        deadline = time.monotonic() + 40
        while (got := srv.get("/health"))[0] == 200:
            assert time.monotonic() < deadline, "/health stayed 200:\n" + srv.log(since)
            time.sleep(0.1)
        print(f"/health failed {time.monotonic() - killed:.1f}s after the SIGKILL")
        status, body = got
        assert status == 503
        assert body.startswith("worker 1 cannot be kept running: it exited 4 times in a row")
        assert "exited with status 2" in body and body.count("\n") == 1
        assert "config key 'ttl'" in srv.log(since)  # each try says why it failed
        assert srv.ask(20) == 20, "the first process still answers"
        assert srv.metric("mcdns_workers") == 1
        assert srv.metric("mcdns_worker_restarts_total") == 3


def test_metrics_count_every_workers_queries_exactly_even_after_one_died(
        tmp_path: Path) -> None:
    with serving(tmp_path, workers=3) as (srv, pids):
        before = srv.requests()
        assert srv.ask(400) == 400
        after = srv.requests()
        print(f"sent 400, counted {after - before:g}")
        assert after - before == 400
        # the queries the killed worker answered stay counted (its last snapshot)
        since = len(srv.lines)
        os.kill(pids[2], signal.SIGKILL)
        srv.wait_line(WORKER_STARTED, since, 15)
        assert srv.requests() == after
        assert srv.ask(100) == 100
        assert srv.requests() == after + 100
        assert srv.metric("mcdns_dns_request_duration_seconds_count") >= after + 100
        assert srv.metric("mcdns_workers") == 3
        # CPU is every process's (a counter, summed); memory the first process's (a gauge)
        first_cpu, first_rss = _cpu_and_rss(srv.proc.pid)
        assert srv.metric("process_cpu_seconds_total") > first_cpu + 0.1
        assert srv.metric("process_resident_memory_bytes") < 1.5 * first_rss


def _cpu_and_rss(pid: int) -> tuple[float, int]:
    """A process's CPU seconds (user + system) and resident bytes, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return cpu, int(fields[21]) * os.sysconf("SC_PAGE_SIZE")


def test_sigterm_reaches_every_worker_and_leaves_no_process(tmp_path: Path) -> None:
    with serving(tmp_path, workers=3) as (srv, pids):
        since = len(srv.lines)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=20) == 0
        assert gone(srv.proc.pid, 5), f"left running: {alive(srv.proc.pid)}"
        log = srv.log(since)
        assert log.count("shutting down signal=SIGTERM") == 3
        for n, pid in pids.items():
            assert f"worker {n} pid={pid} stopped: exited with status 0" in log
        assert "restarting" not in log


def test_workers_exit_when_the_first_process_dies(tmp_path: Path) -> None:
    with serving(tmp_path, workers=3) as (srv, pids):
        assert set(pids.values()) < set(alive(srv.proc.pid))
        killed = time.monotonic()
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(timeout=5)
        assert gone(srv.proc.pid, 10), f"orphan workers: {alive(srv.proc.pid)}"
        print(f"workers gone {time.monotonic() - killed:.2f}s after the first process")


# ---- the supervisor's rules, on small real commands with short delays ------------------

FAIL_THEN_RUN = """
import pathlib, sys, time
p = pathlib.Path(sys.argv[1])
n = int(p.read_text()) if p.exists() else 0
p.write_text(str(n + 1))
sys.exit(3) if n < int(sys.argv[2]) else time.sleep(60)
"""


def test_backoff_doubles_health_fails_then_recovers_and_shutdown_stops_restarts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mcdns.workers")
    counter = tmp_path / "starts"
    sup = Supervisor(1, [sys.executable, "-c", FAIL_THEN_RUN, str(counter), "5"],
                     backoff_first=0.1, backoff_max=0.4, stable_after=1.5, give_up_after=3)

    async def until(check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, caplog.text
            await asyncio.sleep(0.01)

    async def go() -> None:
        slot = sup.slots[0]
        seen: list[str | None] = []
        sup.start()
        # each exit: the problem as /health would report it
        for exits in range(1, 6):
            await until(lambda n=exits: slot.quick_exits >= n, 10)
            seen.append(sup.problem())
        assert seen[:3] == [None, None, None], "up to 3 failed restarts /health holds"
        assert all(p and p.startswith("worker 1 cannot be kept running") for p in seen[3:])
        assert "exited with status 3" in (seen[3] or "")
        # the 6th start stays up: after stable_after, /health recovers
        await until(lambda: sup.problem() is None, 5)
        assert slot.proc is not None and counter.read_text() == "6"
        assert sup.restarts == 5
        sup.shutdown(signal.SIGTERM)
        await sup.stop(timeout=5)
        assert slot.proc is None and sup.restarts == 5

    asyncio.run(asyncio.wait_for(go(), 60))
    delays = re.findall(r"restarting in ([\d.]+)s", caplog.text)
    assert delays == ["0.1", "0.2", "0.4", "0.4", "0.4"]
    assert "worker 1 pid=" in caplog.text and "stopped: killed by SIGTERM" in caplog.text
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "cannot be kept running" in errors[0]


def test_a_worker_runs_the_first_processs_flags() -> None:
    argv = ["serve", "--state", "s.yaml", "--listen", "127.0.0.1:5353", "--listen",
            "[::1]:5353", "--ttl", "7", "--failback-delay", "2.5", "--http", "",
            "--query-log", "--no-metrics", "--workers", "4"]
    flags = cli.overrides(cli.parser().parse_args(argv))
    cfg = config.build(flags)
    command = cli.worker_command(cfg, flags)
    assert command[:4] == [sys.executable, "-m", "mcdns", "serve"]
    assert cli.overrides(cli.parser().parse_args(command[3:])) == flags
