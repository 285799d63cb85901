"""Logging set-up: one line per event, logfmt by default or JSON, on stderr.

Kept apart so every entry point (CLI, tests, workers) formats logs the same way.

Fields. A log call that carries values names them: its message is a %-format with named
placeholders and its one argument the dict of values (the logging module's own mapping
form), ``log.info("state file loaded path=%(path)s services=%(services)d", {"path": p,
"services": n})``. A ``key=%(key)...`` token is a field: the logfmt line prints the
message exactly as before (``msg="state file loaded path=... services=5"``), and the JSON
line takes the tokens out of ``msg`` and gives every value its own key, with its JSON
type: ``{"ts": ..., "level": "info", "logger": ..., "msg": "state file loaded", "path":
"...", "services": 5}``. Placeholders in prose (``worker %(worker)d stopped``) stay in
``msg`` and are keys as well. Calls with positional arguments are plain messages.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

FIELD = re.compile(r" ?\b([A-Za-z_][\w.-]*)=%\(\1\)[#0 +-]*\d*(?:\.\d+)?[a-zA-Z]\S*")
"""A ``key=%(key)s`` token (a unit may follow: ``lameduck=%(lameduck)ss``)."""
RESERVED = frozenset({"ts", "level", "logger", "msg", "error"})


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\n\t'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC with milliseconds: ``2026-12-03T09:00:00.123Z``."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{ts}.{int(record.msecs):03d}Z"


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=info logger=mcdns msg="..."`` lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = (f"ts={timestamp(record)} level={record.levelname.lower()} "
                f"logger={record.name} msg={_quote(record.getMessage())}")
        if record.exc_info:
            line += " error=" + _quote(self.formatException(record.exc_info))
        return line


@functools.lru_cache(maxsize=256)
def _prose(template: str) -> str:
    """A message template without its ``key=%(key)s`` tokens."""
    return FIELD.sub("", template).strip()


def fields_of(record: logging.LogRecord) -> tuple[str, Mapping[str, Any]]:
    """(msg, fields) of a record: a named-placeholder message without its field tokens
    and its values, else the plain message and no fields."""
    args = record.args
    if isinstance(args, Mapping) and isinstance(record.msg, str):
        try:
            return _prose(record.msg) % args, args
        except (KeyError, TypeError, ValueError):
            pass
    return record.getMessage(), {}


class JSONFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, then each field as its own key."""

    def format(self, record: logging.LogRecord) -> str:
        msg, fields = fields_of(record)
        doc: dict[str, Any] = {"ts": timestamp(record), "level": record.levelname.lower(),
                               "logger": record.name, "msg": msg}
        for key, value in fields.items():
            doc[f"{key}_" if key in RESERVED else key] = value
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(fmt: str = "logfmt", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
