"""Strict state files: every object is checked against the real schema of its kind.

A typo used to pass silently: ``kind: Servcie`` dropped the object while ``check-config``
said ok, ``ready: ture`` counted as ready, ``adressType`` was ignored. Now ``check-config``
and ``serve`` refuse the file with one line naming the file, the object's index and name,
and the problem (exit 2); on reload the refused object keeps its last good version, with
a log line saying why, and the rest of the file applies. The vendored schemas are the
real ones: Kubernetes' (compared here with kubernetes-validate's copy) and the
multi-cluster projects' CRDs (each citing its source).

Run this file as a script to regenerate ``mcdns/state/schemas/kubernetes-<version>.json``
from the installed kubernetes-validate: ``python tests/test_statefile_strict.py``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from importlib import resources
from importlib.metadata import version
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import kubernetes_validate
import pytest
import yaml
from conftest import DATA, DEMO_STATE, ROOT, start_mcdns
from statebuild import Obj, endpoints, namespace, service, service_import, write

from mcdns.state import validate
from mcdns.state.statefile import (
    CHILD_PARSE_BYTES,
    SOURCE,
    StateError,
    StateFileSource,
    check,
    load_into,
    read_objects,
)
from mcdns.state.store import Store

sys.path.insert(0, str(ROOT))
from bench import gen

MCDNS = [sys.executable, "-m", "mcdns"]
WEB = "web.default.svc.cluster.local."
SERVE = "serve.default.svc.cluster.local."
FRESH = "fresh.default.svc.cluster.local."
SCHEMAS = ROOT / "mcdns" / "state" / "schemas"


def cluster() -> list[Obj]:
    """web: healthy, answers its ClusterIP; serve: no ready pod, answers its import."""
    return [
        namespace("default"),
        service("web", ip="10.96.0.10"),
        endpoints("web", ready=["10.244.0.10"], not_ready=["10.244.0.11"]),
        service("serve", ip="10.96.0.20"),
        endpoints("serve", not_ready=["10.244.0.20"]),
        service_import("serve", ips=["10.13.0.20"]),
    ]


def _kind_typo(objs: list[Obj]) -> None:
    objs[1]["kind"] = "Servcie"


def _ready_typo(objs: list[Obj]) -> None:  # serve's pod was not ready; "true" was meant
    objs[4]["endpoints"][0]["conditions"]["ready"] = "ture"


def _address_type_typo(objs: list[Obj]) -> None:
    objs[2]["adressType"] = objs[2].pop("addressType")


def _port_name_as_port(objs: list[Obj]) -> None:
    objs[1]["spec"]["ports"][0]["port"] = "http"


def _unknown_kind(objs: list[Obj]) -> None:
    objs.append({"apiVersion": "example.com/v1", "kind": "Widget",
                 "metadata": {"name": "gadget", "namespace": "default"}})


# case: (mutation of cluster(), "object N (Kind ns/name): problem" it is refused with)
TYPOS: dict[str, tuple[Callable[[list[Obj]], None], str]] = {
    "kind: Servcie": (_kind_typo, "object 2 (Servcie default/web): unknown kind 'Servcie' "
                                  "in v1 (did you mean Service?)"),
    "ready: ture": (_ready_typo, "object 5 (EndpointSlice default/serve-local-ipv4): "
                                 "endpoints[0].conditions.ready: 'ture' is not of type "
                                 "'boolean'"),
    "adressType": (_address_type_typo, "object 3 (EndpointSlice default/web-local-ipv4): "
                                       "adressType: unknown field (did you mean "
                                       "addressType?)"),
    "port: http": (_port_name_as_port, "object 2 (Service default/web): spec.ports[0].port: "
                                       "'http' is not of type 'integer'"),
    "unknown kind": (_unknown_kind, "object 7 (Widget default/gadget): unknown kind "
                                    "'Widget' in example.com/v1, an API group mcdns does not "
                                    "know"),
}


def with_typo(case: str, extra: list[Obj] | None = None) -> list[Obj]:
    objs = cluster()
    TYPOS[case][0](objs)
    return objs + (extra or [])


def error_lines(r: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr without the info lines logged before the failure."""
    return [ln for ln in r.stderr.splitlines() if "level=info" not in ln]


# ---- check-config and serve refuse each typo: one line, file + index + name, exit 2 ------

