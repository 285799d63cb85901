"""Generate one synthetic cluster three ways: a state file, a zone file and query files.

The benchmark compares mcdns with Knot DNS and a naive dnslib server, so all three must
serve the *same* data. One in-memory model (``Cluster``) is built from a seed and written
out as (1) Kubernetes objects as ``kubectl get -o yaml`` prints them, for ``mcdns serve
--state``; (2) a ``cluster.local`` zone with the records mcdns's ``local-first`` policy
answers, for Knot and the dnslib baseline; (3) dnsperf query files for the two mixes of
the benchmark. Everything is deterministic for a given (services, seed).

Usage: ``python -m bench.gen --services 1000 --out DIR``
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ZONE = "cluster.local"
TTL = 5
SOA_TIMERS = "7200 1800 86400"
SERVICES_PER_NAMESPACE = 50
CLUSTER_IP_BASE = ipaddress.IPv4Address("10.96.0.0")
POD_IP_BASE = ipaddress.IPv4Address("10.244.0.0")
IMPORT_IP_BASE = ipaddress.IPv4Address("10.112.0.0")
DNS_SERVICE_IP = "10.96.0.10"
CREATED = "2025-01-01T00:00:00Z"
EXTERNAL_NAMES = ("api.github.com", "pypi.org", "s3.amazonaws.com", "login.example.com")


@dataclass(frozen=True)
class Endpoint:
    ip: str
    hostname: str  # "" when the pod sets none
    ready: bool


@dataclass(frozen=True)
class Port:
    name: str  # "" for an unnamed port (no SRV record)
    port: int
    protocol: str


@dataclass(frozen=True)
class Svc:
    """One service name: a local Service, an import of it, or both."""

    namespace: str
    name: str
    local: bool  # a local Service object exists
    headless: bool
    cluster_ip: str  # "" for headless or import-only
    ports: tuple[Port, ...]
    endpoints: tuple[Endpoint, ...]
    import_ips: tuple[str, ...]  # () when there is no ServiceImport

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{ZONE}."

    @property
    def ready(self) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.ready)


@dataclass(frozen=True)
class Cluster:
    namespaces: tuple[str, ...]
    services: tuple[Svc, ...]


# --- the model ---------------------------------------------------------------------------


def _ip(base: ipaddress.IPv4Address, n: int) -> str:
    return str(base + n)


def build(services: int, seed: int = 1) -> Cluster:
    """A cluster of ``services`` service names, 50 per namespace.

    Per 100 names: 5 headless (3 ready endpoints with hostnames), 5 imported and locally
    healthy, 5 imported with no ready local endpoint (answered with the import IP), 1
    import without a local Service; the rest are plain ClusterIP Services with 2 ready
    endpoints. Every 4th has a second named port; every 10th has one unnamed port.
    """
    rng = random.Random(seed)
    n_ns = max(1, -(-services // SERVICES_PER_NAMESPACE))
    namespaces = tuple(f"ns-{i:04d}" for i in range(n_ns))
    pod = 0
    out: list[Svc] = []
    for i in range(services):
        ns = namespaces[i // SERVICES_PER_NAMESPACE]
        name = f"{rng.choice(('web', 'api', 'db', 'cache', 'auth', 'queue'))}-{i:05d}"
        cat = i % 100
        ports = _ports(i)
        headless = cat < 5
        n_eps = 3 if headless else 2
        ready = not 10 <= cat < 15
        local = cat != 15
        eps = []
        for j in range(n_eps if local else 0):
            host = f"{name}-{j}" if headless else ""
            eps.append(Endpoint(_ip(POD_IP_BASE, pod + 1), host, ready))
            pod += 1
        imported = 5 <= cat < 16
        out.append(
            Svc(
                namespace=ns,
                name=name,
                local=local,
                headless=headless,
                cluster_ip="" if headless or not local else _ip(CLUSTER_IP_BASE, 100 + i),
                ports=ports,
                endpoints=tuple(eps),
                import_ips=(_ip(IMPORT_IP_BASE, 1 + i),) if imported else (),
            )
        )
    return Cluster(namespaces, tuple(out))


def _ports(i: int) -> tuple[Port, ...]:
    if i % 10 == 9:
        return (Port("", 8080, "TCP"),)
    if i % 4 == 0:
        return (Port("http", 80, "TCP"), Port("grpc", 9090, "TCP"))
    return (Port("http", 80, "TCP"),)


# --- local-first answers -----------------------------------------------------------------


def answer_ips(s: Svc) -> tuple[str, ...]:
    """The A answer of ``s.fqdn`` under mcdns's local-first policy (min_ready 1)."""
    if s.local and (s.ready or not s.import_ips):
        return tuple(e.ip for e in s.ready) if s.headless else (s.cluster_ip,)
    return s.import_ips


def endpoint_label(e: Endpoint) -> str:
    return e.hostname or e.ip.replace(".", "-")


