"""Build Kubernetes objects (as kubectl prints them) for test state files, tersely.

Tests describe a cluster as a list of these dicts and write it as a state file, so each
table of cases sits next to the data it asks about.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service(name: str, ns: str = "default", ip: str | list[str] | None = None,
            ports: list[tuple[str, int]] | None = None, annotations: dict[str, str] | None = None,
            external: str | None = None) -> Obj:
    """A Service: ClusterIP ``ip`` (a list for dual-stack), headless when ip is None."""
    spec: Obj = {"ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports or
                           [("http", 80)]]}
    if external:
        spec.update(type="ExternalName", externalName=external)
    else:
        ips = ip if isinstance(ip, list) else [ip or "None"]
        spec.update(type="ClusterIP", clusterIP=ips[0], clusterIPs=ips)
    meta: Obj = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def endpoints(service: str, ns: str = "default", ready: list[str] | None = None,
              not_ready: list[str] | None = None, name: str | None = None,
              labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
              hostnames: dict[str, str] | None = None, ports: list[tuple[str, int]] | None = None,
              family: str = "IPv4", mcs: str | None = None, cluster: str | None = None) -> Obj:
    """An EndpointSlice of ``service`` (or, with ``mcs``, an MCS slice from ``cluster``)."""
    meta_labels = dict(labels or {})
    if mcs:
        meta_labels["multicluster.kubernetes.io/service-name"] = mcs
        if cluster:
            meta_labels["multicluster.kubernetes.io/source-cluster"] = cluster
    else:
        meta_labels["kubernetes.io/service-name"] = service
    meta: Obj = {"name": name or f"{mcs or service}-{cluster or 'local'}-{family.lower()}",
                 "namespace": ns, "labels": meta_labels}
    if annotations:
        meta["annotations"] = annotations
    eps = []
    for ip, ok in [(a, True) for a in ready or []] + [(a, False) for a in not_ready or []]:
        ep: Obj = {"addresses": [ip], "conditions": {"ready": ok}}
        if hostnames and ip in hostnames:
            ep["hostname"] = hostnames[ip]
        eps.append(ep)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
            "addressType": family, "endpoints": eps,
            "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports or
                      [("http", 8080)]]}


def service_import(name: str, ns: str = "default", ips: list[str] | None = None,
                   headless: bool = False, ports: list[tuple[str, int]] | None = None,
                   annotations: dict[str, str] | None = None, version: str = "v1alpha1") -> Obj:
    meta: Obj = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    spec: Obj = {"type": "Headless" if headless else "ClusterSetIP",
                 "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports or
                           [("http", 80)]]}
    if ips:
        spec["ips"] = ips
    return {"apiVersion": f"multicluster.x-k8s.io/{version}", "kind": "ServiceImport",
            "metadata": meta, "spec": spec}


def write(path: Path, objs: list[Obj]) -> Path:
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objs},
                                   sort_keys=False))
    return path
