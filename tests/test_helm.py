"""The Helm chart, linted and rendered by the real Helm library (helm-python-sdk).

Every rendered object is validated with kubernetes-validate in strict mode (unknown
fields are errors) against the newest Kubernetes version it knows. The one exception is
the prometheus-operator ServiceMonitor: a CRD has no schema in kubernetes-validate, so
that kind alone skips schema validation and gets structural assertions here instead.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate as kv  # type: ignore[import-untyped]
import pytest
import yaml

from mcdns import config as mcdns_config

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "mcdns"
RELEASE = "dns"
NAMESPACE = "mcdns-system"
KUBE_VERSION: str = kv.latest_version()
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}  # no schema in kubernetes-validate: by hand

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "metrics": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    },
    "fixed-ip": {"service": {"clusterIP": "10.96.0.53"}},
    "resolver": {
        "config": {
            "role": "resolver",
            "upstreams": ["10.0.0.10", "10.0.0.11:53"],
            "allow": ["10.0.0.0/8"],
            "cache_size": 5000,
        },
    },
    "strict-ops": {
        "podAntiAffinity": "hard",
        "priorityClassName": "system-cluster-critical",
        "podDisruptionBudget": {"enabled": False},
        "serviceAccount": {"create": False, "name": "existing"},
        "metrics": {"enabled": False},
        "topologySpread": {"enabled": False},
        "config": {"policy": "import-first", "cluster_id": "east", "ttl": 10},
    },
    "no-events": {"config": {"events": False}},
    "cidrs": {
        "config": {
            "service_cidrs": ["10.96.0.0/12", "fd00:10:96::/112"],
            "pod_cidrs": ["10.244.0.0/16"],
        },
    },
    "resolver-namespaces": {
        "config": {"role": "resolver", "upstreams": ["10.0.0.10"], "namespaces": ["shop", "web"]},
    },
    "observability": {
        "metrics": {"serviceMonitor": {"enabled": True},
                    "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
                    "dashboard": {"enabled": True, "annotations": {"grafana_folder": "DNS"}}},
    },
    # The DaemonSet instead of the Deployment (tests/test_nodelocal.py runs the mode).
    "node-local": {
        "nodeLocal": {"enabled": True, "clusterDNS": "10.96.0.10"},
        "config": {"events": False, "pod_cidrs": ["10.244.0.0/16"]},
    },
}
WORKLOADS = {"node-local": "DaemonSet"}  # every other value set: the Deployment
DEPLOYMENT_SETS = sorted(n for n in VALUE_SETS if n not in WORKLOADS)

RBAC_RULES = {
    ("", "services"),
    ("", "namespaces"),
    ("discovery.k8s.io", "endpointslices"),
    ("multicluster.x-k8s.io", "serviceimports"),
    ("about.k8s.io", "clusterproperties"),
}
# The one write: failovers recorded as Events (config.events), in any namespace.
EVENTS_RULE = {"apiGroups": ["events.k8s.io"], "resources": ["events"],
               "verbs": ["create", "patch"]}


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: Any, values: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
    return out


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a render (NOTES.txt and empty templates left out)."""
    found: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        found.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return found


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def notes(rendered: dict[str, str]) -> str:
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_strict(name: str) -> None:
    report: dict[str, Any] = helm.lint(
        CHART, VALUE_SETS[name], strict=True, namespace=NAMESPACE, kube_version=KUBE_VERSION
    )
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # Severity 1 is "info" (only "icon is recommended"); warnings and errors fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_lint_reports_bad_values() -> None:
    """The lint step can fail: a value of the wrong type is an error."""
    report: dict[str, Any] = helm.lint(CHART, {"replicaCount": "two"}, strict=True)
    assert any("replicaCount" in e for e in report["errors"])


