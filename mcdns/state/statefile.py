"""The state file source: ``kubectl get ... -o yaml`` output instead of an API server.

Makes mcdns runnable with no cluster (the demo, offline replays, tests). The file is
YAML or JSON, multi-document or ``kind: List``. Every object in it is checked against the
real schema of its kind (``mcdns.state.validate``): an unknown kind, an unknown field or a
value of the wrong type is named by file, object index and name. It is polled for
changes; a new version replaces the store's contents kind by kind (so deletions are
honoured) in one commit. At start-up any problem is fatal and named. On reload a file
that does not parse keeps the last good state; an object the schema refuses keeps its
last good version (a typo never takes an answer away) and an object the reducer refuses
(a bad IP, say) is skipped, each with a log line saying why, while the rest of the file
is applied: one bad object never holds the others back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import re
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mcdns.config import yaml_problem
from mcdns.objects.model import ClusterProperty, Key, Kind, Namespace, Slim
from mcdns.objects.reduce import ReduceError, kind_of, reduce
from mcdns.state import validate
from mcdns.state.store import Store

log = logging.getLogger("mcdns.state")

MAX_STATE_BYTES = 256 << 20
CHILD_PARSE_BYTES = 1 << 20  # larger files are parsed in a child process
POLL_SECONDS = 0.2
SOURCE = "state"
KEPT_KINDS = (Kind.SERVICE, Kind.SLICE, Kind.IMPORT, Kind.NAMESPACE, Kind.CLUSTER_PROPERTY)
VALUES_PER_BYTE = 2  # what YAML aliases may expand a file to: values per byte of text
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ALIAS = re.compile(r"(?:^|[\s\[{,])\*[^\s,\[\]{}]")  # may be an alias: "*name"


class StateError(ValueError):
    """The state file cannot be used; the message says where and why."""


class FileObjects(list[dict[str, Any]]):
    """The objects of one state file, in order, as ``read_objects`` returns them, with
    what ``check`` needs to find the file's problems: its name and its List wrappers.
    ``reduce_all(objs, strict=True)`` checks them first (that is ``check-config``)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.lists: list[tuple[str, dict[str, Any]]] = []  # (where, the List object)
        self.too_big = ""  # why YAML aliases make the file too big to check, or ""
        self.checked = False


