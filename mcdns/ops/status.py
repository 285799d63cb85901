"""The status page: what an operator asks first, on one page (/status) and as JSON
(/status.json).

Read from the running server's parts at each request: the store's sync state; every
service whose answer is not its local Service (failed over, import-first, degraded) with
the decision's policy and reason, since when it answers so (the compiler's
``changed_at``) and its failback hold-down; and the last switches of answers, a bounded
ring fed by the compiler's ``on_switch`` (as the Kubernetes Event recorder is). The page
is plain HTML that reads without JavaScript or outside files, every value escaped. With
workers the first process serves it: every process holds the same answers.
"""

from __future__ import annotations

import html
import json
import time
from collections import deque
from typing import Any

from mcdns import __version__
from mcdns.answers.compiler import Compiler
from mcdns.answers.health import LOCAL, Decision
from mcdns.answers.switch import DIRECTIONS, Switch
from mcdns.state.store import Store

RECENT = 50
"""Switches the page keeps (the oldest drop out)."""

Snapshot = dict[str, Any]


class Status:
    """The status of one server: ``snapshot()`` for /status.json, ``page()`` for /status."""

    def __init__(self, compiler: Compiler, store: Store, recent: int = RECENT) -> None:
        self.compiler = compiler
        self.store = store
        self.switches: deque[Switch] = deque(maxlen=recent)
        compiler.on_switch(self.switches.append)  # on the compile path: only appends

    def snapshot(self, now: float | None = None) -> Snapshot:
        now = time.time() if now is None else now
        c, st = self.compiler, self.store
        not_local = [self._service(d, now) for _, d in sorted(list(c.decisions.items()))
                     if d.degraded or (d.service is not None and d.choice != LOCAL)]
        return {
            "generated": stamp(now), "version": __version__, "role": c.cfg.role,
            "cluster_id": c.cluster_id, "zones": [c.cfg.zone, c.cfg.clusterset_zone],
            "sync": {
                "synced": st.synced, "sources": dict(sorted(st.synced_sources.items())),
                "generation": st.generation,
                "last_change": stamp(st.last_change) if st.last_change else None,
                "last_contact": stamp(st.last_contact) if st.last_contact else None,
                "last_contact_age_seconds": _age(st.last_contact, now),
            },
            "services": c.service_states(),
            "not_local": not_local,
            "switches_total": {d: c.switches[d] for d in DIRECTIONS},
            "switches": [{"time": stamp(sw.time), "namespace": sw.namespace,
                          "name": sw.name, "kind": sw.kind, "reason": sw.reason,
                          "direction": sw.direction, "note": sw.note}
                         for sw in reversed(self.switches)],
        }

    def _service(self, d: Decision, now: float) -> dict[str, Any]:
        key = (d.namespace, d.name)
        since = self.compiler.changed_at.get(key)
        healthy = self.compiler.failbacks.pending(key)
        return {
            "namespace": d.namespace, "name": d.name, "policy": d.policy,
            "decision": d.choice, "degraded": d.degraded, "reason": d.reason,
            "local_ready": d.local_ready, "min_ready": d.min_ready,
            "since": stamp(since) if since else None, "for_seconds": _age(since, now),
            "failback": {"pending": healthy is not None,
                         "healthy_for_seconds": None if healthy is None else round(healthy, 1),
                         "delay_seconds": d.failback_delay, "ready_needed": d.failback_ready},
        }

    def json(self) -> str:
        return json.dumps(self.snapshot(), indent=2) + "\n"

    def page(self) -> str:
        return render(self.snapshot())


