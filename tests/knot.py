"""A real upstream for resolver tests and benchmarks: Debian's Knot DNS on loopback.

``Knot`` writes a config and a test zone into a temp dir, starts ``knotd`` in the
foreground on 127.0.0.1 and a free port, and can stop and start it again on the same
port (to test serve-stale and failover). ``queries()`` reads the number of queries Knot
has received from its mod-stats module through ``knotc stats``; the count restarts from
zero when knotd restarts, so tests compare counts between two points of one run.
"""

from __future__ import annotations

import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

ZONE = "example.test"
SOA_MINIMUM = 3
"""SOA minimum (and so the negative TTL) of the test zone."""
WWW_TTL = 300
SHORT_TTL = 2
MANY_COUNT = 100
"""A records of ``many.example.test``: more than fit in 1232 bytes, forcing TCP."""

ZONE_TEXT = (
    f"""$ORIGIN {ZONE}.
$TTL 300
@ 3600 IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 {SOA_MINIMUM}
@ IN NS ns
ns IN A 127.0.0.1
www {WWW_TTL} IN A 192.0.2.1
www {WWW_TTL} IN AAAA 2001:db8::1
short {SHORT_TTL} IN A 192.0.2.2
alias IN CNAME www
txt IN TXT "hello from knot"
"""
    + "".join(f"many IN A 198.51.100.{i}\n" for i in range(1, MANY_COUNT + 1))
    + "".join(f"n{i} IN A 203.0.113.{i % 250 + 1}\n" for i in range(200))
)

CONF = """server:
    rundir: {dir}
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: warning
control:
    listen: {dir}/knot.sock
database:
    storage: {dir}
mod-stats:
  - id: counts
    request-protocol: on
template:
  - id: default
    storage: {dir}
    global-module: mod-stats/counts
zone:
  - domain: {zone}
    file: {zone}.zone
"""

START_TIMEOUT = 10.0


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port: int = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


class Knot:
    """One knotd process serving ``zone`` (by default ``ZONE``) on 127.0.0.1:``port``.
    The zone needs an ``ns`` A record: readiness is its answer."""

    def __init__(self, zone: str = ZONE, text: str = ZONE_TEXT) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="mcdns-knot-")
        self.dir = Path(self._tmp.name)
        self.port = free_port()
        self.conf = self.dir / "knot.conf"
        self.zone = zone
        self.conf.write_text(CONF.format(dir=self.dir, port=self.port, zone=zone))
        (self.dir / f"{zone}.zone").write_text(text)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.proc is not None:
            return
        self.proc = subprocess.Popen(
            ["knotd", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "knotd.log", "ab"),  # noqa: SIM115 - closed with the proc
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                log = (self.dir / "knotd.log").read_text(errors="replace")
                raise RuntimeError(f"knotd exited: {log}")
            if self._answers():
                return
            time.sleep(0.05)
        raise RuntimeError("knotd did not start answering in time")

    def _answers(self) -> bool:
        query = (
            bytes.fromhex("abcd01000001000000000000")
            + _qname(f"ns.{self.zone}")
            + b"\x00\x01\x00\x01"
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(query, ("127.0.0.1", self.port))
                return s.recv(512)[:2] == b"\xab\xcd"
            except OSError:
                return False

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def queries(self) -> int:
        """Queries received since knotd started (UDP and TCP, from mod-stats)."""
        out = subprocess.run(
            ["knotc", "-c", str(self.conf), "stats", "mod-stats.request-protocol"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return sum(int(n) for n in re.findall(r"request-protocol\[\w+\] = (\d+)", out))

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> Knot:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _qname(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