def records(c: Cluster) -> Iterator[tuple[str, str, str]]:
    """(owner, type, rdata) of every record in the zone, apex first."""
    apex = f"{ZONE}."
    yield apex, "SOA", f"ns.dns.{apex} hostmaster.{apex} 1 {SOA_TIMERS} {TTL}"
    yield apex, "NS", f"ns.dns.{apex}"
    yield f"ns.dns.{apex}", "A", DNS_SERVICE_IP
    yield f"dns-version.{apex}", "TXT", '"1.1.0"'
    for s in c.services:
        yield from _service_records(s)


def _service_records(s: Svc) -> Iterator[tuple[str, str, str]]:
    ips = answer_ips(s)
    for ip in ips:
        yield s.fqdn, "A", ip
    per_endpoint = s.headless and s.local and bool(s.ready) and ips != s.import_ips
    if per_endpoint:
        for e in s.ready:
            yield f"{endpoint_label(e)}.{s.fqdn}", "A", e.ip
    if not ips:
        return
    for p in s.ports:
        if not p.name:
            continue
        owner = f"_{p.name}._{p.protocol.lower()}.{s.fqdn}"
        targets = [f"{endpoint_label(e)}.{s.fqdn}" for e in s.ready] if per_endpoint else [s.fqdn]
        weight = 100 // len(targets)
        for t in targets:
            yield owner, "SRV", f"0 {weight} {p.port} {t}"


def zone_text(c: Cluster) -> str:
    lines = [f"$ORIGIN {ZONE}.", f"$TTL {TTL}"]
    lines += [f"{o} {TTL} IN {t} {r}" for o, t, r in records(c)]
    return "\n".join(lines) + "\n"


def served_names(c: Cluster) -> int:
    """Distinct owner names in the zone (what "bytes per served name" divides by)."""
    return len({o for o, _, _ in records(c)})


# --- Kubernetes objects ------------------------------------------------------------------


def _meta(name: str, ns: str | None, seq: int, **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"creationTimestamp": CREATED, "name": name}
    if ns is not None:
        m["namespace"] = ns
    m["resourceVersion"] = str(1000 + seq)
    m["uid"] = str(uuid.UUID(int=seq + 1))
    m.update(extra)
    return dict(sorted(m.items()))


def objects(c: Cluster) -> list[dict[str, Any]]:
    """The cluster as API objects: Namespaces, Services, EndpointSlices, ServiceImports."""
    objs: list[dict[str, Any]] = []
    for ns in c.namespaces:
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": _meta(ns, None, len(objs), labels={"kubernetes.io/metadata.name": ns}),
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
        )
    for s in c.services:
        if s.local:
            objs.append(_service(s, len(objs)))
            objs.append(_slice(s, len(objs)))
        if s.import_ips:
            objs.append(_import(s, len(objs)))
    return objs


def _port_dict(p: Port, target: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"port": p.port, "protocol": p.protocol}
    if p.name:
        d["name"] = p.name
    if target:
        d["targetPort"] = p.port
    return d


def _service(s: Svc, seq: int) -> dict[str, Any]:
    ip = "None" if s.headless else s.cluster_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(s.name, s.namespace, seq, labels={"app": s.name}),
        "spec": {
            "clusterIP": ip,
            "clusterIPs": [ip],
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [_port_dict(p, True) for p in s.ports],
            "selector": {"app": s.name},
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
        "status": {"loadBalancer": {}},
    }


def _slice(s: Svc, seq: int) -> dict[str, Any]:
    eps = []
    for j, e in enumerate(s.endpoints):
        ep: dict[str, Any] = {
            "addresses": [e.ip],
            "conditions": {"ready": e.ready, "serving": e.ready, "terminating": False},
            "nodeName": f"node-{j % 3}",
            "targetRef": {
                "kind": "Pod",
                "name": e.hostname or f"{s.name}-{seq:x}-{j}",
                "namespace": s.namespace,
                "uid": str(uuid.UUID(int=(seq << 8) + j + 1)),
            },
            "zone": f"zone-{j % 3}",
        }
        if e.hostname:
            ep["hostname"] = e.hostname
        eps.append(ep)
    labels = {
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        "kubernetes.io/service-name": s.name,
    }
    if s.headless:
        labels["service.kubernetes.io/headless"] = ""
    return {
        "addressType": "IPv4",
        "apiVersion": "discovery.k8s.io/v1",
        "endpoints": eps,
        "kind": "EndpointSlice",
        "metadata": _meta(f"{s.name}-{seq:05x}", s.namespace, seq, labels=labels),
        "ports": [_port_dict(p, False) for p in s.ports],
    }


def _import(s: Svc, seq: int) -> dict[str, Any]:
    return {
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceImport",
        "metadata": _meta(s.name, s.namespace, seq),
        "spec": {
            "ips": list(s.import_ips),
            "ports": [_port_dict(p, False) for p in s.ports],
            "type": "ClusterSetIP",
        },
        "status": {"clusters": [{"cluster": "member2"}]},
    }


