"""Slim, immutable objects: the few fields of Kubernetes objects that DNS can see.

API objects are reduced to these on arrival (see ``mcdns.objects.reduce``) and the
originals dropped, so memory grows with what DNS needs, and an update that changes
nothing DNS-visible compares equal and recompiles nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from mcdns.objects.failover import Failover


class Kind(StrEnum):
    """The object kinds mcdns keeps."""

    SERVICE = "Service"
    SLICE = "EndpointSlice"
    IMPORT = "ServiceImport"
    NAMESPACE = "Namespace"
    CLUSTER_PROPERTY = "ClusterProperty"


Key = tuple[str, str]
"""(namespace, name) of an object; ("", name) for cluster-scoped ones."""


@dataclass(frozen=True, slots=True)
class Port:
    name: str
    port: int
    protocol: str  # TCP | UDP | SCTP


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    type: str  # ClusterIP | Headless | ExternalName
    cluster_ip: str  # the first ClusterIP ("" when none); the others in more_ips
    external_name: str
    ports: tuple[Port, ...]
    policy: str | None  # mcdns.io/policy annotation, else local-only for
    # internalTrafficPolicy: Local (the standard field: traffic stays in the cluster)
    min_ready: int | None  # mcdns.io/min-ready annotation
    more_ips: tuple[str, ...] = ()  # dual-stack: the ClusterIPs after the first
    failover: Failover | None = None  # mcdns.io failback and cluster preference tuning

    @property
    def cluster_ips(self) -> tuple[str, ...]:
        """Every ClusterIP, in order (one field and a tuple only for dual-stack, as for
        Endpoint.addresses)."""
        return (self.cluster_ip, *self.more_ips) if self.cluster_ip else ()

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint of a slice. Nearly every endpoint has exactly one address, so the
    first is a field of its own and a tuple is made only for the others (a 1-tuple per
    pod was a sixth of the store's memory)."""

    address: str  # the first address ("" when there is none)
    hostname: str
    ready: bool
    more: tuple[str, ...] = ()  # the addresses after the first

    @property
    def addresses(self) -> tuple[str, ...]:
        return (self.address, *self.more) if self.address else ()


class Origin(IntEnum):
    """Who wrote a slice's endpoints, as far as the slice itself tells (mcdns.objects.shapes)."""

    OWN = 0  # this cluster's endpoints, by its own controller (or anyone not multi-cluster)
    IMPORTED = 1  # endpoints brought in by a multi-cluster implementation
    MIRROR = 2  # this cluster's endpoints, copied by a multi-cluster implementation


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    namespace: str
    name: str
    service: str  # kubernetes.io/service-name ("" if absent)
    mcs_service: str  # multicluster.kubernetes.io/service-name ("" if absent)
    cluster: str  # source cluster as the slice names it ("" when it names none)
    origin: Origin  # an IMPORTED slice from this cluster's id is this cluster's too
    address_type: str  # IPv4 | IPv6 | FQDN
    ports: tuple[Port, ...]
    endpoints: tuple[Endpoint, ...]

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ServiceImport:
    namespace: str
    name: str
    type: str  # ClusterSetIP | Headless
    ips: tuple[str, ...]
    ports: tuple[Port, ...]
    policy: str | None
    min_ready: int | None
    derived: str = ""  # the derived Service's name when annotated ("": derived-<name>)
    ready: bool = True  # False when status.conditions has Ready=False
    failover: Failover | None = None  # mcdns.io failback and cluster preference tuning

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def derived_name(self) -> str:
        """The Service an implementation derives from this import: as annotated
        (mcs-api, Cilium), else Karmada's ``derived-<name>``."""
        return self.derived or "derived-" + self.name


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str

    @property
    def key(self) -> Key:
        return ("", self.name)


@dataclass(frozen=True, slots=True)
class ClusterProperty:
    name: str
    value: str

    @property
    def key(self) -> Key:
        return ("", self.name)


Slim = Service | EndpointSlice | ServiceImport | Namespace | ClusterProperty
