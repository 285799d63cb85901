"""Failovers as Kubernetes Events: the recorder against the fake API server, real client.

The recorder (``mcdns.kube.events``) is fed Switch objects directly, the way the
compiler's listeners are called, and writes through kubernetes_asyncio to
``FakeKubeAPI``, which validates Events as the API server does and keeps every request.
The last tests run the whole server (App) against the fake API: a Service's local
endpoints going unready with an import present is a FailedOver Event.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from kubeapi import Call, FakeKubeAPI, endpointslice, namespace, service, serviceimport
from kubeharness import FAST
from prometheus_client import generate_latest

from mcdns import config
from mcdns.answers.switch import FAILED_BACK, FAILED_OVER, TIER_CHANGED, Switch
from mcdns.app import App
from mcdns.kube.client import Configuration
from mcdns.kube.events import NOTE_LIMIT, EventRecorder, micro_time
from mcdns.kube.resources import SERVICEIMPORTS, Resource
from mcdns.kube.settings import EventSettings
from mcdns.ops.metrics import registry_for

QUICK = EventSettings(min_interval=0.2, retry_delay=0.05, max_tries=3, timeout=2.0)
INSTANCE = "mcdns-7d9f-abcde"
MICRO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
NOTE = "local has 0 ready (min_ready 1): unhealthy; import has 2 ready remote pods"


def switch(reason: str = FAILED_OVER, name: str = "serve", ns: str = "default",
           kind: str = "Service", note: str = NOTE, t: float | None = None) -> Switch:
    direction = {FAILED_OVER: "to_import", FAILED_BACK: "to_local"}.get(reason, "tier")
    return Switch(ns, name, kind, reason, direction, note, time.time() if t is None else t)


def run(test: Callable[[], Awaitable[None]], timeout: float = 20.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(test(), timeout)

    asyncio.run(bounded())


async def until(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def writes(api: FakeKubeAPI, method: str | None = None) -> list[Call]:
    """Requests to the Events API (of ``method``)."""
    return [c for c in api.calls if c.path.startswith("/apis/events.k8s.io/")
            and (method is None or c.method == method)]


@asynccontextmanager
async def recording(settings: EventSettings = QUICK, start: bool = True,
                    versions: Callable[[Resource], str | None] | None = None
                    ) -> AsyncIterator[tuple[FakeKubeAPI, EventRecorder]]:
    api = FakeKubeAPI()
    await api.start()
    rec = EventRecorder(Configuration(host=api.url), settings, instance=INSTANCE,
                        versions=versions)
    if start:
        rec.start()
    try:
        yield api, rec
    finally:
        await rec.stop(1.0)
        await api.stop()


def test_one_switch_is_one_event() -> None:
    async def go() -> None:
        async with recording() as (api, rec):
            sw = switch()
            rec.record(sw)
            await until(lambda: rec.stats.created == 1, "created")
            (ev,) = api.events("default")
            assert ev["apiVersion"] == "events.k8s.io/v1" and ev["kind"] == "Event"
            assert ev["metadata"]["namespace"] == "default"
            assert ev["metadata"]["name"].startswith("serve.")
            # no Service of that name in this API server: no uid to give
            assert ev["regarding"] == {"kind": "Service", "apiVersion": "v1",
                                       "namespace": "default", "name": "serve"}
            assert ev["reason"] == "FailedOver" and ev["type"] == "Warning"
            assert ev["note"] == NOTE
            assert ev["action"] == "Answer"
            assert ev["reportingController"] == "mcdns.io/mcdns"
            assert ev["reportingInstance"] == INSTANCE
            assert MICRO.fullmatch(ev["eventTime"]) and ev["eventTime"] == micro_time(sw.time)
            assert "series" not in ev
            assert [(c.method, c.path) for c in writes(api)] == [
                ("POST", "/apis/events.k8s.io/v1/namespaces/default/events")]
            assert rec.stats.updated == rec.stats.errors == rec.stats.dropped == 0

    run(go)


def test_event_types_and_import_regarding() -> None:
    """FailedBack and ClusterTierChanged are Normal; an import's Event regards the
    ServiceImport in the version the watcher uses (v1alpha1 until one is known)."""
    async def go() -> None:
        served: dict[str, str] = {}

        def versions(res: Resource) -> str | None:
            return served.get(res.name)

        async with recording(versions=versions) as (api, rec):
            rec.record(switch(FAILED_BACK, ns="shop"))
            rec.record(switch(TIER_CHANGED, name="db", ns="shop", kind="ServiceImport"))
            await until(lambda: rec.stats.created == 2, "created")
            served[SERVICEIMPORTS.name] = "v1beta1"  # the watcher found v1beta1 served
            rec.record(switch(TIER_CHANGED, name="cache", ns="shop", kind="ServiceImport"))
            await until(lambda: rec.stats.created == 3, "created")
            by_name = {e["regarding"]["name"]: e for e in api.events("shop")}
            assert {e["type"] for e in by_name.values()} == {"Normal"}
            assert by_name["serve"]["reason"] == "FailedBack"
            assert by_name["db"]["regarding"] == {
                "kind": "ServiceImport", "apiVersion": "multicluster.x-k8s.io/v1alpha1",
                "namespace": "shop", "name": "db"}
            assert by_name["cache"]["regarding"]["apiVersion"] == \
                "multicluster.x-k8s.io/v1beta1"
            assert by_name["db"]["reason"] == "ClusterTierChanged"

    run(go)


def test_failed_over_then_back_are_two_series() -> None:
    async def go() -> None:
        async with recording() as (api, rec):
            for _ in range(2):
                rec.record(switch(FAILED_OVER))
                rec.record(switch(FAILED_BACK))
                await until(lambda: not rec._dirty and not rec._queue, "sent")
            evs = api.events()
            assert sorted(e["reason"] for e in evs) == ["FailedBack", "FailedOver"]
            assert {e["series"]["count"] for e in evs} == {2}
            assert {e["type"] for e in evs} == {"Normal", "Warning"}
            assert rec.stats.created == 2 and rec.stats.errors == 0

    run(go)


def test_flapping_is_one_event_per_reason_with_bounded_requests() -> None:
    """A 10 Hz flap for 3 s: one Event per (object, reason), series.count = switches,
    and at most one create plus one PATCH per second (and a last one) per series."""
    settings = EventSettings(min_interval=1.0, timeout=2.0)

    async def go() -> None:
        async with recording(settings) as (api, rec):
            n, last = 30, {}
            start = time.monotonic()
            for _ in range(n):
                for reason in (FAILED_OVER, FAILED_BACK):
                    sw = switch(reason)
                    last[reason] = sw.time
                    rec.record(sw)
                    await asyncio.sleep(0.05)
            flap = time.monotonic() - start

            def done() -> bool:
                evs = api.events()
                return len(evs) == 2 and all(e.get("series", {}).get("count") == n
                                             for e in evs)
            await until(done, "series counts", timeout=3.0)
            by_reason = {e["reason"]: e for e in api.events()}
            for reason, t in last.items():
                assert by_reason[reason]["series"]["lastObservedTime"] == micro_time(t)
            bound = 2 * (1 + math.ceil(flap / settings.min_interval) + 1)
            assert len(writes(api, "POST")) == 2
            assert len(writes(api)) <= bound, (len(writes(api)), bound)
            # the server has the PATCH a moment before the recorder counts it
            await until(lambda: rec.stats.updated == len(writes(api, "PATCH")), "counted")
            assert rec.stats.created == 2 and rec.stats.errors == rec.stats.dropped == 0
            patch = writes(api, "PATCH")[0]
            assert patch.content_type == "application/strategic-merge-patch+json"
            assert set(patch.body) == {"series"}

    run(go)


def test_api_failing_never_raises_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        async with recording() as (api, rec):
            api.fail(500)
            rec.record(switch(name="a"))  # retried max_tries (3) times, then given up
            await until(lambda: rec.stats.errors == 3 and not rec._dirty, "given up")
            assert api.events() == [] and rec.series == {}
            warnings = [r for r in caplog.records if r.name == "mcdns.kube.events"]
            assert len(warnings) == 1  # rate-limited: one line for three failures
            api.heal()
            rec.record(switch(name="a"))
            await until(lambda: len(api.events()) == 1, "a after heal")
            api.fail(500, times=2)  # a transient failure: retried until it works
            rec.record(switch(name="b"))
            await until(lambda: len(api.events()) == 2, "b after retries")
            # 4, not 5: the first injected failure is taken by the lookup of the
            # Service's uid (not a write: not counted), the second by the create.
            assert rec.stats.errors == 4 and rec.stats.created == 2
            api.fail(403)  # refused (e.g. no RBAC): given up at once, not retried
            rec.record(switch(name="c"))
            await until(lambda: rec.stats.errors == 5, "refused")
            await asyncio.sleep(0.3)
            assert rec.stats.errors == 5 and not rec._dirty

    caplog.set_level(logging.WARNING, logger="mcdns.kube.events")
    run(go)


def test_full_queue_drops_and_counts() -> None:
    async def go() -> None:
        async with recording(EventSettings(queue_size=5), start=False) as (api, rec):
            for _ in range(8):
                rec.record(switch())
            assert rec.stats.dropped == 3
            rec.start()  # the five queued switches coalesce into one series
            await until(lambda: rec.stats.created == 1 and not rec._dirty, "sent")
            (ev,) = api.events()
            assert ev["series"]["count"] == 5
            assert len(writes(api)) == 1

    run(go)


def test_record_is_a_plain_function_that_does_no_io() -> None:
    assert not inspect.iscoroutinefunction(EventRecorder.record)

    async def go() -> None:
        async with recording() as (api, rec):
            t0 = time.perf_counter()
            for i in range(20):
                rec.record(switch(name=f"s{i}"))
            took = time.perf_counter() - t0
            assert writes(api) == []  # nothing was sent while recording
            assert took < 0.05, took
            await until(lambda: rec.stats.created == 20, "sent")

    run(go)


def test_all_series_together_are_capped_by_the_token_bucket() -> None:
    settings = EventSettings(rate=20.0, burst=5, timeout=2.0)

    async def go() -> None:
        async with recording(settings) as (api, rec):
            t0 = time.monotonic()
            for i in range(15):
                rec.record(switch(name=f"s{i}"))
            await until(lambda: rec.stats.created == 15, "sent")
            # 5 at once, then 10 at 20 a second
            assert time.monotonic() - t0 >= 0.9 * (15 - 5) / 20
            assert len(api.events()) == 15

    run(go)


def test_expired_event_is_created_again() -> None:
    """A PATCH answered 404 (the Event expired) creates the Event again, as a series."""
    async def go() -> None:
        async with recording() as (api, rec):
            rec.record(switch())
            await until(lambda: rec.stats.created == 1, "created")
            (ev,) = api.events()
            assert api.remove("Event", "default", ev["metadata"]["name"])
            rec.record(switch())
            await until(lambda: rec.stats.created == 2, "created again")
            (again,) = api.events()
            assert again["series"]["count"] == 2
            assert [c.method for c in writes(api)] == ["POST", "PATCH", "POST"]

    run(go)


def test_a_quiet_series_ends_and_the_next_switch_is_a_new_event() -> None:
    async def go() -> None:
        settings = EventSettings(min_interval=0.05, finish=0.2, timeout=2.0)
        async with recording(settings) as (api, rec):
            rec.record(switch())
            await until(lambda: rec.stats.created == 1, "created")
            await asyncio.sleep(0.3)
            rec.record(switch())
            await until(lambda: rec.stats.created == 2, "a new Event")
            evs = api.events()
            assert len(evs) == 2 and all("series" not in e for e in evs)

    run(go)


def test_stop_sends_what_is_pending() -> None:
    async def go() -> None:
        async with recording(EventSettings(min_interval=60.0, timeout=2.0)) as (api, rec):
            rec.record(switch())
            await until(lambda: rec.stats.created == 1, "created")
            rec.record(switch())  # its PATCH would wait a minute
            await asyncio.sleep(0.1)
            assert writes(api, "PATCH") == []
            await rec.stop(1.0)
            assert rec.stats.updated == 1
            (ev,) = api.events()
            assert ev["series"]["count"] == 2

    run(go)


def test_long_note_is_cut_to_the_api_limit() -> None:
    async def go() -> None:
        async with recording() as (api, rec):
            rec.record(switch(note="ü" * 3000))
            await until(lambda: rec.stats.created == 1, "created")
            note = api.events()[0]["note"]
            assert len(note.encode()) <= NOTE_LIMIT and note.endswith("...")

    run(go)


# ---- through the whole server --------------------------------------------------------

LOCAL_IP = "10.96.0.10"
IMPORT_IP = "10.13.187.164"


async def serving(api: FakeKubeAPI, tmp_path: Path, **keys: Any) -> App:
    for obj in (namespace("default"), service("serve", LOCAL_IP),
                endpointslice("serve-abc", "serve", ["10.0.0.1"]),
                serviceimport("serve", [IMPORT_IP])):
        api.apply(obj)
    await api.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    cfg = config.build({"listen": ["127.0.0.1:0"], "http": None,
                        "kubeconfig": str(kubeconfig), "failback_delay": 0, **keys})
    app = App(cfg, kube_settings=FAST)
    await app.start()
    return app


def test_a_failover_through_the_server_is_an_event(tmp_path: Path) -> None:
    async def go() -> None:
        api = FakeKubeAPI()
        app = await serving(api, tmp_path)
        try:
            await until(lambda: app.store.synced, "sync")
            assert app.events is not None
            api.apply(endpointslice("serve-abc", "serve", ["10.0.0.1"], ready=False))
            await until(lambda: len(api.events("default")) == 1, "FailedOver Event")
            (ev,) = api.events("default")
            assert ev["reason"] == "FailedOver" and ev["type"] == "Warning"
            # with the Service's uid, so `kubectl describe service` lists the Event
            svc_uid = api.objects["services"][("default", "serve")]["metadata"]["uid"]
            assert ev["regarding"] == {"kind": "Service", "apiVersion": "v1",
                                       "namespace": "default", "name": "serve",
                                       "uid": svc_uid}
            assert "unhealthy" in ev["note"]
            api.apply(endpointslice("serve-abc", "serve", ["10.0.0.1"], ready=True))
            await until(lambda: len(api.events("default")) == 2, "FailedBack Event")
            assert {e["reason"] for e in api.events()} == {"FailedOver", "FailedBack"}
            text = generate_latest(registry_for(app._metric_parts())).decode()
            assert 'mcdns_events_total{result="created"} 2.0' in text
            assert 'mcdns_events_total{result="dropped"} 0.0' in text
        finally:
            await app.stop(drain=0.1)
            await api.stop()
        assert app.events.stats.errors == 0

    run(go)


def test_events_off_records_nothing(tmp_path: Path) -> None:
    async def go() -> None:
        api = FakeKubeAPI()
        app = await serving(api, tmp_path, events=False)
        try:
            await until(lambda: app.store.synced, "sync")
            assert app.events is None
            api.apply(endpointslice("serve-abc", "serve", ["10.0.0.1"], ready=False))
            await until(lambda: app.compiler.switches["to_import"] == 1, "the switch")
            await asyncio.sleep(0.1)
            assert writes(api) == []
            text = generate_latest(registry_for(app._metric_parts())).decode()
            assert "mcdns_events_total{" not in text
        finally:
            await app.stop(drain=0.1)
            await api.stop()

    run(go)


def test_a_new_event_is_not_stuck_behind_flapping_series() -> None:
    """30 series flapping (each due every 0.2 s) take the whole write budget of 10/s; a
    new FailedOver must still be created at once (it went unwritten for 15 s before the
    writes were ordered: new Events first, then the longest due)."""
    async def go() -> None:
        settings = EventSettings(min_interval=0.2, rate=10.0, burst=2, timeout=2.0)
        async with recording(settings) as (api, rec):
            async def flap() -> None:
                while True:
                    for i in range(30):
                        rec.record(switch(TIER_CHANGED, name=f"flap{i}"))
                    await asyncio.sleep(0.05)

            flapping = asyncio.create_task(flap())
            try:
                await asyncio.sleep(3.5)  # every flapping series exists: only PATCHes now
                rec.record(switch(FAILED_OVER, name="victim"))
                start = time.monotonic()
                await until(lambda: any(e["regarding"]["name"] == "victim"
                                        for e in api.events()), "victim", timeout=5.0)
                assert time.monotonic() - start < 1.0
            finally:
                flapping.cancel()

    run(go)
