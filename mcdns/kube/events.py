"""Failovers recorded as Kubernetes Events (events.k8s.io/v1), written off the answer path.

The compiler hands every switch of a service's answer to ``EventRecorder.record`` on the
compile path, so recording only appends to a bounded queue (full: the switch is dropped
and counted). A background task turns the queue into Events, with the watchers' HTTP
client (``ApiClient``, raw JSON through ``mcdns.kube.http``) and client config.

Series follow client-go's events library (kubernetes/client-go tools/events/
event_broadcaster.go: ``recordToSink``, ``recordEvent``, ``finishSeries``; the Event's
shape from event_recorder.go ``makeEvent``). Two Events are isomorphic when they share
the regarding object, reason, action and reporting controller. The first occurrence
creates an Event; an isomorphic one within 6 minutes of the last makes it a series: the
same object gets a strategic merge PATCH ``series: {count, lastObservedTime}`` instead of
a new object, and a 404 on that PATCH (the Event expired) creates it again. After 6 quiet
minutes the series is over and the next occurrence is a new Event.

Where this differs from client-go, on purpose: client-go writes every occurrence; here a
series is written at most once per ``min_interval`` (1 s), occurrences in between only
raise the count, so a service flapping at any rate costs one create plus at most one
PATCH a second per (object, reason); a token bucket (10 writes/s, burst 20) caps all
series together. ``series.count`` counts every occurrence (client-go starts at 1 on the
second; the API wants at least 2). Failed writes are counted and logged (one line per
30 s at most), never raised: connection errors, 429 and 5xx are retried about 10 s
later, 12 tries at most (client-go's ``attemptRecording``); other refusals give it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from mcdns.kube.client import ApiClient
from mcdns.kube.http import KubeError, NotServed, Obj, send_json
from mcdns.kube.resources import SERVICEIMPORTS, Resource
from mcdns.kube.settings import EventSettings, EventStats

log = logging.getLogger("mcdns.kube.events")

CONTROLLER = "mcdns.io/mcdns"  # reportingController
ACTION = "Answer"  # what mcdns did: changed the DNS answer
NOTE_LIMIT = 1024  # bytes: the API refuses a longer note
NAME_LIMIT = 128  # reportingInstance, at most
WARNING = frozenset({"FailedOver"})  # the other reasons are Normal
PATCH_TYPE = "application/strategic-merge-patch+json"  # as client-go's EventSinkImpl.Patch
RETRIED = frozenset({"connect", "timeout", "disconnect", "http_429"})  # and http_5xx
LOG_EVERY = 30.0  # seconds between two log lines about failed writes
IMPORT_VERSION = "v1alpha1"  # ServiceImport version when the watcher has not found one

Key = tuple[str, str, str, str]  # namespace, kind, name, reason


class SwitchLike(Protocol):
    """What the recorder reads of ``mcdns.answers.switch.Switch`` (kube does not import
    the answers layer)."""

    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def note(self) -> str: ...
    @property
    def time(self) -> float: ...


@dataclass(slots=True)
class Series:
    """One (object, reason) series: its Event and what the API has of it."""

    event: Obj  # the Event as first created (metadata.name is fixed: the PATCH target)
    count: int  # occurrences seen
    last: float  # wall time of the last occurrence
    sent: int = 0  # the count the API has; 0: not created yet
    due: float = 0.0  # monotonic time before which it is not written again
    tries: int = 0  # failed attempts of the pending write


def micro_time(t: float) -> str:
    """Wall time ``t`` as a MicroTime: RFC 3339 in UTC with microseconds."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def truncate(text: str, limit: int = NOTE_LIMIT) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes (ending in "..." when cut)."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[:limit - 3].decode("utf-8", "ignore") + "..."


def reporting_instance() -> str:
    """This pod's name (env POD_NAME, from the downward API), else the host name."""
    return (os.environ.get("POD_NAME") or socket.gethostname())[:NAME_LIMIT]


def events_path(namespace: str, name: str = "") -> str:
    path = f"/apis/events.k8s.io/v1/namespaces/{namespace}/events"
    return f"{path}/{name}" if name else path


