"""The store: the one place that holds the cluster's slim objects, and its only writer API.

Sources (the state file, the API watchers) call ``upsert``/``delete``/``replace`` and then
``commit``; the store records which services the change touched and, on commit, hands
that set to its subscribers (the answer compiler), which recompile just those names.
Everything runs on the event loop thread: there is one writer, and readers never see a
half-applied batch because they only read between commits.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mcdns.objects.model import (
    ClusterProperty,
    EndpointSlice,
    Key,
    Kind,
    Namespace,
    Service,
    ServiceImport,
    Slim,
)
from mcdns.objects.shapes import CLUSTER_ID_PROPERTY, DERIVED_PREFIX


@dataclass(slots=True)
class Changes:
    """What one commit touched: services by key, and whether namespaces changed."""

    services: set[Key] = field(default_factory=set)
    namespaces: bool = False
    cluster_id: bool = False
    event_time: float | None = None  # wall time of the oldest event in the batch

    def __bool__(self) -> bool:
        return bool(self.services) or self.namespaces or self.cluster_id


Subscriber = Callable[[Changes], None]


class Store:
    """Slim objects by kind and key, with the indexes the answer code needs."""

    def __init__(self, sources: Iterable[str] = ("state",)) -> None:
        self.services: dict[Key, Service] = {}
        self.slices: dict[Key, EndpointSlice] = {}
        self.imports: dict[Key, ServiceImport] = {}
        self.namespaces: set[str] = set()
        self.explicit_namespaces: set[str] = set()
        self._ns_refs: dict[str, int] = defaultdict(int)  # objects per namespace
        self.cluster_properties: dict[str, str] = {}
        # (namespace, service-name label) -> its slices, sorted by key (a tuple: a third
        # of a set's memory, most services have one slice, and a decision keeps the
        # very tuple instead of a copy); the same for the MCS label.
        self.slices_by_service: dict[Key, tuple[EndpointSlice, ...]] = {}
        self.slices_by_mcs: dict[Key, tuple[EndpointSlice, ...]] = {}
        # (namespace, annotated derived Service name) -> the import naming it, so that a
        # change to a derived Service or its slices recompiles the import's names. Only
        # imports that name theirs (mcs-api, Cilium: a hash) are here; Karmada's
        # derived-<name> is found from the name itself.
        self.derived_of: dict[Key, str] = {}
        self.generation = 0
        self.last_change = 0.0  # wall time of the last committed change
        # wall time a source last heard from its backend: any successful API answer (a
        # list page, a watch opened, any event or bookmark, a watch ended at the server's
        # timeout), or a load of the state file. Not the last change: that is last_change.
        self.last_contact = 0.0
        self.synced_sources: dict[str, bool] = dict.fromkeys(sources, False)
        self.synced = not self.synced_sources
        """True once every source has completed its first full list (read per query)."""
        self._pending = Changes()
        self._subscribers: list[Subscriber] = []

    # ---- readers -------------------------------------------------------------------

    def slices_of(self, namespace: str, service: str) -> tuple[EndpointSlice, ...]:
        return self.slices_by_service.get((namespace, service), ())

    def mcs_slices_of(self, namespace: str, service: str) -> tuple[EndpointSlice, ...]:
        return self.slices_by_mcs.get((namespace, service), ())

    def keys(self, kind: Kind) -> Iterable[Key]:
        """The keys of every stored object of ``kind``."""
        match kind:
            case Kind.SERVICE:
                return self.services.keys()
            case Kind.SLICE:
                return self.slices.keys()
            case Kind.IMPORT:
                return self.imports.keys()
            case Kind.NAMESPACE:
                return [("", n) for n in self.explicit_namespaces]
            case Kind.CLUSTER_PROPERTY:
                return [("", n) for n in self.cluster_properties]
        return ()  # pragma: no cover

    def all_service_keys(self) -> set[Key]:
        keys = set(self.services) | set(self.imports)
        keys |= {k for k, v in self.slices_by_service.items() if v}
        keys |= {k for k, v in self.slices_by_mcs.items() if v}
        return keys

    # ---- writers -------------------------------------------------------------------

    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    def upsert(self, obj: Slim, event_time: float | None = None) -> bool:
        """Insert or update one object; False when nothing DNS-visible changed."""
        match obj:
            case Service():
                return self._put(self.services, obj, event_time)
            case EndpointSlice():
                return self._put_slice(obj, event_time)
            case ServiceImport():
                old = self.imports.get(obj.key)
                if old is not None and old.derived and old.derived != obj.derived:
                    self.derived_of.pop((old.namespace, old.derived), None)
                if obj.derived:
                    self.derived_of[(obj.namespace, obj.derived)] = obj.name
                return self._put(self.imports, obj, event_time)
            case Namespace():
                if obj.name in self.explicit_namespaces:
                    return False
                self.explicit_namespaces.add(obj.name)
                self._recount_namespaces(event_time)
                return True
            case ClusterProperty():
                if self.cluster_properties.get(obj.name) == obj.value:
                    return False
                self.cluster_properties[obj.name] = obj.value
                if obj.name == CLUSTER_ID_PROPERTY:
                    self._note(event_time).cluster_id = True
                return True
        raise TypeError(f"cannot store {type(obj).__name__}")  # pragma: no cover

    def delete(self, kind: Kind, key: Key, event_time: float | None = None) -> bool:
        """Remove one object; False when it was not there."""
        match kind:
            case Kind.SERVICE:
                return self._drop(self.services, key, event_time)
            case Kind.IMPORT:
                imp = self.imports.get(key)
                if imp is not None and imp.derived:
                    self.derived_of.pop((imp.namespace, imp.derived), None)
                return self._drop(self.imports, key, event_time)
            case Kind.SLICE:
                old = self.slices.pop(key, None)
                if old is None:
                    return False
                self._unindex(old)
                self._touch_slice(old, event_time)
                self._ref(old.namespace, -1, event_time)
                return True
            case Kind.NAMESPACE:
                if key[1] not in self.explicit_namespaces:
                    return False
                self.explicit_namespaces.discard(key[1])
                self._recount_namespaces(event_time)
                return True
            case Kind.CLUSTER_PROPERTY:
                if self.cluster_properties.pop(key[1], None) is None:
                    return False
                if key[1] == CLUSTER_ID_PROPERTY:
                    self._note(event_time).cluster_id = True
                return True
        return False  # pragma: no cover

    def replace(self, kind: Kind, objs: Iterable[Slim], event_time: float | None = None) -> int:
        """Make ``kind`` hold exactly ``objs`` (a full list); returns how many changed."""
        new = {o.key: o for o in objs}
        changed = 0
        for key in list(self.keys(kind)):
            if key not in new:
                changed += self.delete(kind, key, event_time)
        for obj in new.values():
            changed += self.upsert(obj, event_time)
        return changed

    def mark_synced(self, source: str, synced: bool = True) -> None:
        if self.synced_sources.get(source) != synced:
            self.synced_sources[source] = synced
            self.synced = all(self.synced_sources.values())
            self._note(None).namespaces = True  # readiness shows in the answers' SERVFAILs

    def commit(self) -> Changes:
        """Hand what changed since the last commit to the subscribers."""
        changes, self._pending = self._pending, Changes()
        if changes:
            self.generation += 1
            self.last_change = time.time()
            for fn in self._subscribers:
                fn(changes)
        return changes

    # ---- internals -----------------------------------------------------------------

    def _note(self, event_time: float | None) -> Changes:
        p = self._pending
        if event_time is not None and (p.event_time is None or event_time < p.event_time):
            p.event_time = event_time
        return p

    def _touch(self, key: Key, event_time: float | None) -> None:
        """Mark service ``key`` changed. The tuple itself goes into the pending set (and
        so becomes the compiler's decision key): one tuple per service, not one per use."""
        pending = self._note(event_time)
        pending.services.add(key)
        ns, name = key
        importer = self.derived_of.get(key)
        if importer is not None:
            pending.services.add((ns, importer))
        elif name.startswith(DERIVED_PREFIX):
            pending.services.add((ns, name[len(DERIVED_PREFIX):]))

    def _touch_slice(self, s: EndpointSlice, event_time: float | None) -> None:
        if s.service:
            self._touch((s.namespace, s.service), event_time)
        if s.mcs_service:
            self._touch((s.namespace, s.mcs_service), event_time)
        if not s.service and not s.mcs_service:
            self._note(event_time)

    def _put(self, table: dict[Key, Service] | dict[Key, ServiceImport],
             obj: Service | ServiceImport, event_time: float | None) -> bool:
        key = obj.key
        old = table.get(key)
        if old == obj:
            return False
        table[key] = obj  # type: ignore[assignment]
        self._touch(key, event_time)
        if old is None:
            self._ref(obj.namespace, 1, event_time)
        return True

    def _drop(self, table: dict[Key, Service] | dict[Key, ServiceImport], key: Key,
              event_time: float | None) -> bool:
        if table.pop(key, None) is None:
            return False
        self._touch(key, event_time)
        self._ref(key[0], -1, event_time)
        return True

    def _put_slice(self, s: EndpointSlice, event_time: float | None) -> bool:
        key = s.key
        old = self.slices.get(key)
        if old == s:
            return False
        if old is not None:
            self._unindex(old)
            self._touch_slice(old, event_time)
        self.slices[key] = s
        if s.service:
            _index_add(self.slices_by_service, (s.namespace, s.service), s)
        if s.mcs_service:
            _index_add(self.slices_by_mcs, (s.namespace, s.mcs_service), s)
        self._touch_slice(s, event_time)
        if old is None:
            self._ref(s.namespace, 1, event_time)
        return True

    def _unindex(self, s: EndpointSlice) -> None:
        for index, label in ((self.slices_by_service, s.service),
                             (self.slices_by_mcs, s.mcs_service)):
            if label:
                held = index.get((s.namespace, label))
                if held is not None and any(x is s for x in held):
                    rest = tuple(x for x in held if x is not s)
                    if rest:
                        index[(s.namespace, label)] = rest
                    else:
                        del index[(s.namespace, label)]

    def _ref(self, ns: str, delta: int, event_time: float | None) -> None:
        before = self._ns_refs[ns]
        self._ns_refs[ns] = before + delta
        if self._ns_refs[ns] <= 0:
            del self._ns_refs[ns]
        if not self.explicit_namespaces and (before == 0 or before + delta <= 0):
            self._recount_namespaces(event_time)

    def _recount_namespaces(self, event_time: float | None) -> None:
        """Namespaces exist when listed, or (no Namespace objects at all) when used."""
        names = set(self.explicit_namespaces or self._ns_refs)
        if names != self.namespaces:
            self.namespaces = names
            self._note(event_time).namespaces = True


def _index_add(index: dict[Key, tuple[EndpointSlice, ...]], key: Key,
               item: EndpointSlice) -> None:
    held = index.get(key, ())
    if not any(x is item for x in held):
        index[key] = tuple(sorted((*held, item), key=lambda x: (x.namespace, x.name)))
