"""Health and the fallback decision: which answer a service name gets, and why.

The policy table and nothing else (what the objects of each multi-cluster implementation
mean is ``mcdns.objects.shapes``'s), so the rules can be read, tested and explained (the CH TXT
explain record) in one place.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from mcdns.objects.model import EndpointSlice, Service, ServiceImport
from mcdns.objects.shapes import NO_REMOTE, Remote, is_own, ready_pods, remote_of
from mcdns.state.store import Store

LOCAL = "local"
IMPORT = "import"
NONE = "none"
LOCAL_ONLY = "local-only"
LOCAL_FIRST = "local-first"
IMPORT_FIRST = "import-first"


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
    local_slices: tuple[EndpointSlice, ...] = field(default=())  # this cluster's
    slices: tuple[EndpointSlice, ...] = field(default=())  # all of the Service's (names)
    local_ready: int = 0  # ready pods in local_slices
    remote: Remote = NO_REMOTE
    failback_ready: int = 0  # ready local pods needed to fail back (>= min_ready)
    failback_delay: float = 0.0  # seconds the local side must stay healthy to fail back


def decide(store: Store, ns: str, name: str, default_policy: str,
           default_min_ready: int, cluster_id: str = "", preference: tuple[str, ...] = (),
           failback_ready: int | None = None, failback_delay: float = 0.0) -> Decision:
    """Apply the policy table to the current store for ns/name. The defaults after
    ``cluster_id`` (the config's) give way to the import's annotations, and those to the
    Service's, as for the policy and min_ready. Failing back is the compiler's
    (answers.failback): a decision says what the objects want now."""
    svc = store.services.get((ns, name))
    imp = store.imports.get((ns, name))
    derived = store.services.get((ns, imp.derived_name)) if imp else None
    policy = _policy(svc, imp, default_policy)
    min_ready = default_min_ready
    for src in (imp, svc):  # the Service's annotation wins
        if src is not None and src.min_ready is not None:
            min_ready = src.min_ready
    for src in (imp, svc):
        tuning = src.failover if src is not None else None
        if tuning is not None:
            preference = tuning.cluster_preference or preference
            failback_ready = (failback_ready if tuning.failback_ready is None
                              else tuning.failback_ready)
            failback_delay = (failback_delay if tuning.failback_delay is None
                              else tuning.failback_delay)
    slices = tuple(store.slices_of(ns, name)) if svc else ()
    local_slices = (slices if all(is_own(s, cluster_id) for s in slices)
                    else tuple(s for s in slices if is_own(s, cluster_id)))
    local_ready = ready_pods(local_slices)
    remote = (remote_of(imp, store.mcs_slices_of(ns, imp.name),
                        store.slices_of(ns, imp.derived_name), derived, cluster_id,
                        preference)
              if imp else NO_REMOTE)
    base = dict(namespace=ns, name=name, policy=policy, min_ready=min_ready, service=svc,
                imp=imp, derived=derived, local_slices=local_slices, slices=slices,
                local_ready=local_ready, remote=remote,
                failback_ready=max(min_ready, min_ready if failback_ready is None
                                   else failback_ready),
                failback_delay=failback_delay)
    # Every slice of the Service backs its ClusterIP (kube-proxy serves the endpoints that
    # Karmada dispatches into it too): slices with no ready endpoint at all make it
    # degraded. No slice at all is unknown, not degraded: the endpointslice controller
    # writes one (empty if need be) for every Service with a selector, so a Service
    # without any is selector-less (GKE's gke-mcs-* Services, a derived Service whose
    # endpoints another system programs).
    backed = not slices or local_ready > 0 or any(e.ready for s in slices for e in s.endpoints)
    choice, reason, degraded = _table(policy, svc, imp, local_ready, min_ready, remote,
                                      backed)
    # Reasons repeat across services ("local has 2 ready (min_ready 1): healthy"): one
    # copy of each text, not one per service.
    return Decision(choice=choice, reason=sys.intern(reason), degraded=degraded, **base)  # type: ignore[arg-type]


def _policy(svc: Service | None, imp: ServiceImport | None, default: str) -> str:
    """The Service's (its annotation, else local-only for internalTrafficPolicy: Local),
    then the import's annotation, then the configured default."""
    return (svc and svc.policy) or (imp and imp.policy) or default


def _import_state(remote: Remote) -> str:
    if not remote.condition_ready:
        return "import condition Ready=False"
    if remote.known:
        state = f"import has {remote.ready} ready remote pods"
    else:
        state = "import endpoints unknown (treated as available)"
    if not remote.headless and not remote.ips:
        state += "; no address to answer with"
    return state


def _table(policy: str, svc: Service | None, imp: ServiceImport | None, local_ready: int,
           min_ready: int, remote: Remote, backed: bool) -> tuple[str, str, bool]:
    healthy = svc is not None and local_ready >= min_ready
    if svc is not None and svc.type == "ExternalName":
        return LOCAL, "ExternalName service: CNAME, never a fallback", False
    if policy == LOCAL_ONLY or imp is None:
        if svc is None:
            return NONE, "no local Service" + ("" if imp is None else "; policy local-only"), False
        why = f"local has {local_ready} ready (min_ready {min_ready})"
        if not backed and local_ready == 0:
            why += "; no ready endpoint"
        elif local_ready == 0:
            why += "; other clusters' endpoints back it"
        if imp is None:
            return LOCAL, why + "; no ServiceImport", not backed
        return LOCAL, why + "; policy local-only ignores the import", not backed
    imp_ok = remote.available
    imp_state = _import_state(remote)
    if svc is None:
        return IMPORT, f"no local Service; {imp_state}", not imp_ok
    local_state = f"local has {local_ready} ready (min_ready {min_ready})"
    if policy == "import-first":
        if imp_ok:
            return IMPORT, f"policy import-first; {imp_state}", False
        if healthy:  # degraded all the same when min_ready 0 lets 0 ready through
            return LOCAL, f"import unavailable ({imp_state}); {local_state}", not backed
        return LOCAL, f"both unavailable: {local_state}; {imp_state}", not backed
    if healthy:
        return LOCAL, f"{local_state}: healthy", not backed
    if imp_ok:
        return IMPORT, f"{local_state}: unhealthy; {imp_state}", False
    return LOCAL, f"both unavailable: {local_state}; {imp_state}", not backed
