"""The wheel builds, installs into a fresh venv and runs: the steps the Dockerfile takes.

No Docker engine runs here, so this is how the image's contents are tested: build the
wheel from a copy of exactly what the Dockerfile copies (pyproject.toml, README.md,
mcdns/), install it into a new virtualenv that does not see the source tree, then run the
installed ``mcdns`` script: ``--version``, ``check-config``, and ``serve --state`` answering
one query over UDP.

The dependencies come from the package index through pip (and its cache), as in the
image's build stage; set MCDNS_WHEELHOUSE to a folder of wheels to install offline.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

import mcdns

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / "tests" / "data" / "coredns_state.yaml"
STARTED = re.compile(r"mcdns started .*listen=(\S+?):(\d+)\b")


def clean_env() -> dict[str, str]:
    """The environment without anything that would put the source tree on sys.path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def run(args: list[str], cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv with the built wheel installed; yields its bin/ folder."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    if (ROOT / "README.md").exists():
        shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "mcdns", src / "mcdns", ignore=shutil.ignore_patterns("__pycache__"))
    dist = base / "dist"
    run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w", str(dist)], base)
    (wheel,) = dist.glob("mcdns-*.whl")
    assert wheel.name.startswith(f"mcdns-{mcdns.__version__}-")

    env_dir = base / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], base)
    python = env_dir / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    install += ["--disable-pip-version-check"]
    wheelhouse = os.environ.get("MCDNS_WHEELHOUSE")
    if wheelhouse:
        install += ["--no-index", "--find-links", wheelhouse]
    run([*install, str(wheel)], base)
    yield env_dir / "bin"


def test_installed_package_is_not_the_source_tree(venv: Path, tmp_path: Path) -> None:
    out = run([str(venv / "python"), "-c", "import mcdns; print(mcdns.__file__)"], tmp_path)
    location = Path(out.strip()).resolve()
    assert location.is_relative_to(venv.parent.resolve())
    assert not location.is_relative_to(ROOT)


def test_version(venv: Path, tmp_path: Path) -> None:
    out = run([str(venv / "mcdns"), "--version"], tmp_path)
    assert out.strip() == f"mcdns {mcdns.__version__}"


def test_check_config_of_image_default(venv: Path, tmp_path: Path) -> None:
    """The config the Dockerfile writes into the image is valid."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = re.findall(r"'(listen: .*?|http: .*?)'", text)
    assert len(lines) == 2
    path = tmp_path / "mcdns.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = run([str(venv / "mcdns"), "check-config", str(path)], tmp_path)
    assert "ok" in out


def wait_started(proc: subprocess.Popen[str], deadline: float) -> tuple[str, int]:
    """Read the server's log until its start line; returns the bound DNS address.

    A thread reads the lines (select() on a buffered pipe would miss lines already
    buffered), the test waits on a queue with the deadline.
    """
    assert proc.stderr is not None
    stream = proc.stderr
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        match = STARTED.search(line)
        if match:
            return match.group(1), int(match.group(2))
    raise AssertionError("mcdns did not start:\n" + "".join(seen))


def test_serve_state_answers_a_query(venv: Path, tmp_path: Path) -> None:
    config = tmp_path / "mcdns.yaml"
    config.write_text("listen: ['127.0.0.1:0']\nhttp: null\nlameduck: 0\n", encoding="utf-8")
    args = [str(venv / "mcdns"), "serve", "--config", str(config), "--state", str(STATE)]
    proc = subprocess.Popen(args, cwd=tmp_path, env=clean_env(), stderr=subprocess.PIPE, text=True)
    try:
        host, port = wait_started(proc, time.monotonic() + 30)
        query = dns.message.make_query("svc1.testns.svc.cluster.local.", "A")
        answer = dns.query.udp(query, host, port=port, timeout=2.0)
        assert answer.rcode() == dns.rcode.NOERROR
        assert [rr.to_text() for rrset in answer.answer for rr in rrset] == ["10.0.0.1"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