@pytest.mark.parametrize("case", list(TYPOS))
def test_check_config_and_serve_refuse_the_typo_naming_file_index_and_name(
        tmp_path: Path, case: str) -> None:
    state = write(tmp_path / "state.yaml", with_typo(case))
    if case == "ready: ture":  # as a user types it: a plain scalar, not a quoted string
        assert "ready: ture\n" in state.read_text()
    want = [f"mcdns: error: {state}: {TYPOS[case][1]}"]
    config = tmp_path / "mcdns.yaml"
    config.write_text("ttl: 5\n")
    r = subprocess.run([*MCDNS, "check-config", str(config), "--state", str(state)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (r.returncode, error_lines(r), r.stdout) == (2, want, "")
    r = subprocess.run([*MCDNS, "serve", "--state", str(state), "--listen", "127.0.0.1:0",
                        "--http", ""], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (r.returncode, error_lines(r)) == (2, want)


def test_every_refused_object_is_counted_in_the_one_line(tmp_path: Path) -> None:
    objs = cluster()
    for case in ("kind: Servcie", "ready: ture", "unknown kind"):
        TYPOS[case][0](objs)
    path = write(tmp_path / "state.yaml", objs)
    with pytest.raises(StateError) as e:
        check(read_objects(path))
    assert str(e.value) == f"{path}: {TYPOS['kind: Servcie'][1]} (and 2 more objects refused)"


def test_a_reducer_problem_at_start_up_names_the_file_and_index_too(tmp_path: Path) -> None:
    """A problem only mcdns's reducer sees (the schema says "string" for an IP) is named
    by file and index as well, as schema problems are."""
    path = write(tmp_path / "state.yaml", [*cluster(), service("broken", ip="10.96.0.300")])
    r = subprocess.run([*MCDNS, "serve", "--state", str(path), "--listen", "127.0.0.1:0",
                        "--http", ""], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2
    assert error_lines(r) == [f"mcdns: error: {path}: object 7: Service default/broken: "
                              "spec.clusterIPs: '10.96.0.300' is not an IP address"]


# ---- reload: a refused object keeps its last good version, the rest applies --------------

def answers(port: int) -> dict[str, list[str]]:
    out = {}
    for name in (WEB, SERVE, FRESH):
        msg = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port,
                            timeout=3)
        out[name] = sorted(r.address for rrset in msg.answer for r in rrset)
    return out


def log_lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The server's log lines as they come (read on a thread: the pipe never fills)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def read_until(lines: queue.Queue[str], want: str, seconds: float = 10) -> list[str]:
    """The log lines up to the first that holds ``want``."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.1))
        except queue.Empty:
            continue
        if want in seen[-1]:
            return seen
    raise AssertionError(f"no log line with {want!r} in {seconds}s: {seen}")


def replace(path: Path, objs: list[Obj]) -> None:
    write(path.with_suffix(".tmp"), objs).replace(path)


def test_reload_with_a_typo_keeps_the_last_good_answers_and_logs_why(tmp_path: Path) -> None:
    path = write(tmp_path / "state.yaml", cluster())
    proc, port, _ = start_mcdns("--state", str(path), "--http", "")
    logs = log_lines(proc)
    try:
        good = {WEB: ["10.96.0.10"], SERVE: ["10.13.0.20"], FRESH: []}
        assert answers(port) == good
        fresh = service("fresh", ip="10.96.0.30")  # a good change beside the typo
        for case, (_, refused) in TYPOS.items():
            replace(path, with_typo(case, [fresh]))
            lines = read_until(logs, "state file reloaded")
            why = [ln for ln in lines if refused in ln]
            assert len(why) == 1, (case, lines)
            stays = "skipping" if case == "unknown kind" else "keeping the last good"
            assert f"state file: {stays}" in why[0] and str(path) in why[0], why[0]
            assert answers(port) == {**good, FRESH: ["10.96.0.30"]}, case
        replace(path, cluster())  # fixed: fresh goes, the rest stays as it was
        read_until(logs, "state file reloaded")
        assert answers(port) == good
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_a_file_problem_on_reload_keeps_the_whole_last_good_state(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A List with a typo is not one bad object: nothing of the file is used."""
    path = write(tmp_path / "state.yaml", cluster())
    store = Store((SOURCE,))
    source = StateFileSource(path, store)
    source.load()
    before = (dict(store.services), dict(store.slices), dict(store.imports))
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "itmes": []}))
    with caplog.at_level(logging.ERROR, logger="mcdns.state"):
        assert source.reload() is False
    assert (dict(store.services), dict(store.slices), dict(store.imports)) == before
    assert f"keeping the last good state: {path}: document 1: List: itmes: unknown" in (
        caplog.text)