def read_objects(path: str | Path) -> FileObjects:
    """All API objects in the file, lists flattened; raises StateError naming the problem
    when the file cannot be read or parsed (see ``check`` for the schema)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_STATE_BYTES:
            raise StateError(f"{p}: {size} bytes is over the limit of {MAX_STATE_BYTES}")
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise StateError(f"{p}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise StateError(f"{p}: not UTF-8 text") from None
    is_json = text.lstrip().startswith(("{", "["))
    try:
        if is_json:
            docs: list[Any] = [json.loads(text)]
        else:
            docs = list(yaml.load_all(text, Loader=_Loader))
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise StateError(f"{p}: not valid YAML or JSON: {yaml_problem(e)}") from None
    out = FileObjects(p)
    for i, doc in enumerate(docs):
        out.extend(_flatten(doc, f"{p}: document {i + 1}", out.lists))
    limit = VALUES_PER_BYTE * len(text) + 100_000
    aliases = not is_json and "*" in text and _ALIAS.search(text) is not None
    if aliases and validate.expanded_size(docs, limit) > limit:
        out.too_big = (f"{p}: YAML aliases expand its {len(text)} bytes to over {limit} "
                       "values: refused unchecked")
    return out


def _flatten(doc: Any, where: str, lists: list[tuple[str, dict[str, Any]]]
             ) -> Iterator[dict[str, Any]]:
    if doc is None:
        return
    if isinstance(doc, list):
        items = doc
    elif isinstance(doc, dict) and (isinstance(doc.get("items"), list)
                                    or doc.get("kind") == "List"):  # "itmes:" is checked
        items = doc["items"] if isinstance(doc.get("items"), list) else []
        lists.append((where, doc))
    elif isinstance(doc, dict):
        items = [doc]
    else:
        raise StateError(f"{where}: expected an object or a List, got {type(doc).__name__}")
    for j, item in enumerate(items):
        if not isinstance(item, dict):
            raise StateError(f"{where}: item {j + 1} is {type(item).__name__}, not an object")
        if isinstance(item.get("items"), list):
            yield from _flatten(item, where, lists)
        else:
            yield item


def check(objs: FileObjects, objects: bool = True) -> None:
    """Raise StateError for the file's first problem: aliases that expand it too far, a
    bad List wrapper, or (``objects``) an object its kind's schema refuses, named by index
    (from 1) and name, e.g. ``state.yaml: object 3 (Service default/web):
    spec.ports[0].port: 'http' is not of type 'integer'``, and how many more there are."""
    if objs.too_big:
        raise StateError(objs.too_big)
    for where, doc in objs.lists:
        found = validate.list_problem(doc)
        if found:
            raise StateError(f"{where}: List: {found}")
    if not objects:
        return
    bad = validate.problems(objs)
    first = next(bad, None)
    if first is not None:
        index, name, found = first
        more = sum(1 for _ in bad)
        tail = f" (and {more} more object{'s' if more > 1 else ''} refused)" if more else ""
        raise StateError(f"{objs.path}: object {index} ({name}): {found}{tail}")
    objs.checked = True


def reduce_all(objs: Iterable[dict[str, Any]], strict: bool,
               skipped: list[str] | None = None) -> dict[Kind, list[Slim]]:
    """Slim objects by kind; a bad object raises (strict) or is skipped: logged, or
    appended to ``skipped`` for the caller to log. Strictly, a file's objects (from
    ``read_objects``) are checked against the schema first, unless they have been."""
    if strict and isinstance(objs, FileObjects) and not objs.checked:
        check(objs)
    out: dict[Kind, list[Slim]] = {k: [] for k in KEPT_KINDS}
    for i, obj in enumerate(objs, 1):
        kind = kind_of(obj)
        if kind is None:
            continue
        try:
            out[kind].append(reduce(obj, kind))
        except ReduceError as e:
            if strict:
                where = f"{objs.path}: object {i}: " if isinstance(objs, FileObjects) else ""
                raise StateError(f"{where}{e}") from None
            if skipped is None:
                log.warning("state file: skipping %s", e)
            else:
                skipped.append(str(e))
    return out


@dataclass(frozen=True, slots=True)
class Refused:
    """An object the schema refused on reload: what it may replace, and why."""

    kinds: tuple[Kind, ...]  # its kind; every kept kind when its kind is unknown (a typo)
    key: Key
    why: str


def parse(path: str | Path, strict: bool) -> tuple[dict[Kind, list[Slim]], list[Refused]]:
    """The file's slim objects by kind, and (not strict) the objects the schema refused.
    A large file is parsed in a short-lived child process: parsing YAML makes millions of
    short-lived objects, and the heap they fragment would otherwise stay in this
    process's RSS for good."""
    try:
        big = Path(path).stat().st_size > CHILD_PARSE_BYTES
    except OSError:
        big = False
    if not big:
        objs, refused = _checked(path, strict)
        return reduce_all(objs, strict), refused
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        by_kind, skipped, refused = pool.submit(_parse_in_child, str(path), strict).result()
    for problem in skipped:
        log.warning("state file: skipping %s", problem)
    return by_kind, refused


def _parse_in_child(path: str, strict: bool
                    ) -> tuple[dict[Kind, list[Slim]], list[str], list[Refused]]:
    skipped: list[str] = []
    objs, refused = _checked(path, strict)
    return reduce_all(objs, strict, skipped), skipped, refused


def _checked(path: str | Path, strict: bool) -> tuple[list[dict[str, Any]], list[Refused]]:
    """The file's objects the schema accepts. Strictly any problem raises; on reload only
    a problem of the file's (aliases, a List) does, and refused objects are set aside."""
    objs = read_objects(path)
    check(objs, objects=strict)
    if strict:
        return objs, []
    bad = {i: f"{objs.path}: object {i} ({name}): {found}"
           for i, name, found in validate.problems(objs)}
    if not bad:
        return objs, []
    return ([o for i, o in enumerate(objs, 1) if i not in bad],
            [_refused(objs[i - 1], why) for i, why in bad.items()])