def test_kubernetes_validate_rejects_unknown_fields(chart: Any) -> None:
    """Strict validation can fail: an unknown field in a pod spec is refused."""
    deploy = one(objects(render(chart, {})), "Deployment")
    deploy["spec"]["template"]["spec"]["dnsPolicyy"] = "Default"
    with pytest.raises(kv.ValidationError):
        kv.validate(deploy, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_render_validates_strict(chart: Any, name: str) -> None:
    objs = objects(render(chart, VALUE_SETS[name]))
    kinds = {o["kind"] for o in objs}
    assert {WORKLOADS.get(name, "Deployment"), "Service", "ConfigMap"} <= kinds
    assert len(kinds & {"Deployment", "DaemonSet"}) == 1
    for obj in objs:
        if obj["kind"] in CRD_KINDS:
            continue
        kv.validate(obj, KUBE_VERSION, strict=True)


def test_default_renders_every_object(chart: Any) -> None:
    kinds = sorted(o["kind"] for o in objects(render(chart, {})))
    assert kinds == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_clusterrole_reads_five_resources_and_only_writes_events(chart: Any,
                                                                 name: str) -> None:
    role = one(objects(render(chart, VALUE_SETS[name])), "ClusterRole")
    granted: set[tuple[str, str]] = set()
    writes = [r for r in role["rules"] if sorted(r["verbs"]) != ["get", "list", "watch"]]
    events = VALUE_SETS[name].get("config", {}).get("events", True)
    assert writes == ([EVENTS_RULE] if events else [])
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}
        if rule in writes:
            continue
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert (group, resource) not in granted, "granted twice"
                granted.add((group, resource))
    assert granted == RBAC_RULES


def test_binding_names_the_pods_service_account(chart: Any) -> None:
    objs = objects(render(chart, {}))
    binding = one(objs, "ClusterRoleBinding")
    account = one(objs, "ServiceAccount")["metadata"]["name"]
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert binding["roleRef"]["name"] == one(objs, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
    ]
    assert pod["serviceAccountName"] == account


@pytest.mark.parametrize("name", DEPLOYMENT_SETS)  # node-local: test_node_local_pod_security
def test_pod_security(chart: Any, name: str) -> None:
    pod = one(objects(render(chart, VALUE_SETS[name])), "Deployment")["spec"]["template"]["spec"]
    assert pod["dnsPolicy"] == "Default"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] != 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in sc and "hostNetwork" not in pod


