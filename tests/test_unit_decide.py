"""The fallback decision (mcdns.answers.health.decide) alone: a small store in, a
Decision out, with no records, table or server.

Why this exists: test_answers checks the decision table through DNS answers of one large
cluster, so a wrong choice shows as a wrong address, far from the rule that chose it.
These cases state the rules one at a time (policy, min-ready counted per pod, which
slices are remote evidence, the Ready condition, internalTrafficPolicy, degraded) and
check choice, degraded, policy and counts directly. Each case has a twin that differs in
the one input the rule reads, so every expectation can fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from statebuild import endpoints, service, service_import

from mcdns.answers.health import IMPORT, LOCAL, NONE, decide
from mcdns.config import POLICIES
from mcdns.objects.model import (
    Endpoint,
    EndpointSlice,
    Origin,
    Port,
    Service,
    ServiceImport,
    Slim,
)
from mcdns.objects.reduce import reduce
from mcdns.state.store import Store

NS, NAME = "default", "web"
HTTP = (Port("http", 80, "TCP"),)
HTTP8080 = (Port("http", 8080, "TCP"),)
LOCAL_FIRST, LOCAL_ONLY, IMPORT_FIRST = "local-first", "local-only", "import-first"


def svc(name: str = NAME, ip: str = "10.96.0.1", type: str = "ClusterIP",
        policy: str | None = None, min_ready: int | None = None,
        external: str = "") -> Service:
    if type != "ClusterIP":
        ip = ""
    return Service(NS, name, type, ip, external, HTTP, policy, min_ready)


def imp(name: str = NAME, ips: tuple[str, ...] = ("10.13.0.1",), type: str = "ClusterSetIP",
        policy: str | None = None, min_ready: int | None = None,
        ready: bool = True) -> ServiceImport:
    return ServiceImport(NS, name, type, ips if type == "ClusterSetIP" else (), HTTP, policy,
                         min_ready, "", ready)


def ep(ip: str, ready: bool = True, hostname: str = "") -> Endpoint:
    return Endpoint(ip, hostname, ready)


def local(*eps: Endpoint, service: str = NAME, family: str = "IPv4", name: str = "",
          cluster: str = "", origin: Origin = Origin.OWN) -> EndpointSlice:
    """A slice of the Service itself (kubernetes.io/service-name)."""
    return EndpointSlice(NS, name or f"{service}-{cluster or 'local'}-{family.lower()}",
                         service, "", cluster, origin, family, HTTP8080, eps)


def remote(cluster: str, *eps: Endpoint, service: str = NAME, family: str = "IPv4",
           origin: Origin = Origin.IMPORTED) -> EndpointSlice:
    """An MCS slice of the import (multicluster.kubernetes.io/service-name)."""
    return EndpointSlice(NS, f"{service}-{cluster or 'none'}-{family.lower()}", "", service,
                         cluster, origin, family, HTTP8080, eps)


def store_of(objs: list[Slim | dict[str, Any]]) -> Store:
    """A store of slim objects (dicts, as kubectl prints them, are reduced first)."""
    store = Store()
    for obj in objs:
        store.upsert(reduce(obj) if isinstance(obj, dict) else obj)
    store.commit()
    return store


def traffic_local(obj: dict[str, Any]) -> dict[str, Any]:
    obj["spec"]["internalTrafficPolicy"] = "Local"
    return obj


UP, DOWN = ep("10.244.0.1"), ep("10.244.0.1", ready=False)
R_UP, R_DOWN = ep("10.10.0.1"), ep("10.10.0.1", ready=False)


@dataclass
class Case:
    """A store, the configured defaults, and the decision they must give."""

    name: str
    objs: list[Slim | dict[str, Any]]
    choice: str
    degraded: bool = False
    policy: str = LOCAL_FIRST  # the policy the decision applies
    local_ready: int | None = None  # checked when given
    min_ready: int | None = None  # checked when given
    default_policy: str = LOCAL_FIRST
    default_min_ready: int = 1
    cluster_id: str = ""
    xfail: str = ""


CASES: list[Case] = [
    # the three sources of an answer
    Case("nothing", [], NONE),
    Case("service-only-ready", [svc(), local(UP)], LOCAL, local_ready=1),
    Case("service-only-none-ready", [svc(), local(DOWN)], LOCAL, degraded=True, local_ready=0),
    Case("service-only-no-slice-is-unknown", [svc()], LOCAL, local_ready=0),
    Case("import-only-unknown", [imp()], IMPORT),
    Case("import-only-ready", [imp(), remote("member1", R_UP)], IMPORT),
    Case("import-only-known-none-ready", [imp(), remote("member1", R_DOWN)], IMPORT,
         degraded=True),
    Case("import-only-condition-not-ready", [imp(ready=False)], IMPORT, degraded=True),
    Case("import-only-no-address", [imp(ips=())], IMPORT, degraded=True),
    Case("import-only-local-only-default", [imp()], NONE, policy=LOCAL_ONLY,
         default_policy=LOCAL_ONLY),
    # local-first
    Case("local-ready-beats-import", [svc(), local(UP), imp(), remote("member1", R_UP)],
         LOCAL, local_ready=1),
    Case("local-none-ready-import-ready", [svc(), local(DOWN), imp(), remote("member1", R_UP)],
         IMPORT, local_ready=0),
    Case("local-none-ready-import-unknown", [svc(), local(DOWN), imp()], IMPORT),
    Case("local-no-slice-import-unknown", [svc(), imp()], IMPORT),
    Case("local-none-ready-import-known-none",
         [svc(), local(DOWN), imp(), remote("member1", R_DOWN)], LOCAL, degraded=True),
    Case("local-none-ready-import-condition-false",
         [svc(), local(DOWN), imp(ready=False), remote("member1", R_UP)], LOCAL, degraded=True),
    Case("local-none-ready-import-without-address",
         [svc(), local(DOWN), imp(ips=())], LOCAL, degraded=True),
    Case("local-none-ready-import-without-address-but-cluster-slices",
         [svc(), local(DOWN), imp(ips=()), remote("member1", R_UP)], IMPORT),
    Case("headless-local-none-ready-headless-import-ready",
         [svc(type="Headless"), local(DOWN), imp(type="Headless"), remote("member1", R_UP)],
         IMPORT),
    Case("headless-import-unknown-is-not-available",
         [svc(type="Headless"), local(DOWN), imp(type="Headless")], LOCAL, degraded=True),
    Case("headless-import-only-unknown", [imp(type="Headless")], IMPORT, degraded=True),
    # policies: the Service's annotation, then the import's, then the default
    Case("service-local-only", [svc(policy=LOCAL_ONLY), local(DOWN), imp(),
                                remote("member1", R_UP)], LOCAL, degraded=True,
         policy=LOCAL_ONLY),
    Case("default-local-only", [svc(), local(DOWN), imp(), remote("member1", R_UP)], LOCAL,
         degraded=True, policy=LOCAL_ONLY, default_policy=LOCAL_ONLY),
    Case("import-local-only", [svc(), local(DOWN), imp(policy=LOCAL_ONLY),
                               remote("member1", R_UP)], LOCAL, degraded=True,
         policy=LOCAL_ONLY),
    Case("import-first-by-import", [svc(), local(UP), imp(policy=IMPORT_FIRST),
                                    remote("member1", R_UP)], IMPORT, policy=IMPORT_FIRST),
    Case("import-first-by-default", [svc(), local(UP), imp(), remote("member1", R_UP)],
         IMPORT, policy=IMPORT_FIRST, default_policy=IMPORT_FIRST),
    Case("import-first-import-down-local-healthy",
         [svc(), local(UP), imp(policy=IMPORT_FIRST), remote("member1", R_DOWN)], LOCAL,
         policy=IMPORT_FIRST),
    Case("import-first-both-down",
         [svc(), local(DOWN), imp(policy=IMPORT_FIRST), remote("member1", R_DOWN)], LOCAL,
         degraded=True, policy=IMPORT_FIRST),
    Case("service-annotation-beats-import",
         [svc(policy=LOCAL_FIRST), local(UP), imp(policy=IMPORT_FIRST),
          remote("member1", R_UP)], LOCAL, policy=LOCAL_FIRST, default_policy=IMPORT_FIRST),
    Case("service-import-first-beats-default",
         [svc(policy=IMPORT_FIRST), local(UP), imp(), remote("member1", R_UP)], IMPORT,
         policy=IMPORT_FIRST),
    # min-ready: per pod, the Service's annotation, then the import's, then the default
    Case("min-ready-annotation-not-met",
         [svc(min_ready=2), local(UP), imp(), remote("member1", R_UP)], IMPORT,
         local_ready=1, min_ready=2),
    Case("min-ready-annotation-met",
         [svc(min_ready=2), local(UP, ep("10.244.0.2")), imp(), remote("member1", R_UP)],
         LOCAL, local_ready=2, min_ready=2),
    Case("min-ready-default-not-met", [svc(), local(UP), imp(), remote("member1", R_UP)],
         IMPORT, local_ready=1, min_ready=2, default_min_ready=2),
    Case("min-ready-zero-keeps-local-with-none-ready",
         [svc(min_ready=0), local(DOWN), imp(), remote("member1", R_UP)], LOCAL,
         # min-ready 0 lets 0 ready pods count as healthy, but the chosen local answer
         # is known to have no ready backend: degraded (it was not, before the fix)
         degraded=True, local_ready=0, min_ready=0),
    Case("min-ready-zero-local-only-twin",
         [svc(min_ready=0, policy=LOCAL_ONLY), local(DOWN), imp(), remote("member1", R_UP)],
         LOCAL, degraded=True, policy=LOCAL_ONLY, local_ready=0, min_ready=0),
    Case("min-ready-from-import", [svc(), local(UP, ep("10.244.0.2")), imp(min_ready=3),
                                   remote("member1", R_UP)], IMPORT, min_ready=3),
    Case("min-ready-service-beats-import",
         [svc(min_ready=1), local(UP), imp(min_ready=3), remote("member1", R_UP)], LOCAL,
         min_ready=1, default_min_ready=5),
    Case("min-ready-dual-stack-pod-counts-once",
         [svc(min_ready=2), local(UP), local(ep("fd00::1"), family="IPv6"), imp(),
          remote("member1", R_UP)], IMPORT, local_ready=1, min_ready=2),
    Case("min-ready-two-dual-stack-pods",
         [svc(min_ready=2), local(UP, ep("10.244.0.2")),
          local(ep("fd00::1"), ep("fd00::2"), family="IPv6"), imp(), remote("member1", R_UP)],
         LOCAL, local_ready=2, min_ready=2),
    Case("min-ready-hostname-pod-counts-once",
         [svc(min_ready=2, type="Headless"), local(ep("10.244.0.1", hostname="db-0")),
          local(ep("fd00::1", hostname="db-0"), family="IPv6"), imp(type="Headless"),
          remote("member1", R_UP)], IMPORT, local_ready=1, min_ready=2),
    Case("min-ready-multi-address-endpoint-is-one-pod",
         [svc(min_ready=2), local(Endpoint("10.244.0.1", "", True, ("10.244.0.2",))), imp(),
          remote("member1", R_UP)], IMPORT, local_ready=1, min_ready=2),
    Case("not-ready-endpoints-do-not-count",
         [svc(min_ready=2), local(UP, ep("10.244.0.2", ready=False)), imp(),
          remote("member1", R_UP)], IMPORT, local_ready=1, min_ready=2),
    # which slices are this cluster's: the remote evidence is the other clusters' only
    Case("remote-ready-from-another-cluster",
         [svc(), local(DOWN), imp(), remote("member1", R_UP), remote("member2", R_DOWN)],
         IMPORT),
    Case("own-cluster-slice-is-not-remote-evidence",
         [svc(), local(DOWN), imp(), remote("member1", R_UP), remote("member2", R_DOWN)],
         LOCAL, degraded=True, cluster_id="member1"),
    Case("own-cluster-slice-only-headless",
         [svc(type="Headless"), local(DOWN), imp(type="Headless"), remote("member1", R_UP)],
         LOCAL, degraded=True, cluster_id="member1"),
    Case("mirror-slice-is-not-remote-evidence",
         [svc(), local(DOWN), imp(), remote("member2", R_UP, origin=Origin.MIRROR),
          remote("member1", R_DOWN)], LOCAL, degraded=True),
    Case("dispatched-slice-is-not-local",
         [svc(), local(R_UP, name="web-dispatched", cluster="member1",
                       origin=Origin.IMPORTED), imp()], IMPORT, local_ready=0),
    Case("dispatched-slice-from-own-cluster-is-local",
         [svc(), local(R_UP, name="web-dispatched", cluster="member1",
                       origin=Origin.IMPORTED), imp()], LOCAL, local_ready=1,
         cluster_id="member1"),
    Case("dispatched-ready-slice-backs-the-service",
         [svc(), local(DOWN), local(R_UP, name="web-dispatched", cluster="member1",
                                    origin=Origin.IMPORTED), imp(ready=False)], LOCAL,
         local_ready=0),
    # the same rules from objects as kubectl prints them (the reducer's reading)
    Case("kubectl-policy-annotation",
         [service(NAME, ip="10.96.0.1", annotations={"mcdns.io/policy": LOCAL_ONLY}),
          endpoints(NAME, not_ready=["10.244.0.1"]), service_import(NAME, ips=["10.13.0.1"])],
         LOCAL, degraded=True, policy=LOCAL_ONLY),
    Case("kubectl-min-ready-annotation",
         [service(NAME, ip="10.96.0.1", annotations={"mcdns.io/min-ready": "2"}),
          endpoints(NAME, ready=["10.244.0.1"]), service_import(NAME, ips=["10.13.0.1"])],
         IMPORT, local_ready=1, min_ready=2),
    Case("kubectl-dual-stack-pod-counts-once",
         [service(NAME, ip=["10.96.0.1", "fd00::1"], annotations={"mcdns.io/min-ready": "2"}),
          endpoints(NAME, ready=["10.244.0.1"]),
          endpoints(NAME, ready=["fd00:244::1"], family="IPv6"),
          service_import(NAME, ips=["10.13.0.1"]),
          endpoints("", mcs=NAME, cluster="member1", ready=["10.10.0.1"])],
         IMPORT, local_ready=1, min_ready=2),
    Case("kubectl-internal-traffic-local-no-fallback",
         [traffic_local(service(NAME, ip="10.96.0.1")),
          endpoints(NAME, not_ready=["10.244.0.1"]), service_import(NAME, ips=["10.13.0.1"])],
         LOCAL, degraded=True, policy=LOCAL_ONLY),
    Case("kubectl-internal-traffic-local-annotated",
         [traffic_local(service(NAME, ip="10.96.0.1",
                                annotations={"mcdns.io/policy": LOCAL_FIRST})),
          endpoints(NAME, not_ready=["10.244.0.1"]), service_import(NAME, ips=["10.13.0.1"])],
         IMPORT, policy=LOCAL_FIRST, default_policy=LOCAL_ONLY),
    Case("kubectl-import-ready-false-condition",
         [service(NAME, ip="10.96.0.1"), endpoints(NAME, not_ready=["10.244.0.1"]),
          {**service_import(NAME, ips=["10.13.0.1"]),
           "status": {"conditions": [{"type": "Ready", "status": "False"}]}}],
         LOCAL, degraded=True),
    Case("kubectl-own-cluster-mcs-slice",
         [service(NAME, ip="10.96.0.1"), endpoints(NAME, not_ready=["10.244.0.1"]),
          service_import(NAME, ips=["10.13.0.1"]),
          endpoints("", mcs=NAME, cluster="east", ready=["10.244.0.1"]),
          endpoints("", mcs=NAME, cluster="west", not_ready=["10.20.0.1"])],
         LOCAL, degraded=True, cluster_id="east"),
    # ExternalName: a CNAME, never a fallback, never degraded
    Case("external-name-with-import",
         [svc(type="ExternalName", external="ext.example.com"), imp(), remote("m1", R_UP)],
         LOCAL),
]


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.name, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)]
                 if c.xfail else []) for c in CASES])
def test_decide(case: Case) -> None:
    store = store_of(case.objs)
    d = decide(store, NS, NAME, case.default_policy, case.default_min_ready, case.cluster_id)
    assert (d.choice, d.degraded) == (case.choice, case.degraded), d.reason
    assert d.policy == case.policy
    assert (d.namespace, d.name) == (NS, NAME)
    assert d.service is store.services.get((NS, NAME))
    assert d.imp is store.imports.get((NS, NAME))
    if case.local_ready is not None:
        assert d.local_ready == case.local_ready
    if case.min_ready is not None:
        assert d.min_ready == case.min_ready
    assert d.reason  # every decision says why


# ---- focused tests -----------------------------------------------------------------------


@pytest.mark.parametrize("service_policy", [None, *POLICIES])
@pytest.mark.parametrize("import_policy", [None, *POLICIES])
@pytest.mark.parametrize("default", POLICIES)
def test_policy_precedence(service_policy: str | None, import_policy: str | None,
                           default: str) -> None:
    store = store_of([svc(policy=service_policy), imp(policy=import_policy)])
    d = decide(store, NS, NAME, default, 1)
    assert d.policy == (service_policy or import_policy or default)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_value_is_accepted_from_the_annotation(policy: str) -> None:
    s = reduce(service(NAME, ip="10.96.0.1", annotations={"mcdns.io/policy": policy}))
    assert isinstance(s, Service) and s.policy == policy


def test_a_decision_is_degraded_only_for_an_answer_without_ready_backend() -> None:
    """The same store, down then up, in each place the answer comes from."""
    pairs: list[tuple[list[Slim | dict[str, Any]], list[Slim | dict[str, Any]]]] = [
        ([svc(), local(DOWN)], [svc(), local(UP)]),
        ([imp(), remote("member1", R_DOWN)], [imp(), remote("member1", R_UP)]),
        ([svc(), local(DOWN), imp(), remote("m1", R_DOWN)],
         [svc(), local(DOWN), imp(), remote("m1", R_UP)]),
    ]
    for objs_down, objs_up in pairs:
        down = decide(store_of(objs_down), NS, NAME, LOCAL_FIRST, 1)
        up = decide(store_of(objs_up), NS, NAME, LOCAL_FIRST, 1)
        assert down.degraded and not up.degraded, (down.reason, up.reason)


def test_remote_counts_pods_per_other_cluster() -> None:
    store = store_of([imp(), remote("member1", R_UP, ep("10.10.0.2")),
                      remote("member2", ep("10.20.0.1"), ep("10.20.0.2", ready=False)),
                      remote("east", ep("10.30.0.1"))])
    d = decide(store, NS, NAME, LOCAL_FIRST, 1, cluster_id="east")
    assert d.remote.ready_by_cluster == (("member1", 2), ("member2", 1))
    assert d.remote.ready == 3 and d.remote.known
    assert [s.cluster for s in d.remote.own] == ["east"]


def test_decision_follows_the_store() -> None:
    """A change of one input changes the decision (nothing is cached across calls)."""
    store = store_of([svc(), local(UP), imp(), remote("member1", R_UP)])
    assert decide(store, NS, NAME, LOCAL_FIRST, 1).choice == LOCAL
    store.upsert(local(DOWN))
    assert decide(store, NS, NAME, LOCAL_FIRST, 1).choice == IMPORT
    store.upsert(imp(ready=False))
    d = decide(store, NS, NAME, LOCAL_FIRST, 1)
    assert (d.choice, d.degraded) == (LOCAL, True)


def test_other_names_are_not_this_decision() -> None:
    store = store_of([svc(name="other"), local(UP, service="other"),
                      imp(name="other")])
    d = decide(store, NS, NAME, LOCAL_FIRST, 1)
    assert (d.choice, d.service, d.imp, d.local_ready) == (NONE, None, None, 0)

