"""What each multi-cluster implementation writes, and what it means for DNS.

The one place that knows the objects of the mcs-api reference controller, Submariner
Lighthouse, Cilium's MCS-API support, Karmada (ServiceImport and MultiClusterService
flows) and GKE-style imports. Nothing above it tests a label or a managed-by value.
It works in two steps:

- **On arrival** (``slice_facts``, ``import_facts``, called by the reducer): which
  service a slice serves, which cluster it names as its source, and whether it holds this
  cluster's own endpoints, another cluster's, or a copy of this cluster's (a mirror).
- **At decision time** (``remote_of``): with this cluster's id, an import's per-cluster
  slices split into this cluster's and the others' (only the others are remote evidence),
  counted per pod, and the addresses a ClusterSetIP import answers with.

The shapes, read from each project's source (the fixtures under ``tests/data/interop``
cite the files line by line):

- mcs-api (kubernetes-sigs/mcs-api ``controllers/serviceimport.go``, ``service.go``,
  ``endpointslice.go``, ``common.go``): the import names its ``derived-<hash>`` Service
  in the annotation ``multicluster.kubernetes.io/derived-service`` and carries its
  ClusterIP in ``spec.ips``; MCS slices carry ``multicluster.kubernetes.io/service-name``,
  ``.../source-cluster`` and ``kubernetes.io/service-name: derived-<hash>``.
- Lighthouse (submariner-io/lighthouse ``pkg/agent/controller/service_endpoint_slices.go``,
  ``service_import.go``): ``spec.ips`` empty by default; one slice per exporting cluster
  (managed by ``lighthouse-agent.submariner.io``, no ``kubernetes.io/service-name``) whose
  one endpoint is that cluster's ClusterIP, ready when that cluster has ready pods; pod IPs
  for headless. This cluster's own slice is written in place, without the
  ``submariner-io/clusterID`` label that every copy synced from the broker carries
  (submariner-io/admiral ``pkg/syncer/resource_syncer.go``); a copy in a namespace other
  than its ``lighthouse.submariner.io/sourceNamespace`` is the broker's, not this
  namespace's.
- Cilium (cilium/cilium ``pkg/clustermesh/mcsapi/serviceimport_controller.go``,
  ``service_controller.go``, ``endpointslice_mirror_controller.go``,
  ``pkg/clustermesh/endpointslicesync/``): the import carries the derived Service's
  ClusterIP in ``spec.ips`` and a ``Ready`` condition; the local slices are mirrored into
  the derived Service (managed by ``endpointslice-local-mcsapi-controller.cilium.io``,
  source-cluster: this cluster); other clusters' slices are managed by
  ``endpointslice-mesh-controller.cilium.io`` (headless, or when synced on request).
- Karmada (karmada-io/karmada ``pkg/util/constants.go``, ``pkg/util/names/names.go``,
  ``pkg/controllers/mcs/``, ``pkg/controllers/multiclusterservice/``): the ServiceImport
  flow gives ``derived-<svc>`` (no ``spec.ips``) and slices ``imported-<cluster>-<slice>``
  managed by ``endpointslice-controller.karmada.io`` with no cluster label; the
  MultiClusterService flow dispatches ``<cluster>-<slice>`` into the consumer's own
  Service, managed by ``endpointslice-dispatch-controller.karmada.io`` and annotated
  ``endpointslice.karmada.io/provision-cluster``.
- GKE-style: ``spec.ips`` and nothing else: no endpoint information (unknown counts as
  available).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mcdns.objects.failover import tiers
from mcdns.objects.model import EndpointSlice, Origin, Service, ServiceImport

# Kubernetes and the MCS API (mcs-api pkg/apis/v1beta1/well_known_labels.go)
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MCS_SERVICE_LABEL = "multicluster.kubernetes.io/service-name"
MCS_CLUSTER_LABEL = "multicluster.kubernetes.io/source-cluster"
DERIVED_ANNOTATION = "multicluster.kubernetes.io/derived-service"  # mcs-api controllers/common.go
CLUSTER_ID_PROPERTY = "cluster.clusterset.k8s.io"  # ClusterProperty name (KEP-2149)
# Lighthouse (pkg/constants.go; admiral pkg/federate)
LIGHTHOUSE_AGENT = "lighthouse-agent.submariner.io"
LIGHTHOUSE_SOURCE_NAMESPACE = "lighthouse.submariner.io/sourceNamespace"
SUBMARINER_CLUSTER_ID = "submariner-io/clusterID"
# Cilium (pkg/clustermesh/mcsapi/endpointslice_mirror_controller.go, pkg/k8s/utils)
CILIUM_LOCAL_MIRROR = "endpointslice-local-mcsapi-controller.cilium.io"
# Karmada (pkg/util/constants.go, pkg/util/names/names.go)
KARMADA_PROVISION = "endpointslice.karmada.io/provision-cluster"
KARMADA_DISPATCH = "endpointslice-dispatch-controller.karmada.io"
KARMADA_IMPORT = "endpointslice-controller.karmada.io"
KARMADA_IMPORTED_PREFIX = "imported-"
DERIVED_PREFIX = "derived-"

SLICE_LABELS = (SERVICE_NAME_LABEL, MCS_SERVICE_LABEL, MCS_CLUSTER_LABEL)  # what a slice says
UNKNOWN_CLUSTER = "unknown"  # how a remote slice naming no cluster is counted


@dataclass(frozen=True, slots=True)
class SliceFacts:
    """What a slice's labels and annotations say, whoever wrote them."""

    service: str  # kubernetes.io/service-name ("" when absent or not this namespace's)
    mcs_service: str  # multicluster.kubernetes.io/service-name (likewise)
    cluster: str  # the source cluster it names ("" when none)
    origin: Origin


