"""The status page (/status, /status.json), read by a real browser from a live mcdns.

Debian's chromium loads the page from ``mcdns serve`` on a copy of the demo state
(headless, ``--dump-dom``): the failed-over demo service is there with its reason, and
once a local Service loses its pods the switch shows up. The page's markup is checked for
escaping here too. ``python tests/test_status.py --screenshot docs/images/status.png``
(``make status-screenshot``) takes the README's screenshot from the same scenario.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DEMO_STATE, ROOT, needs, start_mcdns

from mcdns.answers.switch import Switch
from mcdns.ops.status import Status, render

pytestmark = pytest.mark.timeout(120)

SERVE_REASON = "local has 0 ready (min_ready 1): unhealthy; import has 2 ready remote pods"


def get(port: int, path: str) -> tuple[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.headers["Content-Type"], resp.read().decode()


def status(port: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(get(port, "/status.json")[1])
    return data


def web_down(state: Path) -> None:
    """The demo's healthy ``web`` loses its local pods (one atomic write for the poller)."""
    doc = yaml.safe_load(DEMO_STATE.read_text(encoding="utf-8"))
    for obj in doc["items"]:
        if obj["kind"] == "EndpointSlice" and obj["metadata"]["name"] == "web-m2v8c":
            for ep in obj["endpoints"]:
                ep["conditions"] = {"ready": False, "serving": False, "terminating": False}
    tmp = state.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    tmp.replace(state)


def wait_for(cond: Any, port: int, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        snap = status(port)
        if cond(snap):
            return snap
        assert time.monotonic() < deadline, json.dumps(snap, indent=2)
        time.sleep(0.1)


@contextmanager
def demo(*args: str) -> Iterator[tuple[int, Path]]:
    """``mcdns serve`` on a copy of the demo state: (HTTP port, the state file)."""
    with tempfile.TemporaryDirectory(prefix="mcdns-status-") as tmp:
        state = Path(tmp) / "state.yaml"
        shutil.copy(DEMO_STATE, state)
        proc, _, http = start_mcdns("--state", str(state), "--http", "127.0.0.1:0", *args)
        try:
            assert http is not None
            wait_for(lambda s: s["sync"]["synced"], http)
            yield http, state
        finally:
            proc.terminate()
            proc.wait(timeout=15)
            assert proc.stderr is not None
            proc.stderr.close()


def chromium(url: str, *args: str) -> str:
    """Run headless chromium on ``url``; its stdout (the DOM with --dump-dom)."""
    needs("chromium")
    with tempfile.TemporaryDirectory(prefix="mcdns-chromium-") as profile:
        done = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={profile}", *args, url],
            capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


class Rows(HTMLParser):
    """The text of every table row, by table id: {table id: [[cell text, ...], ...]}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.table = ""
        self.row: list[str] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.table = dict(attrs).get("id") or ""
            self.tables[self.table] = []
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.row is not None and self.cell is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.tables[self.table].append(self.row)
            self.row = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def rows(dom: str) -> dict[str, list[list[str]]]:
    parser = Rows()
    parser.feed(dom)
    return parser.tables


def test_chromium_shows_the_failover_and_then_a_switch() -> None:
    with demo() as (http, state):
        url = f"http://127.0.0.1:{http}/status"
        tables = rows(chromium(url, "--dump-dom"))
        assert tables["sources"][1:] == [["state", "done"]]
        (serve,) = [r for r in tables["not-local"][1:] if r[0] == "default/serve"]
        assert serve[1:4] == ["local-first", "import", SERVE_REASON]
        assert serve[5] == "needs 1 ready local pods for 0 s (has 0)"
        assert "switches" not in tables  # nothing switched yet

        web_down(state)
        wait_for(lambda s: s["switches"], http)
        tables = rows(chromium(url, "--dump-dom"))
        services = {r[0]: r for r in tables["not-local"][1:]}
        assert set(services) == {"default/serve", "default/web"}
        assert services["default/web"][3].startswith("local has 0 ready (min_ready 1)")
        (header, switch) = tables["switches"]
        assert header == ["Time", "Service", "Switch", "Why"]
        assert switch[1:3] == ["default/web (Service)", "FailedOver (to_import)"]


def test_status_json_and_content_types() -> None:
    with demo() as (http, state):
        kind, _ = get(http, "/status")
        assert kind == "text/html; charset=utf-8"
        kind, _ = get(http, "/status.json")
        assert kind.startswith("application/json")
        snap = status(http)
        assert snap["services"] == {"healthy": 4, "fallback": 1, "degraded": 0}
        (serve,) = snap["not_local"]
        assert (serve["namespace"], serve["name"], serve["decision"]) == ("default", "serve",
                                                                        "import")
        assert serve["reason"] == SERVE_REASON
        assert serve["since"] is not None and serve["failback"]["pending"] is False
        web_down(state)
        snap = wait_for(lambda s: s["switches"], http)
        (sw,) = snap["switches"]
        assert (sw["namespace"], sw["name"], sw["reason"], sw["direction"]) == (
            "default", "web", "FailedOver", "to_import")
        assert snap["switches_total"] == {"to_import": 1, "to_local": 0, "tier": 0}
        web = next(r for r in snap["not_local"] if r["name"] == "web")
        assert web["since"] >= serve["since"]


class FakeCompiler:
    """What Status subscribes to; the ring is fed by hand."""

    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def on_switch(self, listener: Any) -> None:
        self.listeners.append(listener)


def test_the_switch_ring_keeps_the_last_ones() -> None:
    compiler = FakeCompiler()
    st = Status(compiler, store=None, recent=3)  # type: ignore[arg-type]
    for i in range(5):
        for listener in compiler.listeners:
            listener(Switch("ns", f"s{i}", "Service", "FailedOver", "to_import", "why", i))
    assert [sw.name for sw in st.switches] == ["s2", "s3", "s4"]


def test_every_value_is_escaped() -> None:
    evil = '<script>alert("x")</script>&'
    snap = {
        "generated": evil, "version": evil, "role": evil, "cluster_id": evil, "zones": [evil],
        "sync": {"synced": False, "sources": {evil: False}, "generation": evil,
                 "last_change": evil, "last_contact": evil, "last_contact_age_seconds": 3.0},
        "services": {"healthy": evil, "fallback": evil, "degraded": evil},
        "not_local": [{"namespace": evil, "name": evil, "policy": evil, "decision": evil,
                       "degraded": True, "reason": evil, "local_ready": evil,
                       "min_ready": evil, "since": evil, "for_seconds": 5.0,
                       "failback": {"pending": True, "healthy_for_seconds": evil,
                                    "delay_seconds": 10.0, "ready_needed": evil}}],
        "switches_total": {evil: evil},
        "switches": [{"time": evil, "namespace": evil, "name": evil, "kind": evil,
                      "reason": evil, "direction": evil, "note": evil}],
    }
    page = render(snap)
    assert "<script" not in page and 'alert("x")' not in page
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;") >= 20


def screenshot(path: Path) -> None:
    """The README's screenshot: the demo, after ``web`` lost its pods (with the default
    failback hold-down, 10 s)."""
    with demo("--failback-delay", "10") as (http, state):
        web_down(state)
        wait_for(lambda s: s["switches"], http)
        time.sleep(1.5)  # the "since" ages read as seconds, not 0s
        chromium(f"http://127.0.0.1:{http}/status", f"--screenshot={path.resolve()}",
                 "--window-size=1200,900")
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path,
                        default=ROOT / "docs" / "images" / "status.png")
    screenshot(parser.parse_args().screenshot)