class EventRecorder:
    """Switches in (``record``), Events out (``start``/``run``, then ``stop``)."""

    def __init__(self, client_config: Any, settings: EventSettings | None = None,
                 instance: str | None = None,
                 versions: Callable[[Resource], str | None] | None = None) -> None:
        """``versions`` tells the ServiceImport version the watchers use (the
        ``regarding`` apiVersion); ``instance`` defaults to ``reporting_instance()``."""
        self.settings = settings or EventSettings()
        self.stats = EventStats()
        self.instance = (instance or reporting_instance())[:NAME_LIMIT]
        self.series: dict[Key, Series] = {}
        self._conf = client_config
        self._versions = versions
        self._queue: deque[SwitchLike] = deque()
        self._wake = asyncio.Event()
        self._dirty: set[Key] = set()  # series whose count the API does not have yet
        self._tokens = float(self.settings.burst)
        self._refilled = time.monotonic()
        self._last_ns = 0
        self._swept = time.monotonic()
        self._closing = False
        self._logged = -LOG_EVERY
        self._quiet = 0  # log lines left out since the last one
        self._api: Any = None
        self._task: asyncio.Task[None] | None = None
        self._uids: dict[tuple[str, str, str], tuple[str, float]] = {}  # object -> uid

    # ---- the compile path -------------------------------------------------------------

    def record(self, switch: SwitchLike) -> None:
        """Queue ``switch`` to be sent (a plain function: no I/O, no waiting)."""
        if len(self._queue) >= self.settings.queue_size:
            self.stats.dropped += 1
            return
        self._queue.append(switch)
        self._wake.set()

    # ---- the sender ---------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start sending in a task of the running loop; returns it."""
        self._task = asyncio.create_task(self.run(), name="events")
        return self._task

    async def stop(self, timeout: float = 1.0) -> None:
        """Send what is pending (each series once more, unpaced) for at most ``timeout``
        seconds, then end the task."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), timeout)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def run(self) -> None:
        """Send until cancelled, or, once ``stop`` was called, until nothing is left."""
        async with ApiClient(self._conf) as api:
            self._api = api
            while True:
                try:
                    self._take()
                    key, wait = self._next()
                    if key is None:
                        if self._closing:
                            return
                        self._wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), wait)
                        continue
                    await self._write(key)
                except Exception:  # a bug here must not end Event recording for good
                    log.exception("Event recorder error; going on in a second")
                    await asyncio.sleep(1.0)

    def _take(self) -> None:
        """Fold the queued switches into their series; forget the finished ones."""
        finish = self.settings.finish
        while self._queue:
            sw = self._queue.popleft()
            key = (sw.namespace, sw.kind, sw.name, sw.reason)
            s = self.series.get(key)
            if s is not None and sw.time - s.last <= finish:
                s.count += 1
                s.last = max(s.last, sw.time)
            else:  # the first occurrence, or the old series is over: a new Event
                self.series[key] = Series(self._event(sw), 1, sw.time)
            self._dirty.add(key)
        now = time.monotonic()
        if now - self._swept >= min(finish, 60.0):
            self._swept = now
            over = time.time() - finish
            for key in [k for k, s in self.series.items()
                        if s.last < over and k not in self._dirty]:
                del self.series[key]

    def _next(self) -> tuple[Key | None, float]:
        """The series to write now, else None and how long to wait for one."""
        now = time.monotonic()
        wait = 60.0
        # Fair order: Events not yet created first (a new failover is never stuck behind
        # flapping series' count updates), then the series due the longest.
        order = sorted(self._dirty, key=lambda k: (self.series[k].sent != 0,
                                                   self.series[k].due))
        for key in order:
            s = self.series[key]
            if self._closing:  # one last unpaced write each, but no retries
                if s.tries == 0:
                    return key, 0.0
                continue
            if s.due > now:
                wait = min(wait, s.due - now)
                continue
            empty = self._token_wait(now)
            if empty > 0:
                return None, empty
            return key, 0.0
        return None, wait

    def _token_wait(self, now: float) -> float:
        """Seconds until the bucket holds a write (0: now)."""
        st = self.settings
        self._tokens = min(float(st.burst), self._tokens + (now - self._refilled) * st.rate)
        self._refilled = now
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / st.rate

    async def _write(self, key: Key) -> None:
        """Create or PATCH one series' Event with its current count."""
        s = self.series[key]
        st = self.settings
        self._tokens -= 1
        count, last = s.count, s.last
        try:
            if s.sent:
                try:
                    await send_json(self._api, "PATCH", events_path(key[0], _name(s)),
                                    {"series": _series(count, last)}, st.timeout,
                                    content_type=PATCH_TYPE)
                    self.stats.updated += 1
                except NotServed:  # the Event expired or was deleted: create it again
                    s.sent = 0
            if not s.sent:
                body = dict(s.event)
                uid = await self._uid(key)
                if uid:  # kubectl describe finds an object's Events by its uid
                    body["regarding"] = {**body["regarding"], "uid": uid}
                if count >= 2:
                    body["series"] = _series(count, last)
                try:
                    await send_json(self._api, "POST", events_path(key[0]), body, st.timeout)
                except KubeError as e:
                    if e.reason != "http_409":
                        raise
                    # AlreadyExists: an earlier try was created but its answer was lost
                self.stats.created += 1
        except Exception as e:  # nothing here may end the sender
            self._failed(key, s, e)
            return
        s.tries = 0
        s.sent = count
        s.due = time.monotonic() + st.min_interval
        if s.count <= s.sent:
            self._dirty.discard(key)

    async def _uid(self, key: Key) -> str:
        """The regarding object's uid (read once per finish period), "" when unknown."""
        ns, kind, name = key[0], key[1], key[2]
        got = self._uids.get((ns, kind, name))
        now = time.monotonic()
        if got is not None and now - got[1] < self.settings.finish:
            return got[0]
        if kind == "Service":
            path = f"/api/v1/namespaces/{ns}/services/{name}"
        else:
            version = (self._versions(SERVICEIMPORTS) if self._versions else None)
            path = (f"/apis/{SERVICEIMPORTS.group}/{version or IMPORT_VERSION}/namespaces/"
                    f"{ns}/serviceimports/{name}")
        try:
            obj = await send_json(self._api, "GET", path, None, self.settings.timeout)
            uid = str((obj.get("metadata") or {}).get("uid") or "")
        except NotServed:  # gone already: remembered, the Event goes out without it
            uid = ""
        except Exception as e:  # the Event goes out without it; asked again next time
            log.debug("no uid for %s %s/%s: %s", kind, ns, name, e)
            return ""
        if len(self._uids) >= 4096:
            self._uids.clear()
        self._uids[(ns, kind, name)] = (uid, now)
        return uid

    def _failed(self, key: Key, s: Series, e: Exception) -> None:
        self.stats.errors += 1
        st = self.settings
        reason = e.reason if isinstance(e, KubeError) else type(e).__name__
        s.tries += 1
        retry = reason in RETRIED or reason.startswith("http_5")
        what = f"Event {key[3]} on {key[1]} {key[0]}/{key[2]}"
        if retry and s.tries < st.max_tries and not self._closing:
            s.due = time.monotonic() + random.uniform(0.75, 1.25) * st.retry_delay
            self._warn("cannot write %s (try %d, retrying): %s", what, s.tries, e)
            return
        self._warn("cannot write %s, giving it up: %s", what, e)
        self._dirty.discard(key)
        if s.sent:  # the Event exists: later occurrences PATCH it again
            s.tries = 0
            s.sent = s.count
        else:  # never created: the next occurrence starts a new one
            del self.series[key]

    def _warn(self, msg: str, *args: object) -> None:
        """Log a failed write, at most one line per LOG_EVERY seconds."""
        now = time.monotonic()
        if now - self._logged < LOG_EVERY:
            self._quiet += 1
            return
        if self._quiet:
            msg += f" ({self._quiet} more failures not logged)"
        self._logged, self._quiet = now, 0
        log.warning(msg, *args)

    def _event(self, sw: SwitchLike) -> Obj:
        """The Event of ``sw``'s first occurrence (event_recorder.go ``makeEvent``)."""
        t_ns = max(int(sw.time * 1e9), self._last_ns + 1)  # unique per recorder
        self._last_ns = t_ns
        if sw.kind == "Service":
            api_version = "v1"
        else:
            version = self._versions(SERVICEIMPORTS) if self._versions else None
            api_version = f"{SERVICEIMPORTS.group}/{version or IMPORT_VERSION}"
        return {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            # client-go's name: <regarding name>.<time in ns, hex>
            "metadata": {"name": f"{sw.name[:236].rstrip('-.')}.{t_ns:x}",
                         "namespace": sw.namespace},
            "eventTime": micro_time(sw.time),
            "reportingController": CONTROLLER,
            "reportingInstance": self.instance,
            "action": ACTION,
            "reason": sw.reason,
            "regarding": {"kind": sw.kind, "apiVersion": api_version,
                          "namespace": sw.namespace, "name": sw.name},
            "note": truncate(sw.note),
            "type": "Warning" if sw.reason in WARNING else "Normal",
        }


def _name(s: Series) -> str:
    name: str = s.event["metadata"]["name"]
    return name


def _series(count: int, last: float) -> Obj:
    return {"count": count, "lastObservedTime": micro_time(last)}
