"""Log lines: logfmt exactly as it was, JSON with an ISO 8601 ``ts`` and each field of a
message as its own key (``log.info("... key=%(key)s", {"key": value})``).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from typing import Any

import pytest
from conftest import DEMO_STATE, ROOT

from mcdns.logs import JSONFormatter, LogfmtFormatter

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def record(msg: str, args: Any, level: int = logging.INFO,
           exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("mcdns.test", level, __file__, 1, msg, args, exc_info)
    rec.created, rec.msecs = 1796288400.123, 123.0  # 2026-12-03T09:00:00.123Z
    return rec


# (the call as it was, with positional arguments; the call as it is, with fields)
CALLS = [
    (("state file loaded path=%s services=%d slices=%d imports=%d",
      ("config/demo-state.yaml", 5, 7, 2)),
     ("state file loaded path=%(path)s services=%(services)d slices=%(slices)d "
      "imports=%(imports)d",
      {"path": "config/demo-state.yaml", "services": 5, "slices": 7, "imports": 2})),
    (("worker %d pid=%s %s after %.1fs; restarting in %gs",
      (1, 4242, "killed by SIGKILL", 0.25, 2.0)),
     ("worker %(worker)d pid=%(pid)s %(status)s after %(uptime).1fs; restarting in "
      "%(delay)gs",
      {"worker": 1, "pid": 4242, "status": "killed by SIGKILL", "uptime": 0.25,
       "delay": 2.0})),
    (("shutting down signal=%s lameduck=%ss", ("SIGTERM", 5.0)),
     ("shutting down signal=%(signal)s lameduck=%(lameduck)ss",
      {"signal": "SIGTERM", "lameduck": 5.0})),
    (("watch %s: unknown event type %r", ("services", "WEIRD")),
     ("watch %(resource)s: unknown event type %(type)r",
      {"resource": "services", "type": "WEIRD"})),
]


@pytest.mark.parametrize(("old", "new"), CALLS, ids=[c[0][0].split()[0] for c in CALLS])
def test_logfmt_lines_stay_byte_for_byte(old: tuple[str, Any], new: tuple[str, Any]) -> None:
    fmt = LogfmtFormatter()
    assert fmt.format(record(*new)) == fmt.format(record(*old))


def test_logfmt_line_shape() -> None:
    line = LogfmtFormatter().format(record(*CALLS[0][1]))
    assert line == ('ts=2026-12-03T09:00:00.123Z level=info logger=mcdns.test msg="state '
                    'file loaded path=config/demo-state.yaml services=5 slices=7 imports=2"')


def test_json_fields_are_keys_with_their_types() -> None:
    doc = json.loads(JSONFormatter().format(record(*CALLS[0][1])))
    assert doc == {"ts": "2026-12-03T09:00:00.123Z", "level": "info",
                   "logger": "mcdns.test", "msg": "state file loaded",
                   "path": "config/demo-state.yaml", "services": 5, "slices": 7,
                   "imports": 2}
    assert list(doc)[:4] == ["ts", "level", "logger", "msg"]
    assert ISO.match(doc["ts"])


def test_json_prose_placeholders_stay_in_msg_and_are_keys_too() -> None:
    doc = json.loads(JSONFormatter().format(record(*CALLS[1][1], logging.WARNING)))
    assert doc["msg"] == "worker 1 killed by SIGKILL after 0.2s; restarting in 2s"
    assert (doc["worker"], doc["pid"], doc["uptime"], doc["delay"]) == (1, 4242, 0.25, 2.0)
    doc = json.loads(JSONFormatter().format(record(*CALLS[2][1])))
    assert doc["msg"] == "shutting down" and doc["lameduck"] == 5.0  # the unit went with it


def test_json_plain_messages_errors_and_odd_values() -> None:
    fmt = JSONFormatter()
    doc = json.loads(fmt.format(record("cannot listen on %s (HTTP): %s",
                                       ("127.0.0.1:80", "permission denied"),
                                       logging.ERROR)))
    assert doc["msg"] == "cannot listen on 127.0.0.1:80 (HTTP): permission denied"
    assert set(doc) == {"ts", "level", "logger", "msg"}
    doc = json.loads(fmt.format(record("no args, 100% plain", None)))
    assert doc["msg"] == "no args, 100% plain"
    doc = json.loads(fmt.format(record("error answering a query; SERVFAIL", None, exc=True)))
    assert "ValueError: boom" in doc["error"]
    # a field named like a fixed key keeps both; a value JSON has no type for is its text
    doc = json.loads(fmt.format(record("odd msg=%(msg)s at=%(at)s",
                                       {"msg": "x", "at": ROOT})))
    assert doc["msg"] == "odd" and doc["msg_"] == "x" and doc["at"] == str(ROOT)


def test_a_served_process_logs_json_fields() -> None:
    """``mcdns serve --log-format json``: the start-up lines, fields as keys."""
    proc = subprocess.Popen([sys.executable, "-m", "mcdns", "serve", "--state",
                             str(DEMO_STATE), "--listen", "127.0.0.1:0", "--http", "",
                             "--log-format", "json"], stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    try:
        assert proc.stderr is not None
        docs = []
        for line in proc.stderr:
            docs.append(json.loads(line))
            if docs[-1]["msg"] == "mcdns started":
                break
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    loaded = next(d for d in docs if d["msg"] == "state file loaded")
    assert loaded["path"] == str(DEMO_STATE) and isinstance(loaded["services"], int)
    started = docs[-1]
    assert started["msg"] == "mcdns started" and started["role"] == "stub"
    assert started["listen"].startswith("127.0.0.1:") and started["http"] == "off"
    assert all(ISO.match(d["ts"]) for d in docs)
