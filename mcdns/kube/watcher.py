"""One resource (in one namespace, or all) kept in the store by list + watch.

The three layers of kopf, as three methods:

- ``forever``: run the next layer again after any failure, with capped exponential
  backoff and jitter; progress resets the backoff.
- ``list_and_watch``: list (paginated) and reconcile the store with the result, then
  watch from the listed resourceVersion; a stream that ends or breaks is reopened from
  the last resourceVersion seen (bookmarks included); 410 Gone lists again.
- ``_watch_once``: one HTTP stream, bounded by a server timeout and an inactivity timeout.

``store.last_contact`` is the last successful contact with the API server, not the last
change: every list page and discovery answer, every watch stream opened, every watch
event (the bookmarks asked for with ``allowWatchBookmarks`` included), and a stream the
server ends cleanly at its timeout. So a quiet cluster keeps it fresh, and only an
unreachable or failing API server lets it grow.

An object that cannot be reduced is logged and skipped; an earlier good version of it
stays in the store (the API server validated everything but mcdns's own annotations and
limits, so dropping it would turn a typo in an annotation into an outage).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from mcdns.kube.http import Gone, KubeError, NotServed, Obj, get_json, watch_lines
from mcdns.kube.resources import Resource
from mcdns.kube.settings import KubeStats, WatchSettings
from mcdns.objects.model import Key, Slim
from mcdns.objects.reduce import ReduceError, reduce
from mcdns.state.store import Store

log = logging.getLogger("mcdns.kube")


class Watcher:
    """Keeps one resource's objects in the store. ``await forever()`` until cancelled."""

    def __init__(self, res: Resource, namespace: str | None, store: Store,
                 settings: WatchSettings, stats: KubeStats,
                 schedule_commit: Callable[[], None],
                 only_names: Iterable[str] = ()) -> None:
        self.res = res
        self.namespace = namespace
        self.name = res.source_name(namespace)
        self.store = store
        self.settings = settings
        self.stats = stats
        self.schedule_commit = schedule_commit
        self.only_names = frozenset(only_names)  # cluster-scoped filter (namespaces)
        self.api: Any = None  # the ApiClient, set by the source before forever()
        self.version: str | None = None if res.optional else res.versions[0]
        self.rv: str | None = None  # where the next watch resumes; None: list first
        self._progress = False

    # ---- layer 1: forever -----------------------------------------------------------

    async def forever(self) -> None:
        attempt = 0
        while True:
            try:
                await self.list_and_watch()
            except KubeError as e:
                reason, message = e.reason, str(e)
            except Exception as e:  # a bug must not end the watch for good
                log.exception("watch %(resource)s: unexpected error", {"resource": self.name})
                reason, message = "internal", repr(e)
            attempt = 0 if self._progress else attempt
            self._progress = False
            self.stats.restarts[(self.name, reason)] += 1
            delay = self.settings.backoff(attempt)
            attempt += 1
            log.warning("watch %(resource)s: %(error)s; retrying in %(delay).2fs",
                        {"resource": self.name, "error": message, "delay": delay})
            await asyncio.sleep(delay)

    # ---- layer 2: list, then watch; 410 lists again ----------------------------------

    async def list_and_watch(self) -> None:
        while True:
            discovered = self.version is None
            if discovered:
                self.version = await self._discover()
                if self.version is None:
                    self._absent()
                    await asyncio.sleep(self.settings.discovery_interval)
                    continue
            try:
                if self.rv is None:
                    self.rv = await self._list()
                await self._watch_once(self.rv)
            except Gone as e:
                if self.rv is None:
                    raise  # a list's continue token expired: back off, then list again
                log.info("watch %(resource)s: %(error)s; listing again",
                         {"resource": self.name, "error": str(e)})
                self.stats.restarts[(self.name, "gone")] += 1
                self.rv = None
            except NotServed:
                if not self.res.optional:
                    raise
                self.version = self.rv = None
                if not discovered:
                    log.info("watch %(resource)s: no longer served; checking discovery",
                             {"resource": self.name})
                    continue
                # discovery has just listed it, yet it answers 404 (a CRD being deleted,
                # a stale discovery cache): absent until the next check, not a tight loop
                log.warning("watch %(resource)s: listed by discovery but not served (404); "
                            "checking again in %(delay).0fs", {
                                "resource": self.name,
                                "delay": self.settings.discovery_interval})
                self._absent()
                await asyncio.sleep(self.settings.discovery_interval)
            except KubeError as e:
                if e.reason != "timeout" or self.rv is None:
                    raise
                self.stats.restarts[(self.name, "timeout")] += 1  # silent stream: reopen

    async def _discover(self) -> str | None:
        """The most preferred version of an optional resource the server serves, or None."""
        s = self.settings
        try:
            group = await get_json(self.api, self.res.group_path(), [], s.list_timeout)
        except NotServed:
            return None
        self._contact()
        served = {v.get("version") for v in group.get("versions") or ()}
        for version in self.res.versions:
            if version not in served:
                continue
            try:
                rl = await get_json(self.api, f"{self.res.group_path()}/{version}", [],
                                    s.list_timeout)
            except NotServed:
                continue
            if any(r.get("name") == self.res.name for r in rl.get("resources") or ()):
                return version
        return None

    def _absent(self) -> None:
        """The CRD is not installed: no objects of this kind, and that is a complete list."""
        self.rv = None
        self._reconcile({}, set())
        self._synced()

    async def _list(self) -> str:
        """List every page, reconcile the store with the result; the list's version."""
        assert self.version is not None
        path = self.res.path(self.version, self.namespace)
        objs: dict[Key, Slim] = {}
        bad: set[Key] = set()
        cont: str | None = None
        while True:
            query = [("limit", str(self.settings.page_size))]
            if cont:
                query.append(("continue", cont))
            page = await get_json(self.api, path, query, self.settings.list_timeout)
            self._contact()
            for item in page.get("items") or ():
                self._reduce_into(item, objs, bad)
            meta = page.get("metadata") or {}
            cont = meta.get("continue") or None
            if not cont:
                break
        rv = meta.get("resourceVersion")
        if not isinstance(rv, str) or not rv:
            raise KubeError("bad_list", f"list {path}: no metadata.resourceVersion")
        self._reconcile(objs, bad)
        self._synced()
        self._progress = True
        self.stats.lists[self.name] += 1
        log.info("watch %(resource)s: listed %(objects)d objects at resourceVersion "
                 "%(resource_version)s", {"resource": self.name, "objects": len(objs),
                                          "resource_version": rv})
        return rv

    # ---- layer 3: one stream --------------------------------------------------------

    async def _watch_once(self, rv: str) -> None:
        assert self.version is not None
        s = self.settings
        query = [("watch", "1"), ("resourceVersion", rv), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", str(s.watch_timeout()))]
        path = self.res.path(self.version, self.namespace)
        opened = time.monotonic()
        seen = 0
        try:
            async for events in watch_lines(self.api, path, query, s.connect_timeout,
                                            s.inactivity):
                now = self._contact()
                for ev in events:
                    self._apply(ev, now)
                    # progress is an event applied, not a connect (the empty first
                    # batch) nor an ERROR (raised above): those do not reset the backoff
                    self._progress = True
                if events:
                    seen += len(events)
                    self.schedule_commit()
            self._contact()  # the server ended the stream (its timeout): it answered
        finally:
            self.schedule_commit()  # whatever was applied before a failure goes out too
        if not seen and time.monotonic() - opened < 1.0:
            # a stream that ends at once with nothing in it: do not spin, back off
            raise KubeError("empty_stream", "stream ended at once")

    def _apply(self, ev: Obj, now: float) -> None:
        etype = ev.get("type")
        obj = ev.get("object")
        if not isinstance(obj, dict):
            raise KubeError("bad_event", "event without object")
        if etype == "ERROR":
            code = obj.get("code")
            message = f"{obj.get('reason')}: {obj.get('message')}"  # logged as "watch <name>: ..."
            if code == 410:
                raise Gone(message)
            raise KubeError(f"error_{code}", message)
        meta = obj.get("metadata") or {}
        rv = meta.get("resourceVersion")
        if etype in ("ADDED", "MODIFIED"):
            self._upsert(obj, now)
        elif etype == "DELETED":
            key = (meta.get("namespace") or "", meta.get("name") or "")
            self.store.delete(self.res.kind, key, now)
        elif etype != "BOOKMARK":
            log.warning("watch %(resource)s: unknown event type %(type)r",
                        {"resource": self.name, "type": etype})
        if isinstance(rv, str) and rv:
            self.rv = rv
        self.stats.events[(self.name, str(etype))] += 1
        self.stats.last_event[self.name] = now

    # ---- store side -----------------------------------------------------------------

    def _wanted(self, obj: Obj) -> bool:
        if not self.only_names:
            return True
        return (obj.get("metadata") or {}).get("name") in self.only_names

    def _slim(self, obj: Obj) -> Slim | None:
        try:
            return reduce(obj, self.res.kind)
        except ReduceError as e:
            self.stats.reduce_errors[self.name] += 1
            log.warning("watch %(resource)s: skipped: %(error)s",
                        {"resource": self.name, "error": str(e)})
            return None

    def _upsert(self, obj: Obj, now: float) -> None:
        if not self._wanted(obj):
            return
        slim = self._slim(obj)
        if slim is not None:
            self.store.upsert(slim, now)

    def _reduce_into(self, obj: Obj, objs: dict[Key, Slim], bad: set[Key]) -> None:
        if not self._wanted(obj):
            return
        slim = self._slim(obj)
        if slim is not None:
            objs[slim.key] = slim
        else:
            meta = obj.get("metadata") or {}
            bad.add((str(meta.get("namespace") or ""), str(meta.get("name") or "")))

    def _reconcile(self, objs: dict[Key, Slim], keep: set[Key]) -> None:
        """Make this watcher's share of the store equal to ``objs`` (a complete list).

        Objects absent from the list (deleted while the watch was down) are removed,
        except ``keep``: present but unreadable, whose last good version stays.
        """
        for key in self._existing() - objs.keys() - keep:
            self.store.delete(self.res.kind, key)
        for obj in objs.values():
            self.store.upsert(obj)
        self.schedule_commit()

    def _existing(self) -> set[Key]:
        keys = self.store.keys(self.res.kind)
        if self.namespace is None:
            return set(keys)
        return {k for k in keys if k[0] == self.namespace}

    def _synced(self) -> None:
        if not self.store.synced_sources.get(self.name):
            self.store.mark_synced(self.name)
            self.schedule_commit()
            log.info("watch %(resource)s: synced", {"resource": self.name})

    def _contact(self) -> float:
        """Note a successful answer from the API server (``store.last_contact``)."""
        now = time.time()
        self.store.last_contact = now
        return now
