"""A fake Kubernetes API server for tests and benchmarks, speaking the real wire protocol.

mcdns's watchers run the real kubernetes_asyncio client; this server gives it what a real
API server gives: lists with ``metadata.resourceVersion`` and ``limit``/``continue``
paging, watches streaming newline-delimited JSON events over chunked encoding from a
resourceVersion (ADDED/MODIFIED/DELETED/BOOKMARK, in-stream ERROR with a 410 Status),
410 for a compacted resourceVersion, 404 for an absent CRD group, and API discovery.
Events (``events.k8s.io/v1``) can also be written: POST creates one (validated as the
real API validates an Event), PATCH merges into it (merge and strategic-merge patches,
treated alike as JSON merge patches), GET reads one or lists them; every request is
kept in ``calls`` (method, path, body) for the tests.

Tests drive faults through plain methods: ``apply``/``remove`` objects, ``compact``
history, ``cut_watches`` mid-stream, ``fail`` with 500s, ``bookmark``, ``expire_watches``
(in-stream 410), ``stop``/``start`` on the same port, ``broken`` (discovery lists a
resource that answers 404). Everything runs in the caller's event loop.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Obj = dict[str, Any]


@dataclass(frozen=True)
class Res:
    """One served resource."""

    group: str  # "" for the core group
    versions: tuple[str, ...]
    plural: str
    kind: str
    namespaced: bool


RESOURCES = (
    Res("", ("v1",), "services", "Service", True),
    Res("", ("v1",), "namespaces", "Namespace", False),
    Res("discovery.k8s.io", ("v1",), "endpointslices", "EndpointSlice", True),
    Res("multicluster.x-k8s.io", ("v1alpha1", "v1beta1"), "serviceimports", "ServiceImport",
        True),
    Res("about.k8s.io", ("v1alpha1", "v1beta1"), "clusterproperties", "ClusterProperty", False),
    Res("events.k8s.io", ("v1",), "events", "Event", True),
)
BY_KIND = {r.kind: r for r in RESOURCES}
BY_PLURAL = {r.plural: r for r in RESOURCES}
CRD_GROUPS = ("multicluster.x-k8s.io", "about.k8s.io")


@dataclass(frozen=True)
class Call:
    """One request the server received."""

    method: str
    path: str
    body: Any  # the decoded JSON body (None without one)
    content_type: str


@dataclass
class Event:
    rv: int
    plural: str
    type: str
    obj: Obj


@dataclass(eq=False)
class Watch:
    """One open watch stream: its filter and the queue the server pushes to."""

    plural: str
    namespace: str | None
    version: str
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)


def status(code: int, reason: str, message: str) -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class FakeKubeAPI:
    """The API server. ``await start()``, use ``url``, ``await stop()``."""

    def __init__(self, crds: Iterable[str] = CRD_GROUPS,
                 import_versions: tuple[str, ...] = ("v1alpha1", "v1beta1")) -> None:
        self.rv = 1
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {r.plural: {} for r in RESOURCES}
        self.history: list[Event] = []
        self.compacted = 0  # watches from a resourceVersion below this get 410
        self.served: dict[str, tuple[str, ...]] = {}
        for g in crds:
            self.enable_group(g, import_versions if g == "multicluster.x-k8s.io" else None)
        self.end_watches_at_once = False  # a broken proxy: every watch ends empty
        # plurals discovery lists but whose collections answer 404 (a CRD being deleted)
        self.broken: set[str] = set()
        self.gone_in_stream = True  # too-old watch: 200 + ERROR event (else HTTP 410)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.calls: list[Call] = []  # every request, with its method and body
        self.failing: int | None = None  # HTTP status every request gets while set
        self.fail_remaining: int | None = None
        self.token: str | None = None  # when set, requests need "Bearer <token>"
        self.watches: set[Watch] = set()
        self._snapshots: dict[int, list[Obj]] = {}
        self._snap_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int | None = None) -> None:
        app = web.Application()
        for method in ("GET", "POST", "PATCH"):
            app.router.add_route(method, "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port if port is None else port,
                           reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening and drop every open connection (the port stays ours)."""
        self.cut_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def kubeconfig(self, token: str | None = None) -> str:
        """A kubeconfig (YAML text) pointing at this server."""
        user = {"token": token} if token else {}
        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": user}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        })

    # ---- test controls --------------------------------------------------------------

    def apply(self, obj: Obj) -> Obj:
        """Create or update an object (ADDED or MODIFIED); returns the stored copy."""
        res = BY_KIND[obj["kind"]]
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            meta.setdefault("namespace", "default")
        key = (meta["namespace"] if res.namespaced else "", meta["name"])
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        table = self.objects[res.plural]
        old = table.get(key)
        meta.setdefault("uid", (old or {}).get("metadata", {}).get("uid") or f"uid-{self.rv}")
        etype = "MODIFIED" if key in table else "ADDED"
        table[key] = obj
        self._emit(Event(self.rv, res.plural, etype, obj))
        return obj

    def remove(self, kind: str, namespace: str, name: str) -> bool:
        """Delete an object (DELETED event); False when absent."""
        res = BY_KIND[kind]
        old = self.objects[res.plural].pop((namespace if res.namespaced else "", name), None)
        if old is None:
            return False
        self.rv += 1
        old = copy.deepcopy(old)
        old["metadata"]["resourceVersion"] = str(self.rv)
        self._emit(Event(self.rv, res.plural, "DELETED", old))
        return True

    def compact(self) -> None:
        """Forget history: watches and continue tokens from before now get 410."""
        self.history.clear()
        self._snapshots.clear()
        self.rv += 1  # etcd compaction moves the revision on
        self.compacted = self.rv

    def cut_watches(self) -> None:
        """Break every open watch stream mid-stream (no terminating chunk)."""
        for w in list(self.watches):
            w.queue.put_nowait(("cut", None))

    def expire_watches(self) -> None:
        """Send an in-stream ERROR 410 to every open watch, then end it."""
        for w in list(self.watches):
            w.queue.put_nowait(("gone", None))

    def bookmark(self) -> int:
        """Send a BOOKMARK at a new resourceVersion to every open watch; returns it."""
        self.rv += 1
        for w in list(self.watches):
            w.queue.put_nowait(("bookmark", self.rv))
        return self.rv

    def fail(self, code: int = 500, times: int | None = None) -> None:
        """Answer every request with ``code`` (``times`` requests, or until ``heal``)."""
        self.failing = code
        self.fail_remaining = times

    def heal(self) -> None:
        self.failing = None
        self.fail_remaining = None

    def enable_group(self, group: str, versions: tuple[str, ...] | None = None) -> None:
        """Serve a CRD group (the CRD was installed)."""
        res = next(r for r in RESOURCES if r.group == group)
        self.served[group] = versions or res.versions

    def disable_group(self, group: str) -> None:
        self.served.pop(group, None)

    def seen(self, param: str, plural: str | None = None) -> list[dict[str, str]]:
        """Queries of recorded requests that carried ``param`` (for ``plural``)."""
        return [q for p, q in self.requests
                if param in q and (plural is None or p.rsplit("/", 1)[-1] == plural)]

    # ---- internals ------------------------------------------------------------------

    def _emit(self, ev: Event) -> None:
        self.history.append(ev)
        for w in list(self.watches):
            if w.plural == ev.plural and _in_ns(ev.obj, w.namespace):
                w.queue.put_nowait(("event", ev))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        q = dict(request.query)
        self.requests.append((request.path, q))
        body: Any = None
        if request.can_read_body:
            try:
                body = json.loads(await request.read())
            except ValueError:
                body = "<not JSON>"
        self.calls.append(Call(request.method, request.path, body, request.content_type))
        if self.failing is not None:
            code = self.failing
            if self.fail_remaining is not None:
                self.fail_remaining -= 1
                if self.fail_remaining <= 0:
                    self.heal()
            return _json(status(code, "InternalError", "injected failure"), code)
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return _json(status(401, "Unauthorized", "Unauthorized"), 401)
        parts = [p for p in request.path.split("/") if p]
        found = self._route(parts)
        if isinstance(found, web.StreamResponse):
            return found
        res, version, ns, name = found
        if request.method == "POST" and name is None and ns is not None:
            return self._create(res, version, ns, body)
        if request.method == "PATCH" and name is not None:
            return self._patch(res, version, ns, name, body, request.content_type)
        if request.method != "GET":
            return _json(status(405, "MethodNotAllowed", "method not allowed"), 405)
        if name is not None:
            obj = self.objects[res.plural].get((ns or "", name))
            if obj is None:
                return _json(status(404, "NotFound", f"{res.plural} {name!r} not found"), 404)
            return _json(_as_version(obj, res, version))
        if q.get("watch") in ("1", "true"):
            return await self._watch(request, res, version, ns, q)
        return self._list(res, version, ns, q)

    def _route(self, parts: list[str]
               ) -> web.StreamResponse | tuple[Res, str, str | None, str | None]:
        notfound = _json(status(404, "NotFound", "the server could not find the requested "
                                "resource"), 404)
        if parts[:1] == ["api"]:
            if len(parts) == 1:
                return _json({"kind": "APIVersions", "versions": ["v1"]})
            group, rest = "", parts[1:]
        elif parts[:1] == ["apis"]:
            if len(parts) == 1:
                return _json(self._group_list())
            group, rest = parts[1], parts[2:]
            if group in CRD_GROUPS and group not in self.served:
                return notfound
            if not rest:
                found = self._group(group)
                return _json(found) if found else notfound
        else:
            return notfound
        version = rest[0]
        if version not in self._versions(group):
            return notfound
        rest = rest[1:]
        if not rest:
            return _json(self._resource_list(group, version))
        ns = None
        if len(rest) in (3, 4) and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        name = rest.pop() if len(rest) == 2 else None  # one object
        res = BY_PLURAL.get(rest[0]) if len(rest) == 1 else None
        if (res is None or res.group != group or (ns is not None and not res.namespaced)
                or res.plural in self.broken):
            return notfound
        return res, version, ns, name

    def _create(self, res: Res, version: str, ns: str, body: Any) -> web.Response:
        """POST: a new object (201), 409 when its name is taken, 422 when invalid."""
        if not isinstance(body, dict) or body.get("kind") != res.kind:
            return _json(status(400, "BadRequest", f"not a {res.kind}"), 400)
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if meta.setdefault("namespace", ns) != ns:
            return _json(status(400, "BadRequest", "the namespace of the object does not "
                                "match the namespace on the request"), 400)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{next(self._snap_ids):05x}"
        problem = _invalid(obj, res)
        if problem:
            return _json(status(422, "Invalid", problem), 422)
        if (ns, meta["name"]) in self.objects[res.plural]:
            return _json(status(409, "AlreadyExists", f"{res.plural} {meta['name']!r} "
                                "already exists"), 409)
        meta["uid"] = f"uid-{self.rv + 1}"
        return _json(_as_version(self._store(res, obj), res, version), 201)

    def _patch(self, res: Res, version: str, ns: str | None, name: str, body: Any,
               content_type: str) -> web.Response:
        """PATCH: a JSON merge patch (also for strategic-merge, the same for Events)."""
        if content_type not in ("application/merge-patch+json",
                                "application/strategic-merge-patch+json"):
            return _json(status(415, "UnsupportedMediaType", content_type), 415)
        old = self.objects[res.plural].get((ns or "", name))
        if old is None:
            return _json(status(404, "NotFound", f"{res.plural} {name!r} not found"), 404)
        new = merge_patch(old, body)
        problem = _invalid(new, res, old)
        if problem:
            return _json(status(422, "Invalid", problem), 422)
        return _json(_as_version(self._store(res, new), res, version))

    def _store(self, res: Res, obj: Obj) -> Obj:
        meta = obj["metadata"]
        key = (meta["namespace"] if res.namespaced else "", meta["name"])
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        table = self.objects[res.plural]
        etype = "MODIFIED" if key in table else "ADDED"
        table[key] = obj
        self._emit(Event(self.rv, res.plural, etype, obj))
        return obj

    def events(self, namespace: str | None = None) -> list[Obj]:
        """The stored Events (of ``namespace``), oldest name first."""
        return [o for (ns, _), o in sorted(self.objects["events"].items())
                if namespace is None or ns == namespace]

    def _versions(self, group: str) -> tuple[str, ...]:
        if group == "":
            return ("v1",)
        if group in self.served:
            return self.served[group]
        return next((r.versions for r in RESOURCES if r.group == group), ())

    def _group(self, group: str) -> Obj | None:
        versions = self._versions(group)
        if not versions:
            return None
        gv = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gv,
                "preferredVersion": gv[-1]}

    def _group_list(self) -> Obj:
        groups = sorted({r.group for r in RESOURCES if r.group} - set(CRD_GROUPS))
        groups += [g for g in CRD_GROUPS if g in self.served]
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [self._group(g) for g in groups]}

    def _resource_list(self, group: str, version: str) -> Obj:
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": [{"name": r.plural, "kind": r.kind, "namespaced": r.namespaced,
                               "verbs": ["get", "list", "watch"]}
                              for r in RESOURCES if r.group == group]}

    def _list(self, res: Res, version: str, ns: str | None, q: dict[str, str]) -> web.Response:
        limit = int(q.get("limit") or 0)
        token = q.get("continue")
        if token:
            snap_id, _, offset_s = token.partition(":")
            snap = self._snapshots.get(int(snap_id))
            if snap is None:
                return _json(status(410, "Expired", "The provided continue parameter is too "
                                    "old to display a consistent list result."), 410)
            offset = int(offset_s)
            list_rv = snap[0]["rv"]
            items = snap[1:]
        else:
            offset = 0
            list_rv = self.rv
            items = [o for k, o in sorted(self.objects[res.plural].items())
                     if _in_ns(o, ns)]
        meta: Obj = {"resourceVersion": str(list_rv)}
        if limit and offset + limit < len(items):
            if not token:
                sid = next(self._snap_ids)
                self._snapshots[sid] = [{"rv": list_rv}, *items]
                token = f"{sid}:0"
            sid_s = token.partition(":")[0]
            meta["continue"] = f"{sid_s}:{offset + limit}"
            meta["remainingItemCount"] = len(items) - offset - limit
            page = items[offset:offset + limit]
        else:
            page = items[offset:]
        out = [_as_version(o, res, version, in_list=True) for o in page]
        return _json({"kind": f"{res.kind}List", "apiVersion": _gv(res, version),
                      "metadata": meta, "items": out})

    async def _watch(self, request: web.Request, res: Res, version: str, ns: str | None,
                     q: dict[str, str]) -> web.StreamResponse:
        raw_rv = q.get("resourceVersion") or "0"
        since = int(raw_rv)
        bookmarks = q.get("allowWatchBookmarks") in ("1", "true")
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
        gone = since != 0 and since < self.compacted
        if gone and not self.gone_in_stream:
            return _json(status(410, "Expired", f"too old resource version: {since} "
                                f"({self.compacted})"), 410)
        w = Watch(res.plural, ns, version)
        if since == 0:
            replay = [Event(int(o["metadata"]["resourceVersion"]), res.plural, "ADDED", o)
                      for _, o in sorted(self.objects[res.plural].items()) if _in_ns(o, ns)]
        else:
            replay = [e for e in self.history
                      if e.rv > since and e.plural == res.plural and _in_ns(e.obj, ns)]
        if not gone:
            self.watches.add(w)  # registered before any await: no event can slip by
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
            if gone:
                await _line(resp, {"type": "ERROR", "object": status(
                    410, "Expired", f"too old resource version: {since} ({self.compacted})")})
                await resp.write_eof()
                return resp
            for ev in replay:
                await _line(resp, _event(ev, res, version))
            if self.end_watches_at_once:
                await resp.write_eof()
                return resp
            await self._pump(request, resp, w, res, version, bookmarks, timeout)
        finally:
            self.watches.discard(w)
        return resp

    async def _pump(self, request: web.Request, resp: web.StreamResponse, w: Watch, res: Res,
                    version: str, bookmarks: bool, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                what, arg = await asyncio.wait_for(w.queue.get(), left)
            except TimeoutError:
                await resp.write_eof()
                return
            if what == "cut":
                if request.transport is not None:
                    request.transport.abort()
                return
            if what == "gone":
                await _line(resp, {"type": "ERROR", "object": status(
                    410, "Expired", "too old resource version")})
                await resp.write_eof()
                return
            if what == "bookmark":
                if bookmarks:
                    await _line(resp, {"type": "BOOKMARK", "object": {
                        "kind": res.kind, "apiVersion": _gv(res, version),
                        "metadata": {"resourceVersion": str(arg)}}})
                continue
            await _line(resp, _event(arg, res, version))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch of ``target`` by ``patch`` (a new object)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# events.k8s.io/v1 validation, as the API server's (pkg/apis/core/validation/events.go)
EVENT_FIXED = ("regarding", "related", "reason", "note", "type", "action",
               "reportingController", "reportingInstance", "eventTime")


def _invalid(obj: Obj, res: Res, old: Obj | None = None) -> str:
    """Why the API would refuse ``obj`` (an update of ``old``); "" when it would not."""
    if res.plural != "events":
        return ""
    meta = obj.get("metadata", {})
    problems = []
    if not meta.get("name"):
        problems.append("metadata.name: Required value")
    for f in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
        if not obj.get(f):
            problems.append(f"{f}: Required value")
    for f in ("reportingInstance", "action", "reason"):
        if len(obj.get(f) or "") > 128:
            problems.append(f"{f}: Too long: may not be more than 128 bytes")
    if len((obj.get("note") or "").encode()) > 1024:
        problems.append("note: Too long: may not be more than 1024 bytes")
    if obj.get("type") not in ("Normal", "Warning"):
        problems.append(f"type: Invalid value: {obj.get('type')!r}")
    regarding = obj.get("regarding") or {}
    if regarding.get("namespace") and regarding["namespace"] != meta.get("namespace"):
        problems.append("regarding.namespace: does not match event.namespace")
    series = obj.get("series")
    if series is not None:
        if not isinstance(series.get("count"), int) or series["count"] < 2:
            problems.append("series.count: should be at least 2")
        if not series.get("lastObservedTime"):
            problems.append("series.lastObservedTime: Required value")
    if old is not None:  # an update changes the series only
        problems += [f"{f}: field is immutable" for f in EVENT_FIXED if obj.get(f) != old.get(f)]
    return "; ".join(problems)


def _gv(res: Res, version: str) -> str:
    return f"{res.group}/{version}" if res.group else version


def _as_version(obj: Obj, res: Res, version: str, in_list: bool = False) -> Obj:
    out = dict(obj)
    if in_list and res.group in ("", "discovery.k8s.io"):
        # built-in lists omit kind/apiVersion on items, as the real server does
        out.pop("kind", None)
        out.pop("apiVersion", None)
    else:
        out["apiVersion"] = _gv(res, version)
        out["kind"] = res.kind
    return out


def _event(ev: Event, res: Res, version: str) -> Obj:
    return {"type": ev.type, "object": _as_version(ev.obj, res, version)}


def _in_ns(obj: Obj, ns: str | None) -> bool:
    return ns is None or obj.get("metadata", {}).get("namespace") == ns


def _json(body: Obj, code: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=code,
                        content_type="application/json")


async def _line(resp: web.StreamResponse, event: Obj) -> None:
    await resp.write(json.dumps(event).encode() + b"\n")


# ---- object builders (as kubectl prints them) ----------------------------------------

def service(name: str, ip: str | None = "10.96.0.10", ns: str = "default",
            annotations: dict[str, str] | None = None) -> Obj:
    spec: Obj = {"type": "ClusterIP", "ports": [{"name": "http", "port": 80,
                                                 "protocol": "TCP"}]}
    spec["clusterIP"] = ip or "None"
    spec["clusterIPs"] = [ip or "None"]
    meta: Obj = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def endpointslice(name: str, service_name: str, ips: Iterable[str], ready: bool = True,
                  ns: str = "default") -> Obj:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips]}


def serviceimport(name: str, ips: Iterable[str], ns: str = "default") -> Obj:
    return {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"type": "ClusterSetIP", "ips": list(ips),
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def clusterproperty(name: str, value: str) -> Obj:
    return {"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
            "metadata": {"name": name}, "spec": {"value": value}}
