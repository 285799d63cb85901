"""The command line as a user runs it: exit codes and messages naming the problem, a real
``mcdns serve`` process answering, flags overriding the file, clean exit on SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import pytest
from conftest import DEMO_STATE, ROOT, start_mcdns
from knot import free_port

from mcdns import __version__, config

MCDNS = [sys.executable, "-m", "mcdns"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MCDNS, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_version() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"mcdns {__version__}"


def test_check_config_accepts_the_examples() -> None:
    r = run("check-config", "config/mcdns.yaml", "--state", "config/demo-state.yaml")
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout and "20 objects" in r.stdout


@pytest.mark.parametrize("text,key,problem", [
    ("ttl: 99999\n", "ttl", "out of range 0-3600"),
    ("ttl: five\n", "ttl", "is not an integer"),
    ("policy: nearest\n", "policy", "is not one of"),
    ("listen: ['127.0.0.1:99999']\n", "listen", "out of range"),
    ("colour: blue\n", "colour", "unknown key"),
    ("allow: ['not-a-net']\n", "allow", "is not an IP network"),
    ("namespaces: ['']\n", "namespaces", "is not a namespace name"),
    ("namespaces: [default, Shop]\n", "namespaces", "is not a namespace name"),
    ("cluster_id: Member_1\n", "cluster_id", "is not a cluster id"),
    ("- just\n- a list\n", "<file>", "must hold a mapping"),
    ("zone: [\n", "<file>", "not valid YAML"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    for args in (["check-config", str(cfg)], ["serve", "--config", str(cfg)]):
        r = run(*args)
        assert r.returncode == 2
        assert f"config key '{key}'" in r.stderr and problem in r.stderr, r.stderr


def test_cluster_ids_may_be_dns_subdomains() -> None:
    """The MCS cluster id is a DNS-1123 subdomain (KEP-2149), so several labels are fine."""
    assert config.build({"cluster_id": "cluster-a.east"}).cluster_id == "cluster-a.east"


def test_namespaces_are_deduplicated() -> None:
    # namespaces is a resolver-role key (the stub role refuses it: tests/test_namespaces.py)
    resolver = {"role": "resolver"}
    assert config.build({**resolver, "namespaces": ["shop", "web", "shop"]}).namespaces == (
        "shop", "web")
    assert config.build({**resolver, "namespaces": "shop"}).namespaces == ("shop",)


def test_bad_flag_value_names_the_key() -> None:
    r = run("serve", "--listen", "127.0.0.1:http")
    assert r.returncode == 2 and "'listen'" in r.stderr and "not a number" in r.stderr


def test_bad_state_file_names_the_object(tmp_path: Path) -> None:
    state = tmp_path / "state.yaml"
    state.write_text("kind: Service\napiVersion: v1\nmetadata: {name: web, namespace: shop}\n"
                     "spec: {clusterIP: 10.0.0.300, ports: [{port: 80}]}\n")
    r = run("serve", "--state", str(state), "--listen", "127.0.0.1:0", "--http", "")
    assert r.returncode == 2
    assert "Service shop/web" in r.stderr and "10.0.0.300" in r.stderr, r.stderr


def test_serve_answers_flags_override_file_and_sigterm_exits_zero(tmp_path: Path) -> None:
    cfg = tmp_path / "mcdns.yaml"
    cfg.write_text("ttl: 30\nlameduck: 0.2\nhttp: null\nlisten: ['127.0.0.1:1']\n")
    proc, port, http = start_mcdns("--config", str(cfg), "--state", str(DEMO_STATE),
                                   "--listen", "127.0.0.1:0", "--ttl", "7")
    try:
        assert http is None  # http: null in the file
        q = dns.message.make_query("serve.default.svc.cluster.local.", "A")
        resp = dns.query.udp(q, "127.0.0.1", port=port, timeout=2)
        assert resp.answer[0].ttl == 7
        assert resp.answer[0][0].address == "10.13.187.164"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        err = proc.stderr.read() if proc.stderr else ""
        assert "shutting down signal=SIGTERM lameduck=0.2s" in err and "stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()


def burst(port: int, q: dns.message.Message, sources: int = 64,
          wait: float = 1.5) -> list[dns.message.Message]:
    """Send ``q`` once from each of ``sources`` fresh source ports at once (SO_REUSEPORT
    picks a worker by a hash of the source port) and return the answers that arrive
    within ``wait`` seconds."""
    socks: list[socket.socket] = []
    try:
        for _ in range(sources):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
            s.sendto(q.to_wire(), ("127.0.0.1", port))
        waiting = set(socks)
        got: list[dns.message.Message] = []
        deadline = time.monotonic() + wait
        while waiting and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(list(waiting), [], [], left)
            for s in ready:
                got.append(dns.message.from_wire(s.recv(4096)))
                waiting.discard(s)
        return got
    finally:
        for s in socks:
            s.close()


def test_two_workers_share_the_port_and_answer_correctly(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([*MCDNS, "serve", "--state", str(DEMO_STATE), "--listen",
                             f"127.0.0.1:{port}", "--http", "", "--workers", "2"],
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    children: list[str] = []
    try:
        deadline = time.monotonic() + 20
        started = 0
        while started < 2:  # both workers log their start line
            assert proc.poll() is None and time.monotonic() < deadline, "did not start"
            line = proc.stderr.readline() if proc.stderr else ""
            started += "mcdns started" in line
        children = subprocess.run(["ps", "--ppid", str(proc.pid), "-o", "pid="],
                                  capture_output=True, text=True).stdout.split()
        assert len(children) == 1
        q = dns.message.make_query("serve.default.svc.cluster.local.", "A")
        for _ in range(200):  # a new source port each time: the kernel spreads them
            resp = dns.query.udp(q, "127.0.0.1", port=port, timeout=2)
            assert [r.address for r in resp.answer[0]] == ["10.13.187.164"]
        tcp = dns.query.tcp(q, "127.0.0.1", port=port, timeout=2)
        assert tcp.answer[0][0].address == "10.13.187.164"
        # Each worker answers on its own: with one stopped, the other still answers (the
        # queries the kernel hands the stopped one wait in its socket until SIGCONT).
        workers = [proc.pid, int(children[0])]
        for stopped in workers:
            os.kill(stopped, signal.SIGSTOP)
            try:
                got = burst(port, q)
            finally:
                os.kill(stopped, signal.SIGCONT)
            (serving,) = set(workers) - {stopped}
            assert got, f"worker {serving} answered nothing while worker {stopped} was stopped"
            for resp in got:
                assert [r.address for r in resp.answer[0]] == ["10.13.187.164"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert subprocess.run(["ps", "-p", children[0]], capture_output=True).returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            for child in children:  # a failed test leaves no worker behind
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(child), signal.SIGKILL)


def test_workers_need_fixed_ports() -> None:
    r = run("serve", "--workers", "2", "--listen", "127.0.0.1:0", "--state", str(DEMO_STATE))
    assert r.returncode == 2 and "'workers'" in r.stderr


def _error_lines(r: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr without the info lines logged before the failure."""
    return [ln for ln in r.stderr.splitlines() if "level=info" not in ln
            and '"level": "info"' not in ln]