def state_text(c: Cluster) -> str:
    """The objects as one ``kind: List``, the way ``kubectl get ... -o yaml`` prints it."""
    doc = {"apiVersion": "v1", "items": objects(c), "kind": "List",
           "metadata": {"resourceVersion": ""}}
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump(doc, Dumper=dumper, default_flow_style=False, sort_keys=False))


# --- query mixes -------------------------------------------------------------------------


def mix_existing(c: Cluster, seed: int = 1) -> list[str]:
    """Mix 1: A queries for every service name that has an A answer, shuffled."""
    names = [f"{s.fqdn} A" for s in c.services if answer_ips(s)]
    random.Random(seed).shuffle(names)
    return names


def search_expansion(name: str, client_ns: str, ndots: int = 5) -> list[str]:
    """The names a pod in ``client_ns`` sends to the cluster zone for ``name``, in order.

    resolv.conf: ``search <ns>.svc.cluster.local svc.cluster.local cluster.local`` and
    ``options ndots:5``. A name with fewer dots than ndots goes through the search list
    first; the absolute name is tried last and only reaches mcdns if it is in the zone.
    The caller stops at the first name that exists.
    """
    search = (f"{client_ns}.svc.{ZONE}", f"svc.{ZONE}", ZONE)
    tries = [f"{name}.{d}." for d in search] if name.count(".") < ndots else []
    if name == ZONE or name.endswith(f".{ZONE}"):
        tries.append(f"{name}.")
    return tries


def mix_pod(c: Cluster, lookups: int = 20000, seed: int = 1) -> list[str]:
    """Mix 2: what pods send, NXDOMAINs of the search path included; 20% AAAA, 5% SRV.

    Lookups (before expansion): 40% short same-namespace names, 30% ``svc.ns``, 10%
    ``svc.ns.svc``, 10% ``svc.ns.svc.cluster.local`` (4 dots: still searched), 10%
    external names (three NXDOMAINs here, the answer comes from elsewhere).
    """
    rng = random.Random(seed)
    found = {s.fqdn for s in c.services if answer_ips(s)}
    by_ns: dict[str, list[Svc]] = {}
    for s in c.services:
        if s.fqdn in found:
            by_ns.setdefault(s.namespace, []).append(s)
    nss = sorted(by_ns)
    out: list[str] = []
    for _ in range(lookups):
        client = rng.choice(nss)
        r = rng.random()
        target = rng.choice(by_ns[client] if r < 0.4 else by_ns[rng.choice(nss)])
        if r < 0.4:
            name = target.name
        elif r < 0.7:
            name = f"{target.name}.{target.namespace}"
        elif r < 0.8:
            name = f"{target.name}.{target.namespace}.svc"
        elif r < 0.9:
            name = f"{target.name}.{target.namespace}.svc.{ZONE}"
        else:
            name = rng.choice(EXTERNAL_NAMES)
        q = rng.random()
        named = [p for p in target.ports if p.name]
        if q < 0.05 and named and not name.endswith(EXTERNAL_NAMES):
            p = named[0]
            name, qtype = f"_{p.name}._{p.protocol.lower()}.{name}", "SRV"
        else:
            qtype = "AAAA" if q < 0.25 else "A"
        for t in search_expansion(name, client):
            out.append(f"{t} {qtype}")
            if t in found or (qtype == "SRV" and t.split(".", 2)[2] in found):
                break
    return out


# --- files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Files:
    state: Path
    zone: Path
    mix1: Path
    mix2: Path
    meta: Path


def write(out: Path, services: int, seed: int = 1, lookups: int = 20000) -> Files:
    """Write state, zone and query files for ``services`` names into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    c = build(services, seed)
    f = Files(
        state=out / f"state-{services}.yaml",
        zone=out / f"cluster.local-{services}.zone",
        mix1=out / f"mix1-{services}.txt",
        mix2=out / f"mix2-{services}.txt",
        meta=out / f"meta-{services}.json",
    )
    f.state.write_text(state_text(c))
    f.zone.write_text(zone_text(c))
    f.mix1.write_text("\n".join(mix_existing(c, seed)) + "\n")
    f.mix2.write_text("\n".join(mix_pod(c, lookups, seed)) + "\n")
    meta = {
        "services": services,
        "seed": seed,
        "namespaces": len(c.namespaces),
        "served_names": served_names(c),
        "probe": mix_existing(c, seed)[0].split()[0],
    }
    f.meta.write_text(json.dumps(meta, indent=2) + "\n")
    return f


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lookups", type=int, default=20000, help="mix 2 lookups before expansion")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    f = write(a.out, a.services, a.seed, a.lookups)
    for p in (f.state, f.zone, f.mix1, f.mix2, f.meta):
        print(p)


if __name__ == "__main__":
    main()