def slice_facts(name: str, namespace: str, labels: Mapping[str, Any],
                annotations: Mapping[str, Any]) -> SliceFacts:
    """Classify one EndpointSlice by its metadata (see the module docstring)."""
    service = str(labels.get(SERVICE_NAME_LABEL, "") or "")
    mcs_service = str(labels.get(MCS_SERVICE_LABEL, "") or "")
    managed_by = str(labels.get(MANAGED_BY) or annotations.get(MANAGED_BY) or "")
    provision = str(annotations.get(KARMADA_PROVISION) or labels.get(KARMADA_PROVISION) or "")
    cluster = str(labels.get(MCS_CLUSTER_LABEL, "") or "")
    origin = Origin.OWN
    if mcs_service or cluster:
        origin = Origin.IMPORTED
    if provision or managed_by in (KARMADA_DISPATCH, KARMADA_IMPORT):
        origin = Origin.IMPORTED
        cluster = provision or cluster or karmada_cluster(name, service)
    if managed_by == CILIUM_LOCAL_MIRROR:
        origin = Origin.MIRROR
    elif managed_by == LIGHTHOUSE_AGENT:
        source_ns = labels.get(LIGHTHOUSE_SOURCE_NAMESPACE)
        if source_ns and source_ns != namespace:  # the broker's copy: serves nothing here
            service = mcs_service = ""
        elif SUBMARINER_CLUSTER_ID not in labels:
            origin = Origin.MIRROR  # written here by this cluster's agent, not synced
    return SliceFacts(sys.intern(service), sys.intern(mcs_service), sys.intern(cluster),
                      origin)


def karmada_cluster(slice_name: str, service: str) -> str:
    """Cluster of a Karmada ``imported-<cluster>-<original slice>`` name. Cluster names
    may hold '-'; the original slice's name starts with its Service's (``serve-7x9kq``),
    which the derived Service's name gives: cut before it when it is there."""
    if not slice_name.startswith(KARMADA_IMPORTED_PREFIX):
        return ""
    rest = slice_name[len(KARMADA_IMPORTED_PREFIX):]
    original = service.removeprefix(DERIVED_PREFIX)
    cut = rest.find("-" + original + "-") if original else -1
    if cut > 0:
        return rest[:cut]
    return rest.split("-", 1)[0]