def test_a_port_in_use_is_one_line_and_exit_1() -> None:
    """A runtime failure (the config is right): exit 1, one line naming the address and
    the protocol; it was a 37-line traceback."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    web = socket.socket()
    web.bind(("127.0.0.1", 0))
    web.listen()
    try:
        r = run("serve", "--state", str(DEMO_STATE), "--listen", f"127.0.0.1:{port}",
                "--http", "127.0.0.1:0")
        assert r.returncode == 1
        assert _error_lines(r) == [f"mcdns: error: cannot listen on 127.0.0.1:{port} (DNS "
                                   "over UDP): Address already in use"]
        r = run("serve", "--state", str(DEMO_STATE), "--listen", "127.0.0.1:0",
                "--http", f"127.0.0.1:{web.getsockname()[1]}")
        assert r.returncode == 1
        (line,) = _error_lines(r)
        assert line.startswith(f"mcdns: error: cannot listen on 127.0.0.1:"
                               f"{web.getsockname()[1]} (HTTP): ") and "in use" in line
        r = run("serve", "--state", str(DEMO_STATE), "--listen", f"127.0.0.1:{port}",
                "--http", "127.0.0.1:0", "--log-format", "json")
        (line,) = _error_lines(r)  # JSON logs stay JSON
        doc = json.loads(line)
        assert doc["level"] == "error" and "cannot listen on" in doc["msg"]
    finally:
        holder.close()
        web.close()


def test_bad_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "mcdns.yaml"
    cfg.write_text("ttl: 5\npolicy: [local-first\n")
    r = run("serve", "--config", str(cfg))
    assert r.returncode == 2
    assert _error_lines(r) == [f"mcdns: error: config key '<file>': {cfg}: not valid YAML: "
                               "line 3 column 1: expected ',' or ']', but got '<stream end>'"]
    state = tmp_path / "state.yaml"
    state.write_text("items:\n  - {kind: Service\n")
    r = run("serve", "--state", str(state))
    assert r.returncode == 2
    (line,) = _error_lines(r)
    assert line.startswith(f"mcdns: error: {state}: not valid YAML or JSON: line ")


def test_a_missing_kubeconfig_is_one_line(tmp_path: Path) -> None:
    r = run("serve", "--kubeconfig", str(tmp_path / "nope"), "--listen", "127.0.0.1:0")
    assert r.returncode == 2
    assert _error_lines(r) == [f"mcdns: error: cannot read kubeconfig {tmp_path / 'nope'}: "
                               "no such file"]


def _as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """``mcdns ARGS`` as an unprivileged user (setpriv, when running as root)."""
    prefix = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    argv = [*(prefix if os.geteuid() == 0 else []), *MCDNS, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT)


def _privileged_port_start() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())


def test_no_permission_on_a_port_is_one_line_and_exit_1() -> None:
    """An unprivileged user asking for port 53 (DNS) or 80 (HTTP): one line each."""
    if _privileged_port_start() <= 80:
        pytest.skip("net.ipv4.ip_unprivileged_port_start lets anyone bind ports 53 and 80")
    r = _as_nobody("serve", "--state", str(DEMO_STATE), "--listen", "127.0.0.1:53",
                   "--http", "")
    assert r.returncode == 1
    assert _error_lines(r) == ["mcdns: error: cannot listen on 127.0.0.1:53 (DNS over "
                               "UDP): Permission denied"]
    r = _as_nobody("serve", "--state", str(DEMO_STATE), "--listen", "127.0.0.1:0",
                   "--http", "127.0.0.1:80", "--log-format", "json")
    assert r.returncode == 1
    (line,) = _error_lines(r)
    doc = json.loads(line)  # JSON logs stay JSON
    assert doc["msg"] == "cannot listen on 127.0.0.1:80 (HTTP): permission denied"


@pytest.mark.parametrize(("text", "expected"), [
    ("clusters: [\n", "not valid YAML: line 2 column 1: expected the node content, but "
                      "found '<stream end>'"),
    ("- just a list\n", "not a kubeconfig (a mapping with clusters, users and contexts)"),
    ("apiVersion: v1\nkind: Config\nclusters: []\n", None),
])
def test_an_unusable_kubeconfig_is_one_line(tmp_path: Path, text: str,
                                            expected: str | None) -> None:
    """It was a YAML traceback, or "Expected key current-context"."""
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    r = run("serve", "--kubeconfig", str(path), "--listen", "127.0.0.1:0", "--http", "")
    assert r.returncode == 2
    (line,) = _error_lines(r)
    if expected is None:
        assert line == (f"mcdns: error: kubeconfig {path} names no current-context: set one "
                        "with `kubectl config use-context NAME`")
    else:
        assert line == f"mcdns: error: cannot read kubeconfig {path}: {expected}"


def test_an_unreadable_kubeconfig_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\ncurrent-context: x\n")
    path.chmod(0o600)
    tmp_path.chmod(0o755)
    r = _as_nobody("serve", "--kubeconfig", str(path), "--listen", "127.0.0.1:0", "--http", "")
    assert r.returncode == 2
    assert _error_lines(r) == [f"mcdns: error: cannot read kubeconfig {path}: "
                               "permission denied"]


def test_every_flag_and_command_has_a_help_line() -> None:
    """17 of the 19 serve flags had no help text; repeatable flags did not say so."""
    from mcdns import cli

    p = cli.parser()
    commands = next(a for a in p._actions if isinstance(a, cli.argparse._SubParsersAction))
    assert set(commands.choices) == set(cli.SUBCOMMANDS)
    top = run("--help").stdout
    for name, line in cli.SUBCOMMANDS.items():
        assert name in top and line in top.replace("\n" + " " * 16, " ")
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help and action.help.strip(), (name, action.option_strings)
    serve = commands.choices["serve"]
    for flag, (key, many) in cli.FLAGS.items():
        action = next(a for a in serve._actions if flag in a.option_strings)
        assert action.help is not None
        assert action.help.startswith(cli.key_docs()[key]), flag
        assert action.help.endswith("Repeatable.") == many, flag
    explain = run("explain", "--help").stdout
    assert "default: 127.0.0.1:5353" in explain
