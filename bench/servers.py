"""Start, pin, cap, probe and stop the DNS servers under test.

Fairness is the point of this module: every server runs pinned to CPU 1 (dnsperf gets
CPU 0) and capped at half a CPU by a cgroup CPU quota, so the server, not dnsperf, is the
bottleneck and the figures read as "per half core". Knot pins its own worker threads at
start, so all threads are re-pinned once it answers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dnslib import QTYPE, RCODE, DNSRecord

from tests.knot import free_port  # one copy, shared with the tests

SERVER_CPU = "1"
QUOTA_US = 50_000
PERIOD_US = 100_000


def warn(msg: str) -> None:
    print(f"bench: WARNING: {msg}", file=sys.stderr, flush=True)


# --- cgroup CPU quota ----------------------------------------------------------------------


@dataclass
class CpuCap:
    """A child cgroup with a 50% CPU quota (cgroup v2 ``cpu.max``, else v1 CFS quota)."""

    path: Path | None
    mode: str  # "v2", "v1" or "none"

    @classmethod
    def create(cls, name: str) -> CpuCap:
        for make in (_cgroup_v2, _cgroup_v1):
            try:
                cap = make(name)
            except OSError as e:
                warn(f"cgroup {make.__name__[1:]}: {e}")
                continue
            if cap is not None:
                return cap
        warn("no writable cgroup CPU controller: servers run UNCAPPED (figures are per core, "
             "and dnsperf may be the bottleneck)")
        return cls(None, "none")

    def add(self, pid: int) -> None:
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def throttled(self) -> int | None:
        """How many periods the group was throttled (proof the cap engaged)."""
        if self.path is None:
            return None
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "nr_throttled":
                return int(value)
        return None

    def remove(self) -> None:
        if self.path is None:
            return
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)
        warn(f"could not remove cgroup {self.path}")


def _cgroup_v2(name: str) -> CpuCap | None:
    root = Path("/sys/fs/cgroup")
    controllers = root / "cgroup.controllers"
    if not controllers.exists() or "cpu" not in controllers.read_text().split():
        return None
    subtree = root / "cgroup.subtree_control"
    if "cpu" not in subtree.read_text().split():
        subtree.write_text("+cpu\n")
    path = root / name
    path.mkdir(exist_ok=True)
    (path / "cpu.max").write_text(f"{QUOTA_US} {PERIOD_US}\n")
    return CpuCap(path, "v2")


def _cgroup_v1(name: str) -> CpuCap | None:
    root = next((p for p in (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpu,cpuacct"))
                 if (p / "cpu.cfs_quota_us").exists()), None)
    if root is None:
        return None
    path = root / name
    path.mkdir(exist_ok=True)
    (path / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
    (path / "cpu.cfs_quota_us").write_text(f"{QUOTA_US}\n")
    return CpuCap(path, "v1")


# --- probing -----------------------------------------------------------------------------


def answers(port: int, name: str, timeout: float = 0.3) -> bool:
    """True when the server answers ``name A`` with NOERROR and at least one record."""
    q = DNSRecord.question(name, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q.pack(), ("127.0.0.1", port))
            data, _ = s.recvfrom(65535)
        except OSError:
            return False
    r = DNSRecord.parse(data)
    return bool(r.header.id == q.header.id and r.header.rcode == RCODE.NOERROR
                and any(rr.rtype == QTYPE.A for rr in r.rr))


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (all its threads share it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# --- servers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Data:
    """The generated files a server needs."""

    state: Path
    zone: Path
    probe: str  # a name with an A answer


CommandFn = Callable[[Data, int, Path], list[str]]


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    cap: CpuCap
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.cap.remove()


def start(name: str, command: CommandFn, data: Data, work: Path, cap: bool = True,
          timeout: float = 600.0) -> Running:
    """Start a server pinned to CPU 1, wait until it answers, re-pin its threads, cap it."""
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    log = work / f"{name}.log"
    argv = ["taskset", "-c", SERVER_CPU, *command(data, port, work)]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=work)
    group = CpuCap.create(f"mcdns-bench-{os.getpid()}-{name}") if cap else CpuCap(None, "none")
    running = Running(name, proc, port, group, log)
    deadline = time.monotonic() + timeout
    while not answers(port, data.probe):
        if proc.poll() is not None or time.monotonic() > deadline:
            running.stop()
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} did not answer {data.probe} (exit {proc.poll()}):\n{tail}")
        time.sleep(0.05)
    subprocess.run(["taskset", "-a", "-p", "-c", SERVER_CPU, str(proc.pid)], check=True,
                   stdout=subprocess.DEVNULL)
    group.add(proc.pid)
    return running


# --- the three servers -------------------------------------------------------------------


def snapshot_mcdns(root: Path, dest: Path, from_head: bool) -> Path:
    """Copy the mcdns package (the working tree, or HEAD) so edits during a run change nothing.

    Returns the directory to put first on PYTHONPATH; ``python -m mcdns`` then runs the copy
    (PYTHONPATH precedes the editable install's finder).
    """
    dest.mkdir(parents=True, exist_ok=True)
    if from_head:
        archive = subprocess.run(["git", "-C", str(root), "archive", "HEAD", "mcdns"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    else:
        shutil.copytree(root / "mcdns", dest / "mcdns",
                        ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after 10 s: every benchmark's way to end a server."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def mcdns_command(extra: list[str], src: Path | None = None) -> CommandFn:
    """``mcdns serve`` on the state file; from ``src`` (a snapshot) when given."""
    exe = Path(sys.executable).with_name("mcdns")
    binary = [str(exe) if exe.exists() else (shutil.which("mcdns") or str(exe))]
    if src is not None:
        binary = ["env", f"PYTHONPATH={src}", sys.executable, "-m", "mcdns"]

    def command(data: Data, port: int, work: Path) -> list[str]:
        return [*binary, "serve", "--state", str(data.state), "--listen", f"127.0.0.1:{port}",
                "--ttl", "5", *extra]

    return command


def knot_command(data: Data, port: int, work: Path) -> list[str]:
    (work / "db").mkdir(exist_ok=True)
    zone = work / "cluster.local.zone"
    shutil.copyfile(data.zone, zone)
    conf = work / "knot.conf"
    conf.write_text(KNOT_CONF.format(work=work, port=port, zone=zone))
    return [shutil.which("knotd") or "knotd", "-c", str(conf)]


KNOT_CONF = """\
server:
    rundir: "{work}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{work}/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "{work}"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: cluster.local
    file: "{zone}"
"""


def dnslib_command(data: Data, port: int, work: Path) -> list[str]:
    script = Path(__file__).with_name("dnslib_server.py")
    return [sys.executable, str(script), "--zone", str(data.zone), "--port", str(port)]


def mcdns_available(src: Path) -> str | None:
    """None when ``mcdns serve --state`` exists (in the snapshot ``src``), else why not."""
    cmd = [sys.executable, "-m", "mcdns", "serve", "--help"]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=30, cwd=src,
                           env={**os.environ, "PYTHONPATH": str(src)})
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{' '.join(cmd)}: {e}"
    if r.returncode != 0 or b"--state" not in r.stdout:
        return f"`{' '.join(cmd)}` does not offer --state (exit {r.returncode})"
    return None