def test_refused_namespace_and_new_objects_on_reload(tmp_path: Path) -> None:
    """A refused Namespace keeps the namespace; a refused object new to the file, or one
    of a kind mcdns does not keep, has nothing to keep and is skipped."""
    path = write(tmp_path / "state.yaml", [namespace("quiet"), *cluster()])
    store = Store((SOURCE,))
    load_into(store, path, strict=True)
    bad_ns = _set(namespace("quiet"), "spec", {"finalizer": ["kubernetes"]})
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace":
                                                           "default"}, "spek": {}}
    write(path, [bad_ns, *cluster(), _set(service("new", ip="10.96.0.99"), "spec.ip", "x"),
                 pod])
    load_into(store, path, strict=False)
    assert "quiet" in store.explicit_namespaces
    assert ("default", "new") not in store.services
    assert ("default", "web") in store.services


def test_a_big_file_parsed_in_a_child_keeps_the_last_good_version_too(tmp_path: Path) -> None:
    objs = gen.objects(gen.build(800))
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objs}))
    assert path.stat().st_size > CHILD_PARSE_BYTES
    store = Store((SOURCE,))
    load_into(store, path, strict=True)
    svc = next(o for o in objs if o["kind"] == "Service")
    key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
    good = store.services[key]
    svc["spec"]["ports"][0]["port"] = "http"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objs}))
    load_into(store, path, strict=False)
    assert store.services[key] is good


# ---- every fixture, demo state and generated state is valid Kubernetes -------------------

FIXTURES = [*sorted(DATA.rglob("*.yaml")), DEMO_STATE]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_fixture_passes_and_kubernetes_validate_agrees(path: Path) -> None:
    objs = read_objects(path)
    check(objs)
    core = [o for o in objs if isinstance(validate.known_kinds()[o["apiVersion"], o["kind"]],
                                          str)]
    for obj in core:  # the reference implementation (jsonschema) on the same objects
        kubernetes_validate.validate(obj, validate.KUBERNETES, strict=True)


def test_what_the_test_helpers_and_the_benchmark_write_is_valid() -> None:
    objs = [
        namespace("shop"),
        service("web", ip="10.96.0.1", ports=[("http", 80), ("grpc", 9090)],
                annotations={"mcdns.io/policy": "import-first"}),
        service("dual", ip=["10.96.0.2", "fd00::2"]),
        service("db"),
        service("ext", external="example.com"),
        endpoints("db", ready=["10.244.0.1"], not_ready=["10.244.0.2"],
                  hostnames={"10.244.0.1": "db-0"}, labels={"app": "db"},
                  annotations={"a": "b"}),
        endpoints("dual", ready=["fd00:244::1"], family="IPv6"),
        endpoints("web", mcs="web", cluster="c2", ready=["10.2.0.1"]),
        service_import("web", ips=["10.13.0.1"]),
        service_import("db", headless=True, version="v1beta1"),
    ]
    objs += gen.objects(gen.build(300))
    assert list(validate.problems(objs)) == []


# ---- the vendored schemas are the real ones -----------------------------------------------