def import_facts(annotations: Mapping[str, Any], status: Mapping[str, Any]
                 ) -> tuple[str, bool]:
    """(derived Service name as annotated or "", False when a ``Ready`` condition says
    False) of a ServiceImport (mcs-api pkg/apis/v1beta1/serviceimport.go: the only
    condition type is Ready)."""
    derived = str(annotations.get(DERIVED_ANNOTATION, "") or "")
    ready = True
    conditions = status.get("conditions") or []
    if isinstance(conditions, list):
        for c in conditions:
            if isinstance(c, Mapping) and c.get("type") == "Ready":
                ready = str(c.get("status", "")).lower() != "false"
    return derived, ready


def is_own(s: EndpointSlice, cluster_id: str) -> bool:
    """True for this cluster's endpoints: its own controller's, a mirror of them, or an
    imported slice whose source cluster is this cluster's id."""
    return s.origin != Origin.IMPORTED or (bool(cluster_id) and s.cluster == cluster_id)


def ready_pods(slices: Iterable[EndpointSlice]) -> int:
    """Ready pods, not addresses: a dual-stack pod is an endpoint in an IPv4 slice and
    again in an IPv6 slice. Pods with a hostname count once by it; the others count per
    address family, the largest family's count. The endpointslice controller puts every
    pod in the slices of each family it has, so in a dual-stack cluster (or one migrating
    to it) the larger family holds every pod; only IPv4-only pods beside IPv6-only pods in
    one Service would be undercounted. Pods are not told apart by targetRef: its names,
    one string per pod, cost 1.5 MB at 10,000 services (over the memory budget), for
    that case alone."""
    named: set[str] = set()
    anonymous: dict[str, int] = {}
    for s in slices:
        for e in s.endpoints:
            if e.ready:
                if e.hostname:
                    named.add(e.hostname)
                else:
                    anonymous[s.address_type] = anonymous.get(s.address_type, 0) + 1
    return len(named) + max(anonymous.values(), default=0)


def ready_addresses(slices: Iterable[EndpointSlice]) -> tuple[str, ...]:
    """Every ready IP address the slices carry, once each, in order."""
    out: dict[str, None] = {}
    for s in slices:
        if s.address_type != "FQDN":
            for e in s.endpoints:
                if e.ready:
                    out.update(dict.fromkeys(e.addresses))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Remote:
    """What is known of an import's endpoints, split by cluster."""

    slices: tuple[EndpointSlice, ...]  # other clusters' slices: the remote evidence
    ready_by_cluster: tuple[tuple[str, int], ...]  # ready pods per other cluster
    own: tuple[EndpointSlice, ...] = ()  # this cluster's slices of the import
    ips: tuple[str, ...] = ()  # a ClusterSetIP import's answer in the cluster zone
    clusterset_ips: tuple[str, ...] = ()  # ... and in the clusterset zone
    via: str = ""  # where the ips come from: spec.ips, the derived Service, the slices
    headless: bool = False
    condition_ready: bool = True  # False when the import's Ready condition is False
    cluster_id: str = ""  # this cluster's id (it names this cluster's own slices)
    # Cluster preference: the first tier with ready endpoints answers (): every cluster.
    tier: tuple[str, ...] = ()  # the cluster zone's (other clusters only)
    tier_slices: tuple[EndpointSlice, ...] | None = None  # its slices (None: all)
    clusterset_tier: tuple[str, ...] = ()  # the clusterset zone's (this cluster too)
    clusterset_tier_slices: tuple[EndpointSlice, ...] | None = None

    @property
    def known(self) -> bool:
        return bool(self.slices)

    @property
    def ready(self) -> int:
        return sum(n for _, n in self.ready_by_cluster)

    @property
    def answer_slices(self) -> tuple[EndpointSlice, ...]:
        """The other clusters' slices the cluster zone answers from (the chosen tier)."""
        return self.slices if self.tier_slices is None else self.tier_slices

    @property
    def clusterset_answer_slices(self) -> tuple[EndpointSlice, ...]:
        """Every cluster's slices the clusterset zone answers from (the chosen tier)."""
        if self.clusterset_tier_slices is None:
            return (*self.slices, *self.own)
        return self.clusterset_tier_slices

    @property
    def available(self) -> bool:
        """A fallback target: not marked not-Ready, not known to have no ready endpoint
        (unknown counts as available), and with something to answer."""
        if not self.condition_ready or (self.known and self.ready == 0):
            return False
        return self.ready > 0 if self.headless else bool(self.ips)


