"""List + watch against a faithful fake API server with the real kubernetes_asyncio client.

Each test drives one fault (cut stream, 410, 500s, server down, CRD absent, bookmarks)
and asserts the store converges to the server's final state, deletions included.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable

import aiohttp
import pytest
from kubeapi import (
    FakeKubeAPI,
    clusterproperty,
    endpointslice,
    namespace,
    service,
    serviceimport,
)
from kubeharness import Running, running

from mcdns.answers.compiler import Compiler
from mcdns.answers.explain import explain
from mcdns.config import Config
from mcdns.kube.http import _reason
from mcdns.objects.reduce import CLUSTER_ID_PROPERTY


def run(coro: Awaitable[None], timeout: float = 20.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout)

    asyncio.run(bounded())


def demo_api(**kw: object) -> FakeKubeAPI:
    """serve (local, ready) with an import, web, and a second namespace."""
    api = FakeKubeAPI(**kw)  # type: ignore[arg-type]
    for ns in ("default", "other", "kube-system"):
        api.apply(namespace(ns))
    api.apply(service("serve", "10.96.0.10"))
    api.apply(endpointslice("serve-abc", "serve", ["10.0.0.1", "10.0.0.2"]))
    api.apply(serviceimport("serve", ["10.13.187.164"]))
    api.apply(service("web", "10.96.0.11"))
    api.apply(endpointslice("web-1", "web", ["10.0.1.1"]))
    api.apply(service("db", "10.96.0.12", ns="other"))
    api.apply(clusterproperty(CLUSTER_ID_PROPERTY, "member2"))
    return api


def ready_count(r: Running, ns: str, svc: str) -> int:
    return sum(ep.ready for s in r.store.slices_of(ns, svc) for ep in s.endpoints)


def lists(r: Running, name: str) -> int:
    return r.source.stats.lists[name]


def restarts(r: Running, reason: str) -> int:
    return sum(n for (_, why), n in r.source.stats.restarts.items() if why == reason)


def test_list_and_watch_populate_the_store_and_events_change_it() -> None:
    async def go() -> None:
        async with running(demo_api()) as r:
            assert not r.store.synced
            await r.synced()
            st = r.store
            assert set(st.services) == {("default", "serve"), ("default", "web"),
                                        ("other", "db")}
            assert st.services[("default", "serve")].cluster_ips == ("10.96.0.10",)
            assert st.imports[("default", "serve")].ips == ("10.13.187.164",)
            assert st.namespaces == {"default", "other", "kube-system"}
            assert st.cluster_properties == {CLUSTER_ID_PROPERTY: "member2"}
            assert ready_count(r, "default", "serve") == 2
            assert st.last_contact > 0
            # paginated: page_size 2 and 3 services means a continue was needed
            assert any(q.get("limit") == "2" for q in r.api.seen("limit", "services"))
            assert r.api.seen("continue", "services")
            # the watch resumes from the list's version with bookmarks on (sync is the end
            # of the lists: the watch request may reach the server a moment later)
            await r.until(lambda: bool(r.api.seen("watch", "services")), what="watch")
            w = r.api.seen("watch", "services")[0]
            assert w["allowWatchBookmarks"] == "true" and int(w["resourceVersion"]) > 1

            r.api.apply(endpointslice("serve-abc", "serve", ["10.0.0.1", "10.0.0.2"],
                                      ready=False))
            await r.until(lambda: ready_count(r, "default", "serve") == 0)
            gen = st.generation
            r.api.remove("Service", "default", "web")
            await r.until(lambda: ("default", "web") not in st.services)
            assert st.generation > gen
            assert r.source.stats.events[("endpointslices", "MODIFIED")] == 1
            assert r.source.stats.events[("services", "DELETED")] == 1
            assert "services" in r.source.stats.last_event

    run(go())


def test_watch_cut_mid_stream_resumes_without_relist() -> None:
    async def go() -> None:
        async with running(demo_api()) as r:
            await r.watching()
            r.api.cut_watches()
            r.api.remove("Service", "default", "web")
            r.api.apply(service("new", "10.96.0.20"))
            await r.until(lambda: ("default", "new") in r.store.services
                          and ("default", "web") not in r.store.services)
            assert lists(r, "services") == 1  # resumed from its resourceVersion
            assert restarts(r, "disconnect") >= 1

    run(go())


@pytest.mark.parametrize("in_stream", [True, False], ids=["in-stream-error", "http-410"])
def test_expired_version_relists_and_honours_deletions(in_stream: bool) -> None:
    async def go() -> None:
        api = demo_api()
        api.gone_in_stream = in_stream
        async with running(api) as r:
            await r.synced()
            resources = set(r.source.stats.lists)
            await api.stop()  # the API server goes away...
            api.remove("Service", "default", "web")
            api.remove("EndpointSlice", "default", "web-1")
            api.remove("ServiceImport", "default", "serve")
            api.remove("Namespace", "", "kube-system")
            api.apply(service("late", "10.96.0.30"))
            api.compact()  # ... and comes back with its history compacted
            await api.start(api.port)
            st = r.store
            want = {("default", "serve"), ("default", "late"), ("other", "db")}
            await r.until(lambda: set(st.services) == want and ("default", "web-1")
                          not in st.slices and not st.imports
                          and "kube-system" not in st.namespaces, what="convergence")
            # A resource with nothing to change (clusterproperties) may still be in its
            # reconnect backoff at convergence: wait for its relist too, then check that
            # none listed more than once more.
            await r.until(lambda: all(r.source.stats.lists[k] >= 2 for k in resources),
                          what="every resource relisted")
            assert all(n == 2 for n in r.source.stats.lists.values()), (
                r.source.stats.lists, r.source.stats.restarts)
            assert restarts(r, "gone") >= 1
            # nothing resurrects later
            r.api.apply(service("after", "10.96.0.31"))
            await r.until(lambda: ("default", "after") in st.services)
            assert ("default", "web") not in st.services

    run(go())


def test_in_stream_410_lists_again() -> None:
    async def go() -> None:
        async with running(demo_api()) as r:
            await r.watching()
            r.api.expire_watches()
            await r.until(lambda: lists(r, "services") == 2, what="relist")
            assert r.source.stats.restarts[("services", "gone")] == 1
            r.api.apply(service("web", "10.96.0.99"))
            await r.until(lambda: r.store.services[("default", "web")].cluster_ips
                          == ("10.96.0.99",))

    run(go())


def test_server_errors_back_off_then_converge() -> None:
    async def go() -> None:
        async with running(demo_api()) as r:
            await r.watching()
            r.api.fail(500)
            r.api.cut_watches()
            r.api.remove("Service", "default", "web")
            await r.until(lambda: restarts(r, "http_500") >= 5, what="500 retries")
            assert ("default", "web") in r.store.services  # last known state kept
            assert r.store.synced
            r.api.heal()
            await r.until(lambda: ("default", "web") not in r.store.services)

    run(go())


def test_server_down_at_start_then_up() -> None:
    async def go() -> None:
        api = demo_api()
        await api.start()
        await api.stop()  # we know a free port now; nothing listens on it
        async with running(api, start_api=False) as r:
            await r.until(lambda: restarts(r, "connect") >= 5, what="connect retries")
            assert not r.store.synced
            assert r.store.last_contact == 0
            await api.start(api.port)
            await r.synced()
            assert ("default", "serve") in r.store.services

    run(go())


def test_error_during_first_list_is_retried() -> None:
    async def go() -> None:
        api = demo_api()
        api.fail(500, times=7)
        async with running(api) as r:
            await r.synced()
            assert restarts(r, "http_500") >= 1
            assert len(r.store.services) == 3

    run(go())


def test_crd_absent_then_installed() -> None:
    async def go() -> None:
        api = demo_api(crds=())
        async with running(api) as r:
            await r.synced()  # no CRD is not an error: imports are just empty
            assert r.store.imports == {}
            assert r.store.cluster_properties == {}
            api.enable_group("multicluster.x-k8s.io", ("v1alpha1",))
            await r.until(lambda: ("default", "serve") in r.store.imports, what="imports")
            await r.until(lambda: bool(r.api.seen("watch", "serviceimports")), what="watch")
            assert any(p.startswith("/apis/multicluster.x-k8s.io/v1alpha1/")
                       for p, _ in r.api.requests)
            api.enable_group("about.k8s.io")
            await r.until(lambda: r.store.cluster_properties.get(CLUSTER_ID_PROPERTY)
                          == "member2", what="cluster property")
            # the CRD is removed again: its objects go
            api.disable_group("multicluster.x-k8s.io")
            api.cut_watches()
            await r.until(lambda: r.store.imports == {}, what="imports gone")

    run(go())


def test_crd_listed_by_discovery_but_404_waits_between_checks() -> None:
    """Discovery lists the resource yet its collection answers 404: treated as absent,
    checked again every discovery interval, not listed again in a tight loop."""
    async def go() -> None:
        from dataclasses import replace

        from kubeharness import FAST
        api = demo_api()
        api.broken.add("serviceimports")
        async with running(api, settings=replace(FAST, discovery_interval=0.2)) as r:
            await r.synced()  # absent is a complete (empty) list
            assert r.store.imports == {}
            await asyncio.sleep(1.0)
            tries = [p for p, _ in api.requests if p.endswith("/serviceimports")]
            assert 1 <= len(tries) < 20, len(tries)
            api.broken.clear()
            await r.until(lambda: ("default", "serve") in r.store.imports, what="imports")

    run(go())


def test_v1beta1_preferred_when_served() -> None:
    async def go() -> None:
        async with running(demo_api()) as r:
            await r.synced()
            paths = [p for p, _ in r.api.requests if p.endswith("/serviceimports")]
            assert paths and all("/v1beta1/" in p for p in paths)

    run(go())


def test_bookmark_moves_the_resume_version() -> None:
    async def go() -> None:
        async with running(demo_api()) as r:
            await r.watching()
            watcher = r.source.watchers[1]
            assert watcher.name == "services"
            rv = r.api.bookmark()
            await r.until(lambda: watcher.rv == str(rv), what="bookmark seen")
            r.api.cut_watches()
            await r.until(lambda: any(q.get("resourceVersion") == str(rv)
                                      for q in r.api.seen("watch", "services")),
                          what="resume from bookmark")
            assert lists(r, "services") == 1
            assert r.source.stats.events[("services", "BOOKMARK")] == 1

    run(go())


def test_silent_stream_is_reopened_after_inactivity() -> None:
    async def go() -> None:
        from dataclasses import replace

        from kubeharness import FAST
        async with running(demo_api(), settings=replace(FAST, inactivity=0.2)) as r:
            await r.synced()
            await r.until(lambda: r.source.stats.restarts[("services", "timeout")] >= 1,
                          what="inactivity restart")
            assert lists(r, "services") == 1
            r.api.remove("Service", "default", "web")
            await r.until(lambda: ("default", "web") not in r.store.services)

    run(go())


def test_watch_that_ends_at_once_backs_off() -> None:
    async def go() -> None:
        async with running(demo_api()) as r:
            await r.watching()
            r.api.end_watches_at_once = True
            r.api.cut_watches()
            await r.until(lambda: restarts(r, "empty_stream") >= 10, what="empty streams")
            assert lists(r, "services") == 1
            r.api.end_watches_at_once = False
            r.api.remove("Service", "default", "web")
            await r.until(lambda: ("default", "web") not in r.store.services)

    run(go())


def test_watch_that_ends_at_once_backs_off_more_each_time(
        caplog: pytest.LogCaptureFixture) -> None:
    """A stream that connects then ends empty is no progress: the retry delay grows.

    With a 10 ms base delay that never grew, a second would see about a hundred watch
    requests; doubling from 10 ms (capped at 2 s), it sees fewer than ten.
    """
    async def go() -> None:
        from dataclasses import replace

        from kubeharness import FAST
        api = demo_api()
        api.end_watches_at_once = True
        settings = replace(FAST, backoff_base=0.01, backoff_max=2.0)
        async with running(api, settings=settings) as r:
            await r.synced()
            await r.until(lambda: restarts(r, "empty_stream") >= 1, what="empty stream")
            before = len(api.seen("watch", "services"))
            await asyncio.sleep(1.0)
            watches = len(api.seen("watch", "services")) - before
            assert 1 <= watches < 20, (watches, r.source.stats.restarts)
            assert lists(r, "services") == 1
        warned = [m for m in caplog.messages if "stream ended at once" in m]
        assert warned and not any(m.count("watch services:") > 1 for m in warned), warned

    run(go())


def test_namespace_filter() -> None:
    async def go() -> None:
        async with running(demo_api(), namespaces=("other",)) as r:
            await r.synced()
            assert set(r.store.services) == {("other", "db")}
            assert r.store.explicit_namespaces == {"other"}
            assert "services/other" in r.store.synced_sources
            assert all("/namespaces/other/" in p for p, _ in r.api.requests
                       if p.endswith("/services"))
            r.api.apply(service("x", "10.96.1.1", ns="default"))
            r.api.apply(service("y", "10.96.1.2", ns="other"))
            await r.until(lambda: ("other", "y") in r.store.services)
            assert ("default", "x") not in r.store.services

    run(go())


def test_bad_object_keeps_last_good_version() -> None:
    async def go() -> None:
        async with running(demo_api()) as r:
            await r.watching()
            bad = service("web", "10.96.0.11", annotations={"mcdns.io/policy": "nonsense"})
            r.api.apply(bad)
            await r.until(lambda: r.source.stats.reduce_errors["services"] == 1)
            assert r.store.services[("default", "web")].cluster_ips == ("10.96.0.11",)
            r.api.expire_watches()  # a relist keeps it too
            await r.until(lambda: lists(r, "services") == 2)
            assert ("default", "web") in r.store.services

    run(go())


def test_bearer_token_is_sent() -> None:
    async def go() -> None:
        api = demo_api()
        api.token = "s3cret"
        async with running(api) as r:
            await r.synced()
            assert len(r.store.services) == 3

    run(go())


def test_cancel_closes_cleanly() -> None:
    async def go() -> None:
        async with running(demo_api()) as r:
            await r.synced()
            task = r.task
        assert task.cancelled()

    run(go())



def test_connect_timeout_is_a_connect_failure_not_a_quiet_stream() -> None:
    """aiohttp's connect timeout is a TimeoutError too; the watcher must back off on it
    ("connect"), not reopen at once as after an inactive stream ("timeout")."""
    assert _reason(aiohttp.ConnectionTimeoutError("Connection timeout to host x")) == "connect"
    assert _reason(aiohttp.SocketTimeoutError("Timeout on reading data")) == "timeout"
    assert _reason(TimeoutError()) == "timeout"
    assert _reason(ConnectionRefusedError()) == "connect"


# ---- last_contact: the last successful contact with the API, not the last change ---------

def contact_age(r: Running) -> float:
    """``last_contact_age`` as the explain record (``dig NAME CH TXT``) shows it."""
    text = " ".join(explain(Compiler(Config(), r.store), "x.default.svc.cluster.local."))
    assert r.store.last_contact > 0
    m = re.search(r"last_contact_age=([0-9.]+)s", text)
    assert m, text
    assert abs(float(m.group(1)) - (time.time() - r.store.last_contact)) < 0.2
    return float(m.group(1))


def test_quiet_cluster_with_bookmarks_keeps_contact_fresh() -> None:
    """No change for seconds, but the server's bookmarks keep coming: each one is
    contact, so last_contact_age stays small (last_change_age grows)."""
    async def go() -> None:
        from dataclasses import replace

        from kubeharness import FAST
        async with running(demo_api(), settings=replace(FAST, server_timeout=60)) as r:
            await r.watching()
            ages = []
            for _ in range(15):
                await asyncio.sleep(0.1)
                r.api.bookmark()
                await asyncio.sleep(0.02)
                ages.append(contact_age(r))
            assert max(ages) < 0.3, ages
            assert r.source.stats.events[("services", "BOOKMARK")] >= 10
            assert not r.source.stats.restarts  # one stream each, all along

    run(go())


def test_watch_ended_by_the_server_timeout_is_contact() -> None:
    """Streams the server ends at their timeout (1 s here) are answers too: when the
    reconnects then fail (500), last_contact is when the streams ended, not when they
    were opened before the failures began."""
    async def go() -> None:
        from dataclasses import replace

        from kubeharness import FAST
        settings = replace(FAST, server_timeout=1, backoff_base=0.5, backoff_max=0.5)
        async with running(demo_api(), settings=settings) as r:
            await r.watching()
            failing_since = time.time()
            r.api.fail(500)  # the open streams run on to their end; new requests fail
            n = len(r.source.watchers)
            await r.until(lambda: restarts(r, "http_500") >= n, what="every stream ended")
            assert r.store.last_contact > failing_since + 0.05, (
                r.store.last_contact - failing_since)
            assert contact_age(r) < 1.0
            # and from then on nothing answers: the age grows
            first = contact_age(r)
            await asyncio.sleep(0.5)
            assert contact_age(r) >= first + 0.4

    run(go())


def test_quiet_cluster_with_watch_timeouts_keeps_contact_fresh() -> None:
    """No bookmarks, no changes: streams end at the server's timeout and are reopened;
    last_contact_age never grows past about one stream."""
    async def go() -> None:
        from dataclasses import replace

        from kubeharness import FAST
        async with running(demo_api(), settings=replace(FAST, server_timeout=1)) as r:
            await r.watching()
            ages = []
            for _ in range(12):
                await asyncio.sleep(0.25)
                ages.append(contact_age(r))
            assert max(ages) < 1.2, ages
            assert lists(r, "services") == 1  # reopened from the version, no relist

    run(go())


def test_unreachable_api_server_makes_contact_age_grow() -> None:
    async def go() -> None:
        async with running(demo_api()) as r:
            await r.watching()
            assert contact_age(r) < 0.5
            await r.api.stop()
            await r.until(lambda: restarts(r, "connect") >= 3, what="connect retries")
            first = contact_age(r)
            await asyncio.sleep(1.0)
            second = contact_age(r)
            assert second >= first + 0.9 and second >= 1.0, (first, second)
            assert ("default", "serve") in r.store.services  # the last answers stay

    run(go())