def _strip_descriptions(node: Any) -> Any:
    """A schema without its descriptions; a *property* named description is kept."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "description":
            continue
        if k in ("properties", "$defs", "patternProperties") and isinstance(v, dict):
            out[k] = {n: _strip_descriptions(s) for n, s in v.items()}
        elif k in ("items", "additionalProperties", "not") and isinstance(v, dict):
            out[k] = _strip_descriptions(v)
        elif k in ("oneOf", "anyOf", "allOf") and isinstance(v, list):
            out[k] = [_strip_descriptions(s) for s in v]
        else:
            out[k] = v
    return out


def kubernetes_schema_text(k8s: str) -> str:
    """The vendored file's text for Kubernetes ``k8s`` from kubernetes-validate's strict
    schema: one definition a line, so that an upgrade reads as a diff."""
    src = f"kubernetes-json-schema/v{k8s}.0-local-strict/_definitions.json"
    raw = json.loads(resources.files("kubernetes_validate").joinpath(src).read_text())
    defs = _strip_descriptions(raw)["$defs"]
    head = {"$comment": (f"The Kubernetes {k8s} API schema: kubernetes-validate "
                         f"{version('kubernetes-validate')} (https://github.com/willthames/"
                         f"kubernetes-validate), kubernetes_validate/{src}, with every "
                         "description removed and nothing else changed. Its strict variant: "
                         "objects with properties allow no others. Regenerate with "
                         "tests/test_statefile_strict.py."),
            "kubernetes": k8s}
    items = ",\n".join(f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}"
                       for k, v in sorted(defs.items()))
    return json.dumps(head, sort_keys=True)[:-1] + ', "$defs": {\n' + items + "\n}}\n"


def test_the_vendored_kubernetes_schema_is_kubernetes_validates() -> None:
    path = SCHEMAS / f"kubernetes-{validate.KUBERNETES}.json"
    assert path.read_text() == kubernetes_schema_text(validate.KUBERNETES), (
        "regenerate it: python tests/test_statefile_strict.py")
    assert json.loads(path.read_text())["kubernetes"] == validate.KUBERNETES


def test_the_pinned_kubernetes_is_the_newest_the_reference_ships() -> None:
    """Strict checking refuses a field the pinned schema lacks, and Kubernetes only adds
    fields to a GA API: the newest schema accepts the most clusters' dumps."""
    newest = kubernetes_validate.utils.latest_version()
    assert kubernetes_validate.utils.major_minor(newest) == validate.KUBERNETES


def _keywords(node: Any, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            out.add(k)
            if k == "properties":
                for s in v.values():
                    _keywords(s, out)
            elif k in ("items", "additionalProperties"):
                _keywords(v, out)
    return out


@pytest.mark.parametrize("name", validate.CRD_FILES)
def test_vendored_crds_cite_their_source_and_say_nothing_the_check_ignores(name: str) -> None:
    text = (SCHEMAS / name).read_text()
    assert text.startswith("# ") and "Source: https://github.com/" in text
    assert "at commit " in text and "License" in text
    for crd in yaml.safe_load_all(text):
        for v in crd["spec"]["versions"]:
            used = _keywords(v["schema"]["openAPIV3Schema"], set())
            assert used <= validate.CRD_KEYWORDS, (name, v["name"], used)


def test_every_vendored_kind_and_version_is_known() -> None:
    kinds = {k for k, v in validate.known_kinds().items() if not isinstance(v, str)}
    assert kinds == {(f"{group}/{v}", kind) for group, kind, versions in (
        ("multicluster.x-k8s.io", "ServiceImport", ("v1alpha1", "v1beta1")),
        ("multicluster.x-k8s.io", "ServiceExport", ("v1alpha1", "v1beta1")),
        ("about.k8s.io", "ClusterProperty", ("v1alpha1", "v1beta1")),
        ("networking.karmada.io", "MultiClusterService", ("v1alpha1",)),
    ) for v in versions}


MCS = {"apiVersion": "networking.karmada.io/v1alpha1", "kind": "MultiClusterService",
       "metadata": {"name": "web", "namespace": "default"},
       "spec": {"types": ["CrossCluster"], "ports": [{"name": "http", "port": 80}],
                "providerClusters": [{"name": "member1"}],
                "consumerClusters": [{"name": "member2"}]}}
EXPORT = {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
          "metadata": {"name": "web", "namespace": "default"},
          "status": {"conditions": [{"type": "Valid", "status": "True", "reason": "Exported",
                                     "message": "", "lastTransitionTime":
                                     "2026-01-01T00:00:00Z"}]}}
PROPERTY = {"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
            "metadata": {"name": "cluster.clusterset.k8s.io"}, "spec": {"value": "c1"}}


def _set(obj: Obj, path: str, value: Any) -> Obj:
    out = copy.deepcopy(obj)
    *head, last = path.split(".")
    node = out
    for key in head:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return out


@pytest.mark.parametrize("obj,problem", [
    (MCS, None),
    (EXPORT, None),
    (PROPERTY, None),
    (_set(MCS, "spec.typs", ["CrossCluster"]), "spec.typs: unknown field (did you mean types?)"),
    (_set(MCS, "spec.ports.0.port", "80"), "spec.ports[0].port: '80' is not of type "
                                           "'integer'"),
    (_set(EXPORT, "status.conditions.0.status", "Yes"),
     "status.conditions[0].status: 'Yes' is not one of 'True', 'False', 'Unknown'"),
    (_set(PROPERTY, "status", {"seen": True}), "status.seen: unknown field"),
    (_set(PROPERTY, "spec", {}), "spec: missing required field 'value'"),
    (_set(PROPERTY, "metadata.lables", {}), "metadata.lables: unknown field (did you mean "
                                            "labels?)"),
    (_set(service_import("x"), "spec.ipz", []), "spec.ipz: unknown field (did you mean ips?)"),
    (_set(service_import("x"), "spec.ips", ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
     "spec.ips: ['10.0.0.1', '10.0.0.2', '10.0.0.3'] must contain less than or equal to 2 "
     "items"),
    (_set(service_import("x", version="v1beta1"), "status", {"endpointSliceObjects": "Yes"}),
     "status.endpointSliceObjects: 'Yes' is not one of 'Present', 'Absent'"),
    (_set(service("x", ip="10.0.0.1"), "spec.ports.0.targetPort", [80]),
     "spec.ports[0].targetPort: [80] is not of type 'string' or 'integer'"),
    (_set(namespace("x"), "apiVersion", "v2"), "kind Namespace is not served as v2 "
                                               "(Kubernetes 1.37 and the multi-cluster CRDs "
                                               "serve it as v1)"),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
      "spec": {"containers": [{"name": "c", "image": "i"}]}}, None),
    ({"apiVersion": "v1", "metadata": {"name": "p"}}, "kind: missing"),
])
def test_the_schema_of_each_kind_is_strict(obj: Obj, problem: str | None) -> None:
    assert validate.problem(obj) == problem


