"""The state file source: ``kubectl get ... -o yaml`` output instead of an API server.

Makes mcdns runnable with no cluster (the demo, offline replays, tests). The file is
YAML or JSON, multi-document or ``kind: List``. It is polled for changes; a new version
replaces the store's contents kind by kind (so deletions are honoured) in one commit.
At start-up any problem is fatal and named; on reload a file that does not parse keeps
the last good state, and single bad objects are skipped with a log line each.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from mcdns.config import yaml_problem
from mcdns.objects.model import Kind, Slim
from mcdns.objects.reduce import ReduceError, kind_of, reduce
from mcdns.state.store import Store

log = logging.getLogger("mcdns.state")

MAX_STATE_BYTES = 256 << 20
CHILD_PARSE_BYTES = 1 << 20  # larger files are parsed in a child process
POLL_SECONDS = 0.2
SOURCE = "state"
KEPT_KINDS = (Kind.SERVICE, Kind.SLICE, Kind.IMPORT, Kind.NAMESPACE, Kind.CLUSTER_PROPERTY)
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StateError(ValueError):
    """The state file cannot be used; the message says where and why."""


def read_objects(path: str | Path) -> list[dict[str, Any]]:
    """All API objects in the file, lists flattened; raises StateError naming the problem."""
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
    try:
        if text.lstrip().startswith(("{", "[")):
            docs: list[Any] = [json.loads(text)]
        else:
            docs = list(yaml.load_all(text, Loader=_Loader))
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise StateError(f"{p}: not valid YAML or JSON: {yaml_problem(e)}") from None
    out: list[dict[str, Any]] = []
    for i, doc in enumerate(docs):
        out.extend(_flatten(doc, f"{p}: document {i + 1}"))
    return out


def _flatten(doc: Any, where: str) -> Iterator[dict[str, Any]]:
    if doc is None:
        return
    if isinstance(doc, list):
        items = doc
    elif isinstance(doc, dict) and isinstance(doc.get("items"), list):
        items = doc["items"]
    elif isinstance(doc, dict):
        items = [doc]
    else:
        raise StateError(f"{where}: expected an object or a List, got {type(doc).__name__}")
    for j, item in enumerate(items):
        if not isinstance(item, dict):
            raise StateError(f"{where}: item {j + 1} is {type(item).__name__}, not an object")
        if isinstance(item.get("items"), list):
            yield from _flatten(item, where)
        else:
            yield item


def reduce_all(objs: list[dict[str, Any]], strict: bool,
               skipped: list[str] | None = None) -> dict[Kind, list[Slim]]:
    """Slim objects by kind; a bad object raises (strict) or is skipped: logged, or
    appended to ``skipped`` for the caller to log."""
    out: dict[Kind, list[Slim]] = {k: [] for k in KEPT_KINDS}
    for obj in objs:
        kind = kind_of(obj)
        if kind is None:
            continue
        try:
            out[kind].append(reduce(obj, kind))
        except ReduceError as e:
            if strict:
                raise StateError(str(e)) from None
            if skipped is None:
                log.warning("state file: skipping %s", e)
            else:
                skipped.append(str(e))
    return out


def parse(path: str | Path, strict: bool) -> dict[Kind, list[Slim]]:
    """The file's slim objects by kind. A large file is parsed in a short-lived child
    process: parsing YAML makes millions of short-lived objects, and the heap they
    fragment would otherwise stay in this process's RSS for good."""
    try:
        big = Path(path).stat().st_size > CHILD_PARSE_BYTES
    except OSError:
        big = False
    if not big:
        return reduce_all(read_objects(path), strict)
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        by_kind, skipped = pool.submit(_parse_in_child, str(path), strict).result()
    for problem in skipped:
        log.warning("state file: skipping %s", problem)
    return by_kind


def _parse_in_child(path: str, strict: bool) -> tuple[dict[Kind, list[Slim]], list[str]]:
    skipped: list[str] = []
    return reduce_all(read_objects(path), strict, skipped), skipped


def load_into(store: Store, path: str | Path, strict: bool) -> int:
    """Read the file and make the store hold exactly its objects; returns changes."""
    by_kind = parse(path, strict)
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
        log.info("state file loaded path=%s services=%d slices=%d imports=%d", self.path,
                 len(self.store.services), len(self.store.slices), len(self.store.imports))

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
            log.error("state file reload failed, keeping the last good state: %s", e)
            return False
        self.reloads += 1
        log.info("state file reloaded path=%s changed=%d generation=%d", self.path, changed,
                 self.store.generation)
        return True