def test_deployment_shape(chart: Any) -> None:
    deploy = one(objects(render(chart, {})), "Deployment")
    spec = deploy["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 2
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    ports = {p["name"]: (p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert ports == {"dns": (5353, "UDP"), "dns-tcp": (5353, "TCP"), "http": (9153, "TCP")}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["args"] == ["serve", "--config", "/etc/mcdns/mcdns.yaml"]
    # the Events' reportingInstance
    assert container["env"] == [{"name": "POD_NAME", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name"}}}]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/etc/mcdns"] == "config"


def test_hard_anti_affinity_and_options(chart: Any) -> None:
    objs = objects(render(chart, VALUE_SETS["strict-ops"]))
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["serviceAccountName"] == "existing"
    assert "topologySpreadConstraints" not in pod
    assert not by_kind(objs, "PodDisruptionBudget")
    assert not by_kind(objs, "ServiceAccount")
    ports = one(objs, "Service")["spec"]["ports"]
    assert [p["name"] for p in ports] == ["dns", "dns-tcp"]


def test_pdb_keeps_one_pod_up(chart: Any) -> None:
    objs = objects(render(chart, {}))
    pdb = one(objs, "PodDisruptionBudget")
    pod_labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_service_maps_53_to_5353(chart: Any) -> None:
    objs = objects(render(chart, {}))
    svc = one(objs, "Service")["spec"]
    ports = {(p["name"], p["port"], p["protocol"], p["targetPort"]) for p in svc["ports"]}
    assert ports == {
        ("dns", 53, "UDP", "dns"),
        ("dns-tcp", 53, "TCP", "dns-tcp"),
        ("metrics", 9153, "TCP", "http"),
    }
    assert "clusterIP" not in svc
    pod_labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["selector"].items() <= pod_labels.items()


def test_fixed_cluster_ip_reaches_service_and_notes(chart: Any) -> None:
    rendered = render(chart, VALUE_SETS["fixed-ip"])
    assert one(objects(rendered), "Service")["spec"]["clusterIP"] == "10.96.0.53"
    text = notes(rendered)
    # mcdns first, then the loopback fallback block (tests/test_corefile.py checks it)
    assert "forward . 10.96.0.53:53 127.0.0.1:5301 {" in text
    assert "MCDNS_IP" not in text


def test_service_monitor(chart: Any) -> None:
    objs = objects(render(chart, VALUE_SETS["metrics"]))
    monitor = one(objs, "ServiceMonitor")
    svc = one(objs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert not by_kind(objects(render(chart, {})), "ServiceMonitor")


RULE_KEYS = {"alert", "expr", "for", "labels", "annotations"}


def test_prometheus_rule_is_the_rules_file(chart: Any) -> None:
    """The PrometheusRule carries files/mcdns-rules.yaml, its job="mcdns" made the job
    prometheus-operator gives the ServiceMonitor's targets: the Service's name."""
    objs = objects(render(chart, VALUE_SETS["observability"]))
    rule = one(objs, "PrometheusRule")
    svc = one(objs, "Service")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "prom"
    assert set(rule["spec"]) == {"groups"}
    source = (CHART / "files" / "mcdns-rules.yaml").read_text(encoding="utf-8")
    job = svc["metadata"]["name"]
    expected = yaml.safe_load(source.replace('job="mcdns"', f'job="{job}"'))["groups"]
    assert rule["spec"]["groups"] == expected
    for group in rule["spec"]["groups"]:
        assert set(group) == {"name", "rules"}
        for r in group["rules"]:
            assert set(r) <= RULE_KEYS and {"alert", "expr", "labels", "annotations"} <= set(r)
            assert r["labels"]["severity"] in {"critical", "warning"}
            assert {"summary", "description", "runbook_url"} <= set(r["annotations"])
            assert re.fullmatch(r"[0-9]+[smh]", r.get("for", "0m"))
            assert "mcdns" not in re.findall(r'job="([^"]*)"', r["expr"])
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    assert f'up{{job="{job}"}}' in exprs
    custom = {"metrics": {"prometheusRule": {"enabled": True, "job": "kube-dns"}}}
    exprs = str(one(objects(render(chart, custom)), "PrometheusRule")["spec"])
    assert 'up{job="kube-dns"}' in exprs and job not in exprs
    assert not by_kind(objects(render(chart, {})), "PrometheusRule")


def test_dashboard_configmap_is_the_dashboard(chart: Any) -> None:
    objs = objects(render(chart, VALUE_SETS["observability"]))
    (cm,) = [o for o in by_kind(objs, "ConfigMap") if "mcdns.yaml" not in o["data"]]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "DNS"}
    assert list(cm["data"]) == ["mcdns-dashboard.json"]
    source = (CHART / "files" / "mcdns-dashboard.json").read_text(encoding="utf-8")
    assert json.loads(cm["data"]["mcdns-dashboard.json"]) == json.loads(source)
    assert len(by_kind(objects(render(chart, {})), "ConfigMap")) == 1


def config_text(chart: Any, values: dict[str, Any]) -> str:
    (config,) = [o for o in by_kind(objects(render(chart, values)), "ConfigMap")
                 if "mcdns.yaml" in o["data"]]  # (the dashboard has one of its own)
    text: str = config["data"]["mcdns.yaml"]
    return text


MCDNS = Path(sys.executable).parent / "mcdns"


def check_config(path: Path) -> None:
    """Validate with mcdns's own ``mcdns check-config FILE`` (exit 0, or the error)."""
    done = subprocess.run(
        [str(MCDNS), "check-config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_configmap_passes_check_config(chart: Any, name: str, tmp_path: Path) -> None:
    text = config_text(chart, VALUE_SETS[name])
    path = tmp_path / "mcdns.yaml"
    path.write_text(text, encoding="utf-8")
    check_config(path)
    cfg = mcdns_config.load(path)
    assert [str(a) for a in cfg.listen] == ["0.0.0.0:5353"]
    assert str(cfg.http) == "0.0.0.0:9153"
    assert cfg.role == VALUE_SETS[name].get("config", {}).get("role", "stub")


def test_configmap_writes_the_cidrs(chart: Any, tmp_path: Path) -> None:
    """config.service_cidrs and config.pod_cidrs reach mcdns; by default none (mcdns
    then claims no reverse zone), and the deprecated reverse_zones is not written."""
    default = yaml.safe_load(config_text(chart, {}))
    assert default["service_cidrs"] == [] and default["pod_cidrs"] == []
    assert "reverse_zones" not in default
    path = tmp_path / "mcdns.yaml"
    path.write_text(config_text(chart, VALUE_SETS["cidrs"]), encoding="utf-8")
    cfg = mcdns_config.load(path)
    assert cfg.service_cidrs == ("10.96.0.0/12", "fd00:10:96::/112")
    assert cfg.pod_cidrs == ("10.244.0.0/16",)


def test_schema_rejects_a_cidr_without_prefix(chart: Any) -> None:
    with pytest.raises(helm.HelmError):
        render(chart, {"config": {"service_cidrs": ["10.96.0.0"]}})
    with pytest.raises(helm.HelmError):
        render(chart, {"config": {"pod_cidrs": "10.244.0.0/16"}})


@pytest.mark.parametrize("values", [
    {"config": {"namespaces": ["shop"]}},
    {"config": {"role": "stub", "namespaces": ["shop", "web"]}},
], ids=["default-role", "role-stub"])
def test_stub_role_with_namespaces_fails_the_render(chart: Any, values: dict[str, Any]) -> None:
    """Behind CoreDNS every namespace's names reach mcdns: a namespace filter would make
    the others NXDOMAIN, so the chart refuses it (mcdns refuses it too)."""
    with pytest.raises(helm.HelmError, match=r"config\.namespaces is for role resolver only"):
        render(chart, values)


def test_values_comment_says_namespaces_is_resolver_only() -> None:
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("namespaces:"))
    comment = " ".join(line.strip() for line in lines[at - 4:at])
    assert "Resolver role only" in comment and "role stub" in comment


def test_check_config_rejects_a_bad_file(tmp_path: Path) -> None:
    """The validation step above can fail: a wrong value is refused."""
    path = tmp_path / "mcdns.yaml"
    path.write_text("ttl: 99999\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="ttl"):
        check_config(path)


def checksum(chart: Any, values: dict[str, Any]) -> str:
    deploy = one(objects(render(chart, values)), "Deployment")
    value: str = deploy["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    return value


def test_checksum_follows_config(chart: Any) -> None:
    base = checksum(chart, {})
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum(chart, {"config": {"ttl": 30}}) != base
    assert checksum(chart, {"containerPorts": {"dns": 5300, "http": 9153}}) != base
    # Values outside the config do not roll the pods.
    assert checksum(chart, {"replicaCount": 3}) == base


def test_schema_rejects_unknown_config_key(chart: Any) -> None:
    with pytest.raises(helm.HelmError):
        render(chart, {"config": {"ttll": 5}})
    with pytest.raises(helm.HelmError):
        render(chart, {"config": {"ttl": 99999}})


def test_schema_covers_every_config_key() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    props = set(schema["properties"]["config"]["properties"])
    # listen and http are the chart's (from containerPorts), not the user's.
    assert props == set(mcdns_config.KEYS) - {"listen", "http"}


def test_defaults_are_valid_config_values(chart: Any) -> None:
    mcdns_config.build(chart.values["config"])


def test_values_yaml_comments_every_key() -> None:
    """Every key in values.yaml has a comment line right above it."""
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    missing: list[str] = []
    previous = ""
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if re.match(r"^[A-Za-z_][\w./-]*:", stripped) and not previous.startswith("#"):
            missing.append(stripped)
        previous = stripped
    assert missing == []


# The other way to deploy: the sidecar examples (the Corefile: tests/test_corefile.py).
# deployment.yaml is the light sidecar (role forwarder: no watch, no token, no RBAC);
# watching-resolver.yaml the resolver with its own watch (and the chart's RBAC).

SIDECAR = ROOT / "config" / "sidecar" / "deployment.yaml"
WATCHING = ROOT / "config" / "sidecar" / "watching-resolver.yaml"


def sidecar_objects(path: Path = SIDECAR) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc]


# The light sidecar needs no ServiceAccount, ClusterRole or binding (it reads nothing
# from the API); the watching one keeps all five kinds. Both validate strictly.
@pytest.mark.parametrize(("path", "kinds"), [
    (SIDECAR, {"ConfigMap", "Deployment"}),
    (WATCHING, {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
                "Deployment"}),
])
def test_sidecar_manifests_validate_strict(path: Path, kinds: set[str]) -> None:
    objs = sidecar_objects(path)
    assert {o["kind"] for o in objs} == kinds
    for obj in objs:
        kv.validate(obj, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(("path", "role"), [(SIDECAR, "forwarder"), (WATCHING, "resolver")])
def test_sidecar_pod_resolves_through_mcdns(tmp_path: Path, path: Path, role: str) -> None:
    objs = sidecar_objects(path)
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["dnsPolicy"] == "None"
    assert pod["dnsConfig"]["nameservers"] == ["127.0.0.1"]
    assert pod["dnsConfig"]["searches"][1:] == ["svc.cluster.local", "cluster.local"]
    (sidecar,) = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["args"] == ["serve", "--config", "/etc/mcdns/mcdns.yaml"]
    assert sidecar["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    cfg_path = tmp_path / "mcdns.yaml"
    cfg_path.write_text(one(objs, "ConfigMap")["data"]["mcdns.yaml"], encoding="utf-8")
    check_config(cfg_path)
    cfg = mcdns_config.load(cfg_path)  # the role is in the file: check-config saw it
    assert cfg.role == role
    assert [str(a) for a in cfg.listen] == ["127.0.0.1:53"]
    assert cfg.upstreams, "a sidecar cannot use the pod's resolv.conf (it names mcdns)"
    assert cfg.autopath and not cfg.search, "autopath reads the pod's own search line"
    if role == "resolver":  # the watch needs the ServiceAccount's token
        assert pod["serviceAccountName"] == one(objs, "ServiceAccount")["metadata"]["name"]
        return
    # The light sidecar: no token in the pod, nothing to read it with, and (with no
    # HTTP port, to keep aiohttp out of its memory) a startup probe over DNS.
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert cfg.cluster_upstreams and cfg.http is None
    assert cfg.service_cidrs and cfg.pod_cidrs, "their reverse zones go to the central mcdns"
    assert sidecar["startupProbe"]["exec"]["command"] == [
        "mcdns", "explain", "version.bind", "--server", "127.0.0.1:53"]


def test_sidecar_rbac_matches_chart(chart: Any) -> None:
    """The watching sidecar reads what the chart reads; it records no Events (many pods
    would record one failover many times), so it has the chart's role without them. The
    light sidecar (deployment.yaml) reads nothing: no RBAC at all."""
    chart_role = one(objects(render(chart, VALUE_SETS["no-events"])), "ClusterRole")
    sidecar_role = one(sidecar_objects(WATCHING), "ClusterRole")
    text = one(sidecar_objects(WATCHING), "ConfigMap")["data"]["mcdns.yaml"]
    assert yaml.safe_load(text)["events"] is False
    assert sidecar_role["rules"] == chart_role["rules"]
    binding = one(sidecar_objects(WATCHING), "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == sidecar_role["metadata"]["name"]
    light = {o["kind"] for o in sidecar_objects(SIDECAR)}
    assert not light & {"ServiceAccount", "Role", "RoleBinding", "ClusterRole",
                        "ClusterRoleBinding"}


# Node-local mode (nodeLocal.enabled, docs/node-local.md): a DaemonSet on the host
# network instead of the Deployment, as NodeLocal DNSCache runs.

NODE_LOCAL = VALUE_SETS["node-local"]
# Ports already taken on a node: NodeLocal DNSCache (9253 metrics, 8080 health),
# node-exporter, CoreDNS's metrics, the kubelet and kube-proxy.
NODE_PORTS = {9253, 8080, 9100, 9153, *range(10248, 10257)}


def node_local_pod(chart: Any, values: dict[str, Any] = NODE_LOCAL) -> dict[str, Any]:
    pod: dict[str, Any] = one(objects(render(chart, values)), "DaemonSet")["spec"]["template"]
    return pod["spec"]


def test_node_local_daemonset_shape(chart: Any) -> None:
    objs = objects(render(chart, NODE_LOCAL))
    assert not by_kind(objs, "Deployment") and not by_kind(objs, "HorizontalPodAutoscaler")
    ds = one(objs, "DaemonSet")
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": "10%"}}
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "Default"
    assert pod["priorityClassName"] == "system-node-critical"
    # every node, as NodeLocal's DaemonSet: every NoSchedule and NoExecute taint
    assert {"effect": "NoSchedule", "operator": "Exists"} in pod["tolerations"]
    assert {"effect": "NoExecute", "operator": "Exists"} in pod["tolerations"]
    (init,) = pod["initContainers"]
    assert init["args"] == ["setup-interface", "--address", "169.254.20.10",
                            "--interface", "mcdns0"]
    (container,) = pod["containers"]
    ports = {p["name"]: (p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert ports == {"dns-local": (53, "UDP"), "dns-local-tcp": (53, "TCP"),
                     "http": (9254, "TCP")}
    assert 9254 not in NODE_PORTS
    # liveness through the node-local address (a node that lost it restarts mcdns)
    assert container["livenessProbe"]["httpGet"] == {
        "host": "169.254.20.10", "path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["resources"]["requests"]["cpu"] == "25m"
    config = ds["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert re.fullmatch(r"[0-9a-f]{64}", config)


def test_node_local_pod_security(chart: Any) -> None:
    """NET_ADMIN only in the init container that puts the address on the interface,
    NET_BIND_SERVICE only in the server (port 53); nothing else, read-only, no
    escalation. Both are uid 0, as NodeLocal's: capabilities.add reaches a non-root
    process only on some container runtimes."""
    pod = node_local_pod(chart)
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    (init,) = pod["initContainers"]
    (server,) = pod["containers"]
    for container, cap in ((init, "NET_ADMIN"), (server, "NET_BIND_SERVICE")):
        sc = container["securityContext"]
        assert sc["capabilities"] == {"drop": ["ALL"], "add": [cap]}, container["name"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert sc["runAsUser"] == 0 and "privileged" not in sc
    assert pod["automountServiceAccountToken"] is True  # the watch


def test_node_local_effective_config(chart: Any, tmp_path: Path) -> None:
    """The ConfigMap with the DaemonSet's arguments over it (as `mcdns serve` reads
    them): role resolver on the link-local address, other names to the cluster DNS over
    TCP, pods allowed by their CIDR, no Events."""
    from mcdns import cli

    (server,) = node_local_pod(chart)["containers"]
    args = cli.parser().parse_args(server["args"])
    path = tmp_path / "mcdns.yaml"
    path.write_text(config_text(chart, NODE_LOCAL), encoding="utf-8")
    check_config(path)
    assert args.config == "/etc/mcdns/mcdns.yaml"
    cfg = mcdns_config.load(path, cli.overrides(args))
    assert cfg.role == "resolver"
    assert [str(a) for a in cfg.listen] == ["169.254.20.10:53"]
    assert str(cfg.http) == "0.0.0.0:9254"
    assert [str(u) for u in cfg.upstreams] == ["10.96.0.10:53"] and cfg.upstream_tcp
    assert cfg.allow == ("10.244.0.0/16", "127.0.0.0/8", "::1/128", "169.254.20.10/32")
    assert cfg.events is False and cfg.kubeconfig is None and cfg.state is None


def test_node_local_ipv6_and_own_allow(chart: Any) -> None:
    values = {"nodeLocal": {"enabled": True, "address": "fd00:10::a", "clusterDNS": "fd00::10",
                            "upstreamTCP": False},
              "config": {"events": False, "allow": ["fd00:244::/56"]}}
    pod = node_local_pod(chart, values)
    (server,) = pod["containers"]
    args = server["args"]
    assert args[args.index("--listen") + 1] == "[fd00:10::a]:53"
    assert args[args.index("--http") + 1] == "[::]:9254"
    assert args[args.index("--upstream-tcp") + 1] == "false"
    assert "--allow" not in args  # config.allow, from the ConfigMap, is the user's
    assert pod["initContainers"][0]["args"][2] == "fd00:10::a"
    for obj in objects(render(chart, values)):
        if obj["kind"] not in CRD_KINDS:
            kv.validate(obj, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(("values", "problem"), [
    ({"nodeLocal": {"enabled": True}, "config": {"events": False, "pod_cidrs": ["10.0.0.0/8"]}},
     r"nodeLocal\.clusterDNS is required"),
    ({"nodeLocal": {"enabled": True, "clusterDNS": "169.254.20.10"},
      "config": {"events": False, "pod_cidrs": ["10.0.0.0/8"]}}, "forward to itself"),
    ({"nodeLocal": {"enabled": True, "clusterDNS": "10.96.0.10"}, "config": {"events": False}},
     r"config\.pod_cidrs \(or config\.allow\)"),
    ({"nodeLocal": {"enabled": True, "clusterDNS": "10.96.0.10"},
      "config": {"pod_cidrs": ["10.0.0.0/8"]}}, r"config\.events=false"),
    ({**NODE_LOCAL, "hpa": {"enabled": True}}, r"hpa\.enabled=false"),
    ({"nodeLocal": {"enabled": True, "interface": "eth0:1"}}, "interface"),
], ids=["no-cluster-dns", "self", "no-allow", "events", "hpa", "bad-interface"])
def test_node_local_needs_what_it_cannot_guess(chart: Any, values: dict[str, Any],
                                                problem: str) -> None:
    with pytest.raises(helm.HelmError, match=problem):
        render(chart, values)


def test_node_local_service_carries_only_metrics(chart: Any) -> None:
    """DNS is on each node's link-local address: the release's Service names DNS target
    ports no node-local pod has (so it gets no DNS endpoints), and its metrics port
    reaches the pods' HTTP port, for the ServiceMonitor."""
    objs = objects(render(chart, {**NODE_LOCAL, "metrics": {"serviceMonitor": {
        "enabled": True}}}))
    pod_ports = {p["name"] for c in one(objs, "DaemonSet")["spec"]["template"]["spec"][
        "containers"] for p in c["ports"]}
    targets = {p["name"]: p["targetPort"] for p in one(objs, "Service")["spec"]["ports"]}
    assert targets["metrics"] in pod_ports
    assert not {targets["dns"], targets["dns-tcp"]} & pod_ports
    assert one(objs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics"


def test_node_local_notes_point_kubelet_at_the_address(chart: Any) -> None:
    text = notes(render(chart, NODE_LOCAL))
    assert "clusterDNS:\n    - 169.254.20.10" in text and "--cluster-dns=169.254.20.10" in text
    assert "rollout status daemonset/dns-mcdns" in text and "over TCP" in text
    assert "forward ." not in text and "Corefile" not in text  # CoreDNS is not rewired