NO_REMOTE = Remote((), ())  # the one "no import" value every decision shares


def remote_of(imp: ServiceImport, slices: tuple[EndpointSlice, ...],
              derived_slices: tuple[EndpointSlice, ...], derived: Service | None,
              cluster_id: str, preference: tuple[str, ...] = ()) -> Remote:
    """The per-cluster view of import ``imp``: its MCS ``slices`` and its derived
    Service's slices (one list, each slice once), split into this cluster's and the
    others', and the tier of clusters ``preference`` picks in each zone."""
    extra = derived_slices
    if extra:
        seen = {s.key for s in slices}
        slices = (*slices, *(s for s in extra if s.key not in seen))
    own = tuple(s for s in slices if is_own(s, cluster_id))
    others = tuple(s for s in slices if not is_own(s, cluster_id)) if own else slices
    by_cluster: dict[str, list[EndpointSlice]] = {}
    for s in others:
        by_cluster.setdefault(s.cluster or UNKNOWN_CLUSTER, []).append(s)
    ready = tuple(sorted((c, ready_pods(group)) for c, group in by_cluster.items()))
    headless = imp.type == "Headless"
    # Tiers only where the answer is per cluster: a headless import's pods, or the
    # clusters' own addresses (one virtual IP has no cluster to choose).
    per_cluster = headless or not (imp.ips or (derived is not None and derived.type ==
                                               "ClusterIP" and derived.cluster_ips))
    pref = preference if per_cluster else ()
    tier, tier_slices = _tier(pref, others, "")
    cs_tier, cs_slices = _tier(pref, (*others, *own), cluster_id)
    ips: tuple[str, ...] = ()
    clusterset_ips: tuple[str, ...] = ()
    via = ""
    if not headless:
        if imp.ips:
            ips = clusterset_ips = imp.ips
            via = "spec.ips"
        elif derived is not None and derived.type == "ClusterIP" and derived.cluster_ips:
            ips = clusterset_ips = derived.cluster_ips
            via = sys.intern("derived Service " + derived.name)
        else:  # Lighthouse: each cluster's slice carries that cluster's service IP
            ips = ready_addresses(others if tier_slices is None else tier_slices)
            clusterset_ips = ready_addresses(slices if cs_slices is None else cs_slices)
            via = "ready cluster slices"
    return Remote(others, ready, own, ips, clusterset_ips, via, headless, imp.ready,
                  cluster_id, tier, tier_slices, cs_tier, cs_slices)


def _tier(preference: tuple[str, ...], slices: tuple[EndpointSlice, ...], own_id: str
          ) -> tuple[tuple[str, ...], tuple[EndpointSlice, ...] | None]:
    """(clusters, their slices) of the first preference tier with a ready pod; ((),
    None) without a preference or when no tier has one (every cluster answers)."""
    if not preference:
        return (), None
    groups: dict[str, list[EndpointSlice]] = {}
    for s in slices:
        cluster = s.cluster or (own_id if s.origin != Origin.IMPORTED else "") or UNKNOWN_CLUSTER
        groups.setdefault(cluster.lower(), []).append(s)
    for clusters in tiers(preference, set(groups)):
        chosen = tuple(s for c in sorted(clusters) for s in groups[c])
        if ready_pods(chosen):
            return tuple(sorted(clusters)), chosen
    return (), None