def _refused(obj: dict[str, Any], why: str) -> Refused:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    ns, name = meta.get("namespace") or "", meta.get("name")
    if not (isinstance(ns, str) and isinstance(name, str) and name):
        return Refused((), ("", ""), why)  # nameless: it can stand for no stored object
    kind = kind_of(obj)
    if kind is not None:
        return Refused((kind,), (ns, name), why)
    # a kind no schema knows may be a typo of any kept kind's name
    unknown = not validate.is_known_kind(obj.get("kind"))
    return Refused(KEPT_KINDS if unknown else (), (ns, name), why)


def keep_last_good(store: Store, by_kind: dict[Kind, list[Slim]],
                   refused: list[Refused]) -> None:
    """Let each refused object's last good version (the store's, of its kind and key,
    or of any kept kind for an unknown kind) stay, unless the file holds a new one; log
    what stays, or that the object is skipped, and why."""
    present = {kind: {o.key for o in objs} for kind, objs in by_kind.items()}
    for r in refused:
        kept = []
        for kind in r.kinds:
            old = _stored(store, kind, r.key)
            if old is not None and r.key not in present[kind]:
                by_kind[kind].append(old)
                present[kind].add(r.key)
                kept.append(f"{kind.value} {'/'.join(p for p in r.key if p)}")
        if kept:
            log.warning("state file: keeping the last good %s, refused: %s", ", ".join(kept),
                        r.why)
        else:
            log.warning("state file: skipping %s", r.why)


def _stored(store: Store, kind: Kind, key: Key) -> Slim | None:
    """The store's object of ``kind`` and ``key``, or None."""
    ns, name = key
    match kind:
        case Kind.SERVICE:
            return store.services.get(key)
        case Kind.SLICE:
            return store.slices.get(key)
        case Kind.IMPORT:
            return store.imports.get(key)
        case Kind.NAMESPACE if not ns:
            return Namespace(name) if name in store.explicit_namespaces else None
        case Kind.CLUSTER_PROPERTY if not ns:
            value = store.cluster_properties.get(name)
            return None if value is None else ClusterProperty(name, value)
    return None


def load_into(store: Store, path: str | Path, strict: bool) -> int:
    """Read the file and make the store hold exactly its objects (and the last good
    version of those the schema refused on reload); returns changes."""
    by_kind, refused = parse(path, strict)
    if refused:
        keep_last_good(store, by_kind, refused)
    now = time.time()
    changed = sum(store.replace(kind, objs, now) for kind, objs in by_kind.items())
    store.last_contact = now
    store.mark_synced(SOURCE)
    store.commit()
    return changed


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class StateFileSource:
    """Loads the state file once (strictly), then follows its changes."""

    def __init__(self, path: str | Path, store: Store, poll: float = POLL_SECONDS) -> None:
        self.path = Path(path)
        self.store = store
        self.poll = poll
        self.reloads = 0
        self.failures = 0
        self._sig = _signature(self.path)

    def load(self) -> None:
        """The first load; raises StateError so the caller can exit naming the problem."""
        self._sig = _signature(self.path)
        load_into(self.store, self.path, strict=True)
        log.info("state file loaded path=%(path)s services=%(services)d slices=%(slices)d "
                 "imports=%(imports)d", {"path": str(self.path), "services": len(
                     self.store.services), "slices": len(self.store.slices),
                     "imports": len(self.store.imports)})

    async def run(self) -> None:
        """Poll for changes forever; reload on change, keeping the last good state."""
        while True:
            await asyncio.sleep(self.poll)
            sig = _signature(self.path)
            if sig is None or sig == self._sig:
                continue
            self._sig = sig
            self.reload()

    def reload(self) -> bool:
        try:
            changed = load_into(self.store, self.path, strict=False)
        except StateError as e:
            self.failures += 1
            log.error("state file reload failed, keeping the last good state: %(error)s",
                      {"error": str(e)})
            return False
        self.reloads += 1
        log.info("state file reloaded path=%(path)s changed=%(changed)d "
                 "generation=%(generation)d", {"path": str(self.path), "changed": changed,
                                               "generation": self.store.generation})
        return True

