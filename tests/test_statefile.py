"""The state file source: formats, live reload, bad files on reload."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dns.rcode
import pytest
import yaml
from conftest import DEMO_STATE, Running, make_config, running
from statebuild import endpoints, namespace, service, service_import, write

from mcdns.state.statefile import StateError, read_objects

SERVE = "serve.default.svc.cluster.local."


def cluster(ready: bool) -> list[dict[str, object]]:
    return [
        namespace("default"),
        service("serve", ip="10.96.10.10"),
        endpoints("serve", ready=["10.244.1.12"] if ready else [],
                  not_ready=[] if ready else ["10.244.1.12"]),
        service_import("serve", ips=["10.13.187.164"]),
    ]


def answer(srv: Running, name: str = SERVE) -> list[str]:
    msg = srv.query(name, "A")
    return sorted(r.address for rrset in msg.answer for r in rrset)


def wait_for(srv: Running, want: list[str], seconds: float, name: str = SERVE) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if answer(srv, name) == want:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"answer {answer(srv, name)} != {want} after {seconds}s")


def replace_file(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_live_reload_flips_serve_back_to_local_within_a_second(tmp_path: Path) -> None:
    path = write(tmp_path / "state.yaml", cluster(ready=False))
    with running(make_config(state=str(path))) as srv:
        assert answer(srv) == ["10.13.187.164"]
        write(path, cluster(ready=True))
        took = wait_for(srv, ["10.96.10.10"], 1.0)
        assert took < 1.0
        write(path, cluster(ready=False))
        wait_for(srv, ["10.13.187.164"], 1.0)


def test_broken_file_on_reload_keeps_last_good_state(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "state.yaml", cluster(ready=False))
    with running(make_config(state=str(path))) as srv:
        replace_file(path, "items: [this is: not: yaml")
        deadline = time.monotonic() + 3
        src = srv.app.state_source
        assert src is not None
        while src.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert src.failures == 1
        assert answer(srv) == ["10.13.187.164"]
        assert "keeping the last good state" in caplog.text
        write(path, cluster(ready=True))
        wait_for(srv, ["10.96.10.10"], 1.0)


def test_one_bad_object_on_reload_is_skipped_alone(tmp_path: Path) -> None:
    path = write(tmp_path / "state.yaml", cluster(ready=False))
    with running(make_config(state=str(path))) as srv:
        bad = service("broken", ip="not-an-ip")
        write(path, [*cluster(ready=True), bad, service("other", ip="10.96.0.77")])
        wait_for(srv, ["10.96.10.10"], 1.0)
        assert answer(srv, "other.default.svc.cluster.local.") == ["10.96.0.77"]
        msg = srv.query("broken.default.svc.cluster.local.", "A")
        assert msg.rcode() == dns.rcode.NXDOMAIN


def test_deleted_objects_disappear_on_reload(tmp_path: Path) -> None:
    path = write(tmp_path / "state.yaml", cluster(ready=False))
    with running(make_config(state=str(path))) as srv:
        write(path, cluster(ready=False)[:3])  # the ServiceImport is gone
        wait_for(srv, ["10.96.10.10"], 1.0)
        msg = srv.query("serve.default.svc.clusterset.local.", "A")
        assert msg.rcode() == dns.rcode.NXDOMAIN


def test_formats_multidoc_list_and_json(tmp_path: Path) -> None:
    objs = cluster(ready=True)
    multi = tmp_path / "multi.yaml"
    multi.write_text(yaml.safe_dump_all(objs))
    as_json = tmp_path / "state.json"
    as_json.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
    nested = tmp_path / "nested.yaml"
    nested.write_text(yaml.safe_dump_all([{"kind": "List", "items": objs[:2]}, *objs[2:]]))
    for path in (multi, as_json, nested):
        assert [o["kind"] for o in read_objects(path)] == [o["kind"] for o in objs]


def test_without_namespace_objects_namespaces_come_from_objects(tmp_path: Path) -> None:
    path = write(tmp_path / "state.yaml", cluster(ready=True)[1:])
    with running(make_config(state=str(path))) as srv:
        msg = srv.query("default.svc.cluster.local.", "A")
        assert msg.rcode() == dns.rcode.NOERROR  # NODATA: the namespace exists
        msg = srv.query("kube-system.svc.cluster.local.", "A")
        assert msg.rcode() == dns.rcode.NXDOMAIN


def test_demo_state_is_valid() -> None:
    kinds = [o["kind"] for o in read_objects(DEMO_STATE)]
    assert kinds.count("ServiceImport") == 5 and "Namespace" in kinds


@pytest.mark.parametrize("text,problem", [
    ("- 1\n- 2\n", "is int, not an object"),
    ("{", "not valid YAML or JSON"),
    ("just a string", "expected an object or a List"),
])
def test_unreadable_state_names_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(StateError, match=problem):
        read_objects(path)
