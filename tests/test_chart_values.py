"""The chart's values that coredns/helm users rely on, its safety checks, and every
`helm install`/`helm upgrade` command the README and docs show: each renders, lints and
validates strictly (real Helm, kubernetes-validate), and does what it says.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate as kv  # type: ignore[import-untyped]
import pytest
from test_helm import CHART, CRD_KINDS, KUBE_VERSION, NAMESPACE, RELEASE, objects, one, render

ROOT = Path(__file__).resolve().parent.parent

CONTAINER = {"name": "shipper", "image": "registry.example.com/shipper:1.0",
             "resources": {"requests": {"cpu": "10m"}}}
PARITY: dict[str, Any] = {
    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    "env": [{"name": "TZ", "value": "UTC"}],
    "extraVolumes": [{"name": "ca", "configMap": {"name": "ca-bundle"}}],
    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/extra", "readOnly": True}],
    "extraContainers": [CONTAINER],
    "initContainers": [{**CONTAINER, "name": "init"}],
    "topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "mcdns"}}}],
    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "node-role.kubernetes.io/infra", "operator": "Exists"}]}]}}},
    "podAnnotations": {"example.com/team": "dns"},
    "service": {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"],
                "trafficDistribution": "PreferClose"},
    "metrics": {"serviceMonitor": {
        "enabled": True, "namespace": "monitoring", "scheme": "https", "honorLabels": True,
        "tlsConfig": {"insecureSkipVerify": True},
        "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"],
                         "targetLabel": "node"}],
        "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "python_.*",
                               "action": "drop"}]}},
}
HPA: dict[str, Any] = {"hpa": {"enabled": True, "minReplicas": 3, "maxReplicas": 7}}


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def validate(objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        if obj["kind"] not in CRD_KINDS:
            kv.validate(obj, KUBE_VERSION, strict=True)


def lint(values: dict[str, Any]) -> None:
    report: dict[str, Any] = helm.lint(CHART, values, strict=True, namespace=NAMESPACE,
                                       kube_version=KUBE_VERSION)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_coredns_helm_values_reach_the_objects(chart: Any) -> None:
    lint(PARITY)
    objs = objects(render(chart, PARITY))
    validate(objs)
    deploy = one(objs, "Deployment")["spec"]
    pod = deploy["template"]["spec"]
    assert deploy["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    mcdns = pod["containers"][0]
    assert {"name": "TZ", "value": "UTC"} in mcdns["env"]
    assert mcdns["env"][0]["name"] == "POD_NAME"  # the chart's own stays
    assert {"name": "ca", "mountPath": "/etc/ssl/extra", "readOnly": True} in mcdns[
        "volumeMounts"]
    assert [c["name"] for c in pod["containers"]] == ["mcdns", "shipper"]
    assert [c["name"] for c in pod["initContainers"]] == ["init"]
    assert {"name": "ca", "configMap": {"name": "ca-bundle"}} in pod["volumes"]
    keys = [c["topologyKey"] for c in pod["topologySpreadConstraints"]]
    assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    assert pod["tolerations"] == PARITY["tolerations"]
    assert pod["affinity"] == PARITY["affinity"]  # replaces the podAntiAffinity preset
    annotations = deploy["template"]["metadata"]["annotations"]
    assert annotations["example.com/team"] == "dns" and "checksum/config" in annotations
    svc = one(objs, "Service")["spec"]
    assert svc["ipFamilyPolicy"] == "PreferDualStack"
    assert svc["ipFamilies"] == ["IPv4", "IPv6"]
    assert svc["trafficDistribution"] == "PreferClose"
    monitor = one(objs, "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["scheme"] == "https" and endpoint["honorLabels"] is True
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    assert endpoint["relabelings"] == PARITY["metrics"]["serviceMonitor"]["relabelings"]
    assert endpoint["metricRelabelings"][0]["action"] == "drop"


def test_defaults_are_safe_for_cluster_dns(chart: Any) -> None:
    objs = objects(render(chart, {}))
    deploy = one(objs, "Deployment")["spec"]
    pod = deploy["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    # Never stalls: a surge pod may have nowhere to go under hard anti-affinity.
    assert deploy["strategy"]["rollingUpdate"]["maxUnavailable"] == 1
    assert deploy["replicas"] == 2
    assert not [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]
    svc = one(objs, "Service")["spec"]
    assert "ipFamilyPolicy" not in svc and "trafficDistribution" not in svc
    assert "initContainers" not in pod and len(pod["containers"]) == 1


def test_hpa_replaces_the_fixed_replica_count(chart: Any) -> None:
    lint(HPA)
    objs = objects(render(chart, HPA))
    validate(objs)
    assert "replicas" not in one(objs, "Deployment")["spec"]
    hpa = one(objs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == one(objs, "Deployment")["metadata"]["name"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 7)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


@pytest.mark.parametrize(("values", "message"), [
    ({"config": {"lameduck": 30}, "terminationGracePeriodSeconds": 30},
     "config.lameduck (30s) must be shorter than terminationGracePeriodSeconds (30s)"),
    ({"config": {"lameduck": 45}},
     "config.lameduck (45s) must be shorter than terminationGracePeriodSeconds (30s)"),
    ({"hpa": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}},
     "hpa.maxReplicas must be at least hpa.minReplicas"),
])
def test_impossible_combinations_fail_the_render(chart: Any, values: dict[str, Any],
                                                 message: str) -> None:
    with pytest.raises(Exception, match=re.escape(message)):
        render(chart, values)


def test_cluster_scoped_names_are_unique_per_namespace(chart: Any) -> None:
    def names(namespace: str) -> set[str]:
        out = chart.render(values={}, name=RELEASE, namespace=namespace)
        return {o["metadata"]["name"] for o in objects(out)
                if o["kind"] in ("ClusterRole", "ClusterRoleBinding")}

    a, b = names("team-a"), names("team-b")
    assert len(a) == 1 and len(b) == 1 and a.isdisjoint(b)
    binding = one(objects(render(chart, {})), "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(objects(render(chart, {})),
                                             "ClusterRole")["metadata"]["name"]
    assert binding["metadata"]["name"].startswith(f"{NAMESPACE}-")


def _set(values: dict[str, Any], path: str, raw: str) -> None:
    """``helm --set path=raw`` (dotted keys, {a,b} lists, true/false/ints)."""
    value: Any = raw
    if raw.startswith("{") and raw.endswith("}"):
        value = [v for v in raw[1:-1].split(",") if v]
    elif raw in ("true", "false"):
        value = raw == "true"
    elif re.fullmatch(r"-?\d+", raw):
        value = int(raw)
    *parents, leaf = path.split(".")
    node = values
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def documented_installs() -> list[tuple[str, dict[str, Any]]]:
    """Every `helm install|upgrade ... ./helm/mcdns ...` in the README and docs/."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
                 ROOT / "config" / "coredns" / "README.md"]:
        text = path.read_text(encoding="utf-8").replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("#", 1)[0] if " #" in line else line
            if not re.match(r"\s*helm (install|upgrade)\b", line) or "helm/mcdns" not in line:
                continue
            words = shlex.split(line)
            values: dict[str, Any] = {}
            for i, word in enumerate(words):
                if word == "--set":
                    key, _, raw = words[i + 1].partition("=")
                    _set(values, key, raw)
            found.append((f"{path.relative_to(ROOT)}: {line.strip()[:60]}", values))
    return found


def test_the_readme_shows_an_install() -> None:
    assert any("README.md" in where for where, _ in documented_installs())


@pytest.mark.parametrize(("where", "values"), documented_installs(),
                         ids=[w for w, _ in documented_installs()])
def test_every_documented_install_renders_and_validates(chart: Any, where: str,
                                                        values: dict[str, Any]) -> None:
    lint(values)
    objs = objects(render(chart, values))
    validate(objs)
    assert {o["kind"] for o in objs} & {"Deployment", "DaemonSet"}
