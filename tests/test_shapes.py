"""The adapter layer alone (mcdns.objects.shapes): how each implementation's slices and imports
are read, and how ready pods are counted. No server: the fixtures' objects are reduced
and the classification checked slice by slice."""

from __future__ import annotations

import pytest
import yaml
from conftest import DATA

from mcdns.objects.model import Endpoint, EndpointSlice, Origin, ServiceImport
from mcdns.objects.reduce import reduce
from mcdns.objects.shapes import is_own, karmada_cluster, ready_pods, remote_of
from mcdns.state.store import Store

OWN, IMPORTED, MIRROR = Origin.OWN, Origin.IMPORTED, Origin.MIRROR

# fixture -> slice (namespace/name) -> (service label, MCS label, cluster, origin)
SLICES: dict[str, dict[str, tuple[str, str, str, Origin]]] = {
    "mcs-api": {
        "default/nginx-4xk2p": ("nginx", "", "", OWN),
        "default/imported-nginx-cluster-a-east-x7k2p":
            ("derived-iuq6ea9f4j", "nginx", "cluster-a.east", IMPORTED),
        "default/imported-nginx-cluster-b-west-q9z8r":
            ("derived-iuq6ea9f4j", "nginx", "cluster-b.west", IMPORTED),
    },
    "lighthouse": {
        "default/nginx-j8w5d": ("nginx", "", "", OWN),
        "default/nginx-7x2kq": ("", "nginx", "cluster1", IMPORTED),
        "default/nginx-m4d9p": ("", "nginx", "cluster2", MIRROR),  # written here, not synced
        "submariner-k8s-broker/nginx-7x2kq": ("", "", "cluster1", IMPORTED),  # inert copy
        "default/db-x2v7n": ("", "db", "cluster2", MIRROR),
    },
    "cilium": {
        "default/derived-iuq6ea9f4j-7xk2p":
            ("derived-iuq6ea9f4j", "nginx", "cluster2", MIRROR),
        "default/derived-gapqrqeg1j-cluster1-q8w2z":
            ("derived-gapqrqeg1j", "web", "cluster1", IMPORTED),
    },
    "karmada-import": {
        "default/imported-member1-serve-7x9kq": ("derived-serve", "", "member1", IMPORTED),
        "default/imported-member-cluster-with-a-long-name-eu-west1-serve-5d9f8b7c6d-x2v7n":
            ("derived-serve", "", "member-cluster-with-a-long-name-eu-west1", IMPORTED),
        "default/imported-member1-db-4kq2z": ("derived-db", "", "member1", IMPORTED),
    },
    "karmada-mcs": {
        "default/serve-q8v2n": ("serve", "", "", OWN),
        "default/member1-serve-7x9kq": ("serve", "", "member1", IMPORTED),
        "default/member-cluster-with-a-long-name-eu-west1-db-7c9d5b8f6-k4j3h":
            ("db", "", "member-cluster-with-a-long-name-eu-west1", IMPORTED),
    },
}


def slices_of(fixture: str) -> dict[str, EndpointSlice]:
    docs = yaml.safe_load_all((DATA / "interop" / f"{fixture}.yaml").read_text())
    out = {}
    for obj in docs:
        if obj and obj["kind"] == "EndpointSlice":
            s = reduce(obj)
            assert isinstance(s, EndpointSlice)
            out[f"{s.namespace}/{s.name}"] = s
    return out


@pytest.mark.parametrize("fixture", list(SLICES))
def test_each_implementations_slices_are_read_as_written(fixture: str) -> None:
    got = slices_of(fixture)
    for key, want in SLICES[fixture].items():
        s = got[key]
        assert (s.service, s.mcs_service, s.cluster, s.origin) == want, key


@pytest.mark.parametrize("cluster_id,own", [
    ("", {"default/nginx-4xk2p", "default/nginx-9p2mw"}),
    ("cluster-b.west", {"default/nginx-4xk2p", "default/nginx-9p2mw",
                        "default/imported-nginx-cluster-b-west-q9z8r"}),
])
def test_a_slice_from_this_clusters_id_is_its_own(cluster_id: str, own: set[str]) -> None:
    nginx = {k: s for k, s in slices_of("mcs-api").items() if "nginx" in k}
    assert {k for k, s in nginx.items() if is_own(s, cluster_id)} == own


def test_karmada_cluster_names_may_hold_dashes() -> None:
    assert karmada_cluster("imported-member1-serve-7x9kq", "derived-serve") == "member1"
    assert karmada_cluster("imported-eu-west-1-serve-7x9kq", "derived-serve") == "eu-west-1"
    assert karmada_cluster("imported-member1-other-7x9kq", "derived-serve") == "member1"
    assert karmada_cluster("serve-7x9kq", "derived-serve") == ""


def ep(address: str, hostname: str = "", ready: bool = True) -> Endpoint:
    return Endpoint(address, hostname, ready)


def eps(family: str, *endpoints: Endpoint) -> EndpointSlice:
    return EndpointSlice("default", f"s-{family}-{len(endpoints)}", "svc", "", "", OWN, family,
                         (), endpoints)


@pytest.mark.parametrize("slices,pods", [
    # a dual-stack pod is one pod
    ([eps("IPv4", ep("10.0.0.1")), eps("IPv6", ep("fd00::1"))], 1),
    # ... by its hostname when it has one
    ([eps("IPv4", ep("10.0.0.1", "db-0"), ep("10.0.0.2", "db-1")),
      eps("IPv6", ep("fd00::1", "db-0"), ep("fd00::2", "db-1"))], 2),
    # ... else the largest address family's count (pods of a cluster migrating to
    # dual-stack: some have no IPv6 address yet)
    ([eps("IPv4", ep("10.0.0.1"), ep("10.0.0.2")), eps("IPv6", ep("fd00::1"))], 2),
    # not ready endpoints do not count; two pods are two
    ([eps("IPv4", ep("10.0.0.1"), ep("10.0.0.2"), ep("10.0.0.3", ready=False))], 2),
    ([], 0),
])
def test_ready_counts_pods_not_addresses(slices: list[EndpointSlice], pods: int) -> None:
    assert ready_pods(slices) == pods


def test_import_answers_from_its_cluster_slices_when_it_has_no_ips() -> None:
    """Lighthouse: no spec.ips; each cluster's slice carries that cluster's ClusterIP.
    The cluster zone answers the other clusters' ready ones, the clusterset zone every
    ready cluster's (this one's too)."""
    store = Store()
    for s in slices_of("lighthouse").values():
        store.upsert(s)
    imp = ServiceImport("default", "nginx", "ClusterSetIP", (), (), None, None)
    remote = remote_of(imp, store.mcs_slices_of("default", "nginx"),
                       store.slices_of("default", imp.derived_name), None, "")
    assert remote.ips == ("10.96.10.10",)
    assert set(remote.clusterset_ips) == {"10.96.10.10", "10.96.20.20"}
    assert remote.ready_by_cluster == (("cluster1", 1),) and remote.available
    assert [s.name for s in remote.own] == ["nginx-m4d9p"]