def stamp(t: float) -> str:
    """Wall time ``t`` as ISO 8601 UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _age(t: float | None, now: float) -> float | None:
    return round(max(0.0, now - t), 1) if t else None


def ago(seconds: float | None) -> str:
    """``seconds`` as a short duration: 45s, 12m 5s, 3h 20m, 2d 4h."""
    if seconds is None:
        return "never"
    s = int(seconds)
    for unit, size, small, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                          ("m", 60, "s", 1)):
        if s >= size:
            return f"{s // size}{unit} {s % size // small_size}{small}"
    return f"{s}s"


STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:76em;padding:0 1em;
color:#1d2330;background:#fff}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .4em}
.meta{color:#5a6275;margin:0}.ok{color:#17733a;font-weight:600}
.bad{color:#b3261e;font-weight:600}.warn{color:#9a5b00;font-weight:600}
table{border-collapse:collapse;width:100%}th,td{text-align:left;vertical-align:top;
padding:.35em .6em;border-bottom:1px solid #dde1ea}th{background:#f3f5f9;font-weight:600}
td.reason{max-width:34em}code,.policy{font-size:.92em;white-space:nowrap}.none{color:#5a6275;font-style:italic}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render(snap: Snapshot) -> str:
    """The HTML page of a snapshot: every value goes through ``html.escape``."""
    sync = snap["sync"]
    state = snap["services"]
    out = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>mcdns status</title><style>{STYLE}</style></head><body>",
           "<h1>mcdns status</h1>",
           f'<p class="meta">mcdns {_e(snap["version"])} &middot; role {_e(snap["role"])}'
           f' &middot; cluster id {_e(snap["cluster_id"] or "-")} &middot; zones '
           f'{_e(", ".join(snap["zones"]))} &middot; generated {_e(snap["generated"])} '
           '&middot; <a href="/status.json">JSON</a> &middot; <a href="/metrics">metrics</a>'
           "</p>", "<h2>Sync</h2>"]
    word = ('<span class="ok">synced</span>' if sync["synced"]
            else '<span class="bad">not synced</span>')
    out.append(f'<p id="sync-state">{word}: generation {_e(sync["generation"])}, last '
               f'change {_e(sync["last_change"] or "never")}, last contact with the source '
               f'{_e(ago(sync["last_contact_age_seconds"]))} ago</p>')
    out.append('<table id="sources"><tr><th>Source</th><th>First list</th></tr>')
    for source, ok in sync["sources"].items():
        mark = '<span class="ok">done</span>' if ok else '<span class="bad">waiting</span>'
        out.append(f"<tr><td><code>{_e(source)}</code></td><td>{mark}</td></tr>")
    out.append("</table>")
    rows = snap["not_local"]
    out.append(f"<h2>Services not answered locally ({len(rows)})</h2>")
    out.append(f'<p id="service-states">healthy {_e(state["healthy"])} &middot; answered '
               f'by their import {_e(state["fallback"])} &middot; degraded '
               f'{_e(state["degraded"])}</p>')
    if rows:
        out.append('<table id="not-local"><tr><th>Service</th><th>Policy</th><th>Answer'
                   "</th><th>Reason</th><th>Since</th><th>Failback</th></tr>")
        out += [_service_row(r) for r in rows]
        out.append("</table>")
    else:
        out.append('<p class="none">Every service is answered by its local Service.</p>')
    switches = snap["switches"]
    out.append(f"<h2>Recent switches ({len(switches)})</h2>")
    totals = ", ".join(f"{d} {n}" for d, n in snap["switches_total"].items()) or "none"
    out.append(f'<p class="meta">since start: {_e(totals)}</p>')
    if switches:
        out.append('<table id="switches"><tr><th>Time</th><th>Service</th><th>Switch</th>'
                   "<th>Why</th></tr>")
        for sw in switches:
            out.append(f'<tr><td>{_e(sw["time"])}</td><td><code>{_e(sw["namespace"])}/'
                       f'{_e(sw["name"])}</code> ({_e(sw["kind"])})</td><td>'
                       f'{_e(sw["reason"])} ({_e(sw["direction"])})</td>'
                       f'<td class="reason">{_e(sw["note"])}</td></tr>')
        out.append("</table>")
    else:
        out.append('<p class="none">No answer has switched since mcdns started.</p>')
    out.append("</body></html>\n")
    return "\n".join(out)


def _service_row(r: dict[str, Any]) -> str:
    answer = ('<span class="bad">degraded</span> ' if r["degraded"] else "") + _e(r["decision"])
    fb = r["failback"]
    delay = _e(f"{fb['delay_seconds']:g}")
    if fb["pending"]:
        failback = (f'<span class="warn">pending</span>: local healthy for '
                    f'{_e(fb["healthy_for_seconds"])} s of {delay} s')
    else:
        failback = (f'needs {_e(fb["ready_needed"])} ready local pods for '
                    f'{delay} s (has {_e(r["local_ready"])})')
    since = (f'{_e(r["since"])} ({_e(ago(r["for_seconds"]))} ago)' if r["since"] else "-")
    return (f'<tr data-service="{_e(r["namespace"])}/{_e(r["name"])}"><td><code>'
            f'{_e(r["namespace"])}/{_e(r["name"])}</code></td>'
            f'<td class="policy">{_e(r["policy"])}</td><td>{answer}</td>'
            f'<td class="reason">{_e(r["reason"])}</td><td>{since}</td>'
            f"<td>{failback}</td></tr>")