# ---- bad files, not bad objects ------------------------------------------------------------

def test_a_typo_in_a_list_is_named(tmp_path: Path) -> None:
    path = tmp_path / "state.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "itmes": cluster()}))
    with pytest.raises(StateError, match=r"document 1: List: itmes: unknown field of a List "
                                         r"\(did you mean items\?\)$"):
        check(read_objects(path))


def test_an_alias_bomb_is_refused_quickly_and_fair_aliases_pass(tmp_path: Path) -> None:
    """Aliases are references: a schema check would walk every use of one. A file whose
    aliases multiply it is refused before the walk; aliases that share a port list pass."""
    lines = ["apiVersion: v1", "kind: List", "items:", "- apiVersion: v1", "  kind: Service",
             "  metadata: {name: bomb, namespace: default}",
             "  spec:", "    l0: &l0 [lol, lol, lol, lol, lol]"]
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    lines += ["    ports: *l9"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    with pytest.raises(StateError, match=r"bomb\.yaml: YAML aliases expand its \d+ bytes to "
                                         r"over \d+ values: refused unchecked"):
        check(read_objects(path))
    assert time.monotonic() - start < 2
    fair = tmp_path / "fair.yaml"
    fair.write_text("items:\n" + "".join(
        f"- apiVersion: v1\n  kind: Service\n  metadata: {{name: s{i}, namespace: default}}\n"
        f"  spec: {{clusterIP: 10.96.1.{i + 1}, ports: {'&p [{port: 80}]' if i == 0 else '*p'}}}\n"
        for i in range(3)))
    objs = read_objects(fair)
    check(objs)
    assert [o["spec"]["ports"] for o in objs] == [[{"port": 80}]] * 3


def test_the_api_path_never_loads_the_schema_engine() -> None:
    """Servers running against Kubernetes import nothing of the check: the validator
    library loads when a state file is first checked, kubernetes-validate never."""
    code = ("import sys\nimport mcdns.app, mcdns.cli, mcdns.kube.client\n"
            "print(sorted(m for m in sys.modules if m.startswith(('fastjsonschema', "
            "'kubernetes_validate', 'jsonschema'))))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=60, cwd=ROOT, env=env).stdout
    assert out.strip() == "[]"
    sources = "\n".join(p.read_text() for p in (ROOT / "mcdns").rglob("*.py"))
    assert "kubernetes_validate" not in sources


if __name__ == "__main__":
    out = SCHEMAS / f"kubernetes-{validate.KUBERNETES}.json"
    out.write_text(kubernetes_schema_text(validate.KUBERNETES))
    print(out)
