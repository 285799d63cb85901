"""Reduce Kubernetes objects (plain dicts, as the API or kubectl prints them) to slim ones.

Shared by the state file loader and the API watchers, so both feed the store the same
objects. A malformed object raises ``ReduceError`` naming it and the field; callers
log and skip it, so one bad object never poisons the others.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mcdns.objects import shapes
from mcdns.objects.failover import (
    CLUSTER_PREFERENCE_ANNOTATION,
    FAILBACK_DELAY_ANNOTATION,
    FAILBACK_READY_ANNOTATION,
    Failover,
    parse_delay,
    parse_preference,
)
from mcdns.objects.model import (
    ClusterProperty,
    Endpoint,
    EndpointSlice,
    Kind,
    Namespace,
    Port,
    Service,
    ServiceImport,
    Slim,
)
from mcdns.objects.names import (
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
)

POLICY_ANNOTATION = "mcdns.io/policy"
MIN_READY_ANNOTATION = "mcdns.io/min-ready"
CLUSTER_ID_PROPERTY = shapes.CLUSTER_ID_PROPERTY
POLICIES = ("local-first", "local-only", "import-first")
LOCAL_ONLY = "local-only"

MAX_PORTS = 1000
ADDRESS_TYPES = {"IPv4": "IPv4", "IPv6": "IPv6", "FQDN": "FQDN"}
SHARED_MAX = 4096  # distinct ports and port lists shared between objects (then new ones)
_PORTS: dict[tuple[str, int, str], Port] = {}
_PORT_TUPLES: dict[tuple[Port, ...], tuple[Port, ...]] = {}
MAX_ENDPOINTS = 10000
MAX_ADDRESSES = 100  # per endpoint, as the API server allows
MAX_LABEL = 63
# The name rule of each kind, as the API server applies it (mcdns.objects.names).
NAME_RULES = {
    Kind.SERVICE: ("DNS-1035 label", is_dns1035_label),
    Kind.NAMESPACE: ("DNS-1123 label", is_dns1123_label),
    Kind.SLICE: ("DNS-1123 subdomain", is_dns1123_subdomain),
    Kind.IMPORT: ("DNS-1123 subdomain", is_dns1123_subdomain),
    Kind.CLUSTER_PROPERTY: ("DNS-1123 subdomain", is_dns1123_subdomain),
}

KINDS: dict[str, Kind] = {k.value: k for k in Kind}


class ReduceError(ValueError):
    """An object cannot be used; the message names it and the problem."""


def kind_of(obj: Mapping[str, Any]) -> Kind | None:
    """The slim kind of an API object, or None for kinds mcdns does not keep."""
    kind = obj.get("kind")
    api = str(obj.get("apiVersion", ""))
    if kind == "ServiceImport" and not api.startswith("multicluster.x-k8s.io/"):
        return None
    if kind == "EndpointSlice" and not api.startswith("discovery.k8s.io/"):
        return None
    return KINDS.get(kind) if isinstance(kind, str) else None


def reduce(obj: Mapping[str, Any], kind: Kind | None = None) -> Slim:
    """Reduce one API object to its slim form (``kind`` when the object has no kind)."""
    kind = kind or kind_of(obj)
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise ReduceError(f"{obj.get('kind', 'object')} without metadata")
    name = meta.get("name")
    ns = meta.get("namespace", "") or ""
    where = f"{kind.value if kind else obj.get('kind')} {ns + '/' if ns else ''}{name}"
    try:
        rule, valid = NAME_RULES[kind] if kind else ("DNS-1123 subdomain",
                                                      is_dns1123_subdomain)
        if not isinstance(name, str) or not valid(name):
            raise ReduceError(f"metadata.name {name!r} is not a valid name (a {rule})")
        if ns and not is_dns1123_label(ns):
            raise ReduceError(f"metadata.namespace {ns!r} is not a valid namespace "
                              "(a DNS-1123 label)")
        # Namespaces and service names repeat across objects (and every slice names its
        # service): one string each, shared, instead of one per object.
        ns = sys.intern(ns)
        match kind:
            case Kind.SERVICE:
                return _service(obj, ns, sys.intern(name))
            case Kind.SLICE:
                return _slice(obj, ns, name)
            case Kind.IMPORT:
                return _import(obj, ns, sys.intern(name))
            case Kind.NAMESPACE:
                return Namespace(name)
            case Kind.CLUSTER_PROPERTY:
                return ClusterProperty(name, str(_get(obj, "spec", {}).get("value", "")))
        raise ReduceError(f"unsupported kind {obj.get('kind')!r}")
    except ReduceError as e:
        raise ReduceError(f"{where}: {e}") from None
    except (TypeError, AttributeError, ValueError) as e:
        raise ReduceError(f"{where}: malformed ({e})") from None


def _get(obj: Mapping[str, Any], key: str, default: Any) -> Any:
    v = obj.get(key, default)
    return default if v is None else v


def _is_domain(name: str) -> bool:
    """A DNS name of labels of 1-63 octets, 253 characters at most (any characters:
    an ExternalName is only checked by the API server for being a DNS-1123 subdomain,
    but mcdns only needs to be able to encode it)."""
    return 0 < len(name) <= 253 and all(0 < len(p) <= MAX_LABEL for p in name.split("."))


def _annotation_policy(meta: Mapping[str, Any]) -> tuple[str | None, int | None]:
    ann = _get(meta, "annotations", {})
    policy = ann.get(POLICY_ANNOTATION)
    if policy is not None and policy not in POLICIES:
        raise ReduceError(f"annotation {POLICY_ANNOTATION}={policy!r} is not one of {POLICIES}")
    raw = ann.get(MIN_READY_ANNOTATION)
    min_ready: int | None = None
    if raw is not None:
        try:
            min_ready = int(str(raw))
        except ValueError:
            raise ReduceError(
                f"annotation {MIN_READY_ANNOTATION}={raw!r} is not an integer") from None
        if not 0 <= min_ready <= 1_000_000:
            raise ReduceError(f"annotation {MIN_READY_ANNOTATION}={raw!r} is out of range")
    return policy, min_ready


_FAILOVERS: dict[Failover, Failover] = {}  # equal tunings share one object


def _failover(meta: Mapping[str, Any]) -> Failover | None:
    """The failback and cluster preference annotations, or None when none is set."""
    ann = _get(meta, "annotations", {})
    raw = {k: ann.get(k) for k in (FAILBACK_DELAY_ANNOTATION, FAILBACK_READY_ANNOTATION,
                                   CLUSTER_PREFERENCE_ANNOTATION)}
    if all(v is None for v in raw.values()):
        return None
    delay = _annotation(raw, FAILBACK_DELAY_ANNOTATION, parse_delay)
    ready = _annotation(raw, FAILBACK_READY_ANNOTATION, _count)
    pref = _annotation(raw, CLUSTER_PREFERENCE_ANNOTATION, parse_preference)
    f = Failover(delay, ready, pref)
    return _FAILOVERS.setdefault(f, f)


T = TypeVar("T")


def _annotation(raw: Mapping[str, Any], key: str, parse: Callable[[Any], T]) -> T | None:
    value = raw.get(key)
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as e:
        raise ReduceError(f"annotation {key}: {e}") from None


def _count(raw: Any) -> int:
    try:
        n = int(str(raw))
    except ValueError:
        raise ValueError(f"{raw!r} is not an integer") from None
    if not 0 <= n <= 1_000_000:
        raise ValueError(f"{raw!r} is out of range 0-1000000")
    return n


def _ports(raw: Any, where: str) -> tuple[Port, ...]:
    if not isinstance(raw, list):
        raise ReduceError(f"{where} is not a list")
    if len(raw) > MAX_PORTS:
        raise ReduceError(f"{where} has {len(raw)} ports (limit {MAX_PORTS})")
    out = []
    for p in raw:
        port = p.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ReduceError(f"{where}: port {port!r} is not a port number")
        name = p.get("name") or ""
        if not isinstance(name, str) or len(name) > MAX_LABEL:
            raise ReduceError(f"{where}: port name {name!r} is not valid")
        proto = str(p.get("protocol") or "TCP").upper()
        if proto not in ("TCP", "UDP", "SCTP"):
            raise ReduceError(f"{where}: protocol {proto!r} is not TCP, UDP or SCTP")
        out.append(_shared_port(name, port, proto))
    ports = tuple(out)
    return _PORT_TUPLES.setdefault(ports, ports) if len(_PORT_TUPLES) < SHARED_MAX else ports


def _shared_port(name: str, port: int, proto: str) -> Port:
    """One Port object per distinct port (most Services share a few): less memory."""
    key = (name, port, proto)
    got = _PORTS.get(key)
    if got is None:
        got = Port(sys.intern(name), port, sys.intern(proto))
        if len(_PORTS) < SHARED_MAX:
            _PORTS[key] = got
    return got


def _ips(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise ReduceError(f"{where} is not a list")
    out = []
    for ip in raw:
        try:
            out.append(str(ipaddress.ip_address(ip)))
        except ValueError:
            raise ReduceError(f"{where}: {ip!r} is not an IP address") from None
    return tuple(out)


def _service(obj: Mapping[str, Any], ns: str, name: str) -> Service:
    spec = _get(obj, "spec", {})
    meta = obj["metadata"]
    policy, min_ready = _annotation_policy(meta)
    stype = spec.get("type") or "ClusterIP"
    ports = _ports(_get(spec, "ports", []), "spec.ports")
    if stype == "ExternalName":
        ext = spec.get("externalName")
        if not isinstance(ext, str) or not _is_domain(ext.rstrip(".")):
            raise ReduceError(f"spec.externalName {ext!r} is not a domain name")
        return Service(ns, name, "ExternalName", "", ext.rstrip("."), ports, policy, min_ready)
    failover = _failover(meta)
    if policy is None and spec.get("internalTrafficPolicy") == "Local":
        policy = LOCAL_ONLY  # the standard field: no fallback, unless the annotation says so
    raw_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    if raw_ips and raw_ips[0] == "None":
        return Service(ns, name, "Headless", "", "", ports, policy, min_ready,
                       failover=failover)
    ips = _ips(raw_ips, "spec.clusterIPs")
    return Service(ns, name, "ClusterIP", ips[0] if ips else "", "", ports, policy,
                   min_ready, ips[1:], failover)


def _slice(obj: Mapping[str, Any], ns: str, name: str) -> EndpointSlice:
    meta = obj["metadata"]
    labels = _get(meta, "labels", {})
    for key in shapes.SLICE_LABELS:  # the labels mcdns reads, checked as the API server does
        value = labels.get(key)
        if value is not None and not (isinstance(value, str) and is_label_value(value)):
            raise ReduceError(f"label {key}={value!r} is not a valid label value")
    facts = shapes.slice_facts(name, ns, labels, _get(meta, "annotations", {}))
    addr_type = obj.get("addressType") or "IPv4"
    if addr_type not in ADDRESS_TYPES:
        raise ReduceError(f"addressType {addr_type!r} is not IPv4, IPv6 or FQDN")
    addr_type = ADDRESS_TYPES[addr_type]
    raw_eps = _get(obj, "endpoints", [])
    if not isinstance(raw_eps, list):
        raise ReduceError("endpoints is not a list")
    if len(raw_eps) > MAX_ENDPOINTS:
        raise ReduceError(f"{len(raw_eps)} endpoints (limit {MAX_ENDPOINTS})")
    eps = []
    for i, ep in enumerate(raw_eps):
        addrs = _get(ep, "addresses", [])
        if isinstance(addrs, list) and len(addrs) > MAX_ADDRESSES:
            raise ReduceError(f"endpoints[{i}] has {len(addrs)} addresses "
                              f"(limit {MAX_ADDRESSES})")
        if addr_type == "FQDN":  # never answered, only counted: kept as given
            addrs = tuple(a for a in addrs if isinstance(a, str)) if isinstance(
                addrs, list) else ()
        else:
            addrs = _ips(addrs, f"endpoints[{i}].addresses")
            want = 4 if addr_type == "IPv4" else 6
            for a in addrs:
                if ipaddress.ip_address(a).version != want:
                    raise ReduceError(f"endpoints[{i}]: {a} in an {addr_type} slice")
        hostname = ep.get("hostname") or ""
        if hostname and not (isinstance(hostname, str) and is_dns1123_label(hostname)):
            raise ReduceError(f"endpoints[{i}].hostname {hostname!r} is not a DNS-1123 label")
        ready = _get(ep, "conditions", {}).get("ready")
        eps.append(Endpoint(addrs[0] if addrs else "", hostname, ready is None or bool(ready),
                            tuple(addrs[1:])))
    ports = _ports(_get(obj, "ports", []), "ports")
    return EndpointSlice(ns, name, facts.service, facts.mcs_service, facts.cluster,
                         facts.origin, addr_type, ports, tuple(eps))


def _import(obj: Mapping[str, Any], ns: str, name: str) -> ServiceImport:
    # v1alpha1 keeps type/ips/ports in spec; later versions moved them to the top level
    # or status. Read them where they are.
    spec = _get(obj, "spec", {})
    status = _get(obj, "status", {})

    def field(key: str) -> Any:
        for src in (spec, obj, status):
            if isinstance(src, Mapping) and src.get(key) is not None:
                return src[key]
        return None

    itype = field("type") or "ClusterSetIP"
    if itype not in ("ClusterSetIP", "Headless"):
        raise ReduceError(f"spec.type {itype!r} is not ClusterSetIP or Headless")
    meta = obj["metadata"]
    policy, min_ready = _annotation_policy(meta)
    ips = _ips(field("ips") or [], "spec.ips")
    ports = _ports(field("ports") or [], "spec.ports")
    derived, ready = shapes.import_facts(_get(meta, "annotations", {}), status)
    if derived and not is_dns1035_label(derived):
        raise ReduceError(f"annotation {shapes.DERIVED_ANNOTATION}={derived!r} is not a "
                          "Service name")
    return ServiceImport(ns, name, itype, ips, ports, policy, min_ready, sys.intern(derived),
                         ready, _failover(meta))
