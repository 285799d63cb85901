"""Health and the fallback decision: which answer a service name gets, and why.

This is SPEC §4 (local and remote readiness) and §5 (the policy table) and nothing else,
so the rules can be read, tested and explained (the CH TXT explain record) in one place.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from mcdns.kube.reduce import DERIVED_PREFIX
from mcdns.model import EndpointSlice, Service, ServiceImport
from mcdns.state.store import Store

LOCAL = "local"
IMPORT = "import"
NONE = "none"


@dataclass(frozen=True, slots=True)
class Remote:
    """What is known of an import's endpoints in other clusters."""

    slices: tuple[EndpointSlice, ...]
    ready_by_cluster: tuple[tuple[str, int], ...]

    @property
    def known(self) -> bool:
        return bool(self.slices)

    @property
    def ready(self) -> int:
        return sum(n for _, n in self.ready_by_cluster)

    @property
    def available(self) -> bool:
        """Unknown counts as available (SPEC §4); known needs a ready endpoint."""
        return not self.known or self.ready > 0


NO_REMOTE = Remote((), ())  # the one "no import" value every decision shares


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one (namespace, name) in the cluster zone."""

    namespace: str
    name: str
    policy: str
    min_ready: int
    choice: str  # local | import | none
    reason: str
    degraded: bool  # the chosen answer is known to have no ready backend
    service: Service | None
    imp: ServiceImport | None
    derived: Service | None
    local_slices: tuple[EndpointSlice, ...] = field(default=())
    slices: tuple[EndpointSlice, ...] = field(default=())  # all of the Service's (names)
    local_ready: int = 0
    remote: Remote = NO_REMOTE


def ready_count(slices: tuple[EndpointSlice, ...] | list[EndpointSlice]) -> int:
    return sum(1 for s in slices for e in s.endpoints if e.ready)


def remote_of(store: Store, ns: str, name: str) -> Remote:
    """Remote endpoints of import ns/name: MCS slices plus Karmada's derived- slices."""
    slices = list(store.mcs_slices_of(ns, name))
    slices += [s for s in store.slices_of(ns, DERIVED_PREFIX + name) if s not in slices]
    by_cluster: dict[str, int] = {}
    for s in slices:
        cluster = s.cluster or "unknown"
        by_cluster[cluster] = by_cluster.get(cluster, 0) + ready_count((s,))
    return Remote(tuple(slices), tuple(sorted(by_cluster.items())))


def decide(store: Store, ns: str, name: str, default_policy: str,
           default_min_ready: int) -> Decision:
    """Apply the SPEC §5 table to the current store for ns/name."""
    svc = store.services.get((ns, name))
    imp = store.imports.get((ns, name))
    derived = store.services.get((ns, DERIVED_PREFIX + name)) if imp else None
    policy = (svc and svc.policy) or (imp and imp.policy) or default_policy
    min_ready = default_min_ready
    for src in (imp, svc):  # the Service's annotation wins
        if src is not None and src.min_ready is not None:
            min_ready = src.min_ready
    slices = tuple(store.slices_of(ns, name)) if svc else ()
    local_slices = slices if all(s.local for s in slices) else tuple(s for s in slices if s.local)
    local_ready = ready_count(local_slices)
    remote = remote_of(store, ns, name) if imp else NO_REMOTE
    base = dict(namespace=ns, name=name, policy=policy, min_ready=min_ready, service=svc,
                imp=imp, derived=derived, local_slices=local_slices, slices=slices,
                local_ready=local_ready, remote=remote)
    choice, reason, degraded = _table(policy, svc, imp, local_ready, min_ready, remote)
    # Reasons repeat across services ("local has 2 ready (min_ready 1): healthy"): one
    # copy of each text, not one per service.
    return Decision(choice=choice, reason=sys.intern(reason), degraded=degraded, **base)  # type: ignore[arg-type]


def _table(policy: str, svc: Service | None, imp: ServiceImport | None, local_ready: int,
           min_ready: int, remote: Remote) -> tuple[str, str, bool]:
    healthy = svc is not None and local_ready >= min_ready
    if svc is not None and svc.type == "ExternalName":
        return LOCAL, "ExternalName service: CNAME, never a fallback", False
    if policy == "local-only" or imp is None:
        if svc is None:
            return NONE, "no local Service" + ("" if imp is None else "; policy local-only"), False
        why = f"local has {local_ready} ready (min_ready {min_ready})"
        if imp is None:
            return LOCAL, why + "; no ServiceImport", not healthy
        return LOCAL, why + "; policy local-only ignores the import", not healthy
    imp_ok = remote.available
    imp_state = ("import endpoints unknown (treated as available)" if not remote.known
                 else f"import has {remote.ready} ready remote endpoints")
    if svc is None:
        return IMPORT, f"no local Service; {imp_state}", not imp_ok
    local_state = f"local has {local_ready} ready (min_ready {min_ready})"
    if policy == "import-first":
        if imp_ok:
            return IMPORT, f"policy import-first; {imp_state}", False
        if healthy:
            return LOCAL, f"import unavailable ({imp_state}); {local_state}", False
        return LOCAL, f"both unavailable: {local_state}; {imp_state}", True
    if healthy:
        return LOCAL, f"{local_state}: healthy", False
    if imp_ok:
        return IMPORT, f"{local_state}: unhealthy; {imp_state}", False
    return LOCAL, f"both unavailable: {local_state}; {imp_state}", True
