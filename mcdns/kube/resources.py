"""The API resources mcdns watches, where they live, and how to find the served version.

Built-in resources are always there. ServiceImport and ClusterProperty come from CRDs
that a cluster may not have (yet): discovery tells which version, if any, is served, and
an absent group is not an error, it just means no objects of that kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcdns.config import Config
from mcdns.objects.model import Kind


@dataclass(frozen=True, slots=True)
class Resource:
    """One watched resource type."""

    name: str
    """Name used for store sources, counters and logs (the plural)."""
    kind: Kind
    """Slim kind its objects reduce to."""
    group: str
    """API group ("" for the core group)."""
    versions: tuple[str, ...]
    """Versions to use, most preferred first."""
    namespaced: bool
    """Whether objects live in namespaces (and a namespace filter applies)."""
    optional: bool
    """A CRD: absent means no objects; discovery decides the version."""

    def path(self, version: str, namespace: str | None = None) -> str:
        """The collection path, e.g. /apis/discovery.k8s.io/v1/namespaces/ns/endpointslices."""
        root = f"/apis/{self.group}/{version}" if self.group else f"/api/{version}"
        if namespace is not None:
            return f"{root}/namespaces/{namespace}/{self.name}"
        return f"{root}/{self.name}"

    def source_name(self, namespace: str | None = None) -> str:
        """The store source name of its watcher: ``services``, ``services/shop``."""
        return self.name if namespace is None else f"{self.name}/{namespace}"

    def group_path(self) -> str:
        return f"/apis/{self.group}" if self.group else "/api"


SERVICES = Resource("services", Kind.SERVICE, "", ("v1",), True, False)
ENDPOINTSLICES = Resource("endpointslices", Kind.SLICE, "discovery.k8s.io", ("v1",), True,
                          False)
NAMESPACES = Resource("namespaces", Kind.NAMESPACE, "", ("v1",), False, False)
SERVICEIMPORTS = Resource("serviceimports", Kind.IMPORT, "multicluster.x-k8s.io",
                          ("v1beta1", "v1alpha1"), True, True)
# about-api serves v1alpha1 and v1beta1 (its storage version: kubernetes-sigs/about-api
# config/crd/about.k8s.io_clusterproperties.yaml)
CLUSTERPROPERTIES = Resource("clusterproperties", Kind.CLUSTER_PROPERTY, "about.k8s.io",
                             ("v1beta1", "v1alpha1"), False, True)

ALL: tuple[Resource, ...] = (NAMESPACES, SERVICES, ENDPOINTSLICES, SERVICEIMPORTS,
                             CLUSTERPROPERTIES)


def source_names(cfg: Config) -> tuple[str, ...]:
    """Store source names, one per watcher: pass them to ``Store(...)``."""
    return tuple(res.source_name(ns) for res, ns in plan(cfg))


def plan(cfg: Config) -> list[tuple[Resource, str | None]]:
    """(resource, namespace) of every watcher: namespaced ones per filtered namespace."""
    out: list[tuple[Resource, str | None]] = []
    for res in ALL:
        if res.namespaced and cfg.namespaces:
            out += [(res, ns) for ns in cfg.namespaces]
        else:
            out.append((res, None))
    return out
