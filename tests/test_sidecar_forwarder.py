"""The light sidecar (role forwarder): no watch, no token, the cluster zones from the stub.

A stub mcdns (role stub, on a state file, in this process) stands for the central mcdns
Service; Knot for the cluster DNS's upstream. The forwarder sends the cluster zones'
names to the stub and keeps their answers for at most their TTL, never stale (a stale
cluster answer would undo a failover the stub decided), and everything else to Knot
through its cache, as the resolver role does.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.rcode
import pytest
from conftest import DEMO_STATE, STARTED, Running, make_config, needs, running, start_mcdns
from knot import ZONE, Knot
from kubeapi import FakeKubeAPI

from mcdns.config import ConfigError, build

pytestmark = pytest.mark.timeout(90)

SERVE = "serve.default.svc.cluster.local"
LOCAL_IP, IMPORT_IP = "10.96.10.10", "10.13.187.164"
DOWN = "conditions: {ready: false, serving: false, terminating: false}"
UP = "conditions: {ready: true, serving: true, terminating: false}"


@pytest.fixture(scope="module")
def knot() -> Iterator[Knot]:
    needs("knotd")
    needs("knotc")
    with Knot() as k:
        yield k


def stub_state(path: Path, local_ready: bool) -> None:
    """The demo state with serve's local pods ready (answer: the local ClusterIP) or
    not (the stub fails over to the import), written in one rename."""
    text = DEMO_STATE.read_text(encoding="utf-8")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text.replace(DOWN, UP) if local_ready else text, encoding="utf-8")
    tmp.replace(path)


def forwarder_config(stub: Running, knot: Knot, **more: object) -> object:
    return make_config(role="forwarder", cluster_upstreams=[f"{stub.host}:{stub.port}"],
                       upstreams=[knot.address], upstream_timeout=0.3, **more)


def address(srv: Running, name: str = SERVE) -> str | None:
    reply = srv.query(name)
    return reply.answer[0][0].address if reply.answer else None


def test_cluster_names_come_from_the_stub_other_names_from_upstream(knot: Knot) -> None:
    with running(make_config(state=str(DEMO_STATE))) as stub, \
            running(forwarder_config(stub, knot)) as fwd:
        before = knot.queries()
        reply = fwd.query(SERVE)
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.RA
        assert address(fwd) == IMPORT_IP  # the stub's decision: local pods down
        assert fwd.query("nope.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
        # zone transfers are refused here, not passed on (a REFUSED from the stub would
        # count as a failing upstream)
        assert fwd.query("cluster.local", "AXFR", tcp=True).rcode() == dns.rcode.REFUSED
        assert knot.queries() == before, "a cluster name went to the cluster DNS"
        assert address(fwd, f"www.{ZONE}") == "192.0.2.1"
        assert knot.queries() == before + 1
        res = fwd.app.forwarder
        assert res is not None and [up.name for up in res.pools[1]] == [f"{stub.host}:{stub.port}"]
        assert res.pools[1][0].stats.requests == 2  # serve, nope (then cached)
        assert fwd.app.store.synced and not fwd.app.store.synced_sources  # no source


def test_a_failover_decided_by_the_stub_is_followed_within_the_ttl(tmp_path: Path,
                                                                  knot: Knot) -> None:
    state = tmp_path / "state.yaml"
    stub_state(state, local_ready=True)
    with running(make_config(state=str(state), ttl=1)) as stub, \
            running(forwarder_config(stub, knot)) as fwd:
        assert address(fwd) == LOCAL_IP
        stub_state(state, local_ready=False)
        seen_stub = seen_fwd = 0.0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not seen_fwd:
            now = time.monotonic()
            if not seen_stub and address(stub) == IMPORT_IP:
                seen_stub = now
            if address(fwd) == IMPORT_IP:
                seen_fwd = now
            time.sleep(0.01)
        assert seen_stub and seen_fwd, "the forwarder never followed the stub"
        # the forwarder kept the stub's answer for at most its TTL (1 s)
        assert seen_fwd - seen_stub <= 1.0 + 0.1


def test_cluster_answers_are_never_served_stale(knot: Knot) -> None:
    """The stub goes away: past the TTL the forwarder answers SERVFAIL for the cluster
    name, where a name of other zones is served stale (RFC 8767) as in the resolver role."""
    stub, port, _ = start_mcdns("--state", str(DEMO_STATE), "--ttl", "1", "--http", "")
    try:
        cfg = make_config(role="forwarder", cluster_upstreams=[f"127.0.0.1:{port}"],
                          upstreams=[knot.address], upstream_timeout=0.3)
        with running(cfg) as fwd:
            assert address(fwd) == IMPORT_IP
            assert address(fwd, f"short.{ZONE}") == "192.0.2.2"  # TTL 2
            stub.kill()
            stub.wait(10)
            knot.stop()
            try:
                time.sleep(2.2)  # past both TTLs
                reply = fwd.query(SERVE)
                assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer
                assert fwd.query(SERVE).rcode() == dns.rcode.SERVFAIL  # nor once failing
                assert address(fwd, f"short.{ZONE}") == "192.0.2.2"  # stale, TTL 30
            finally:
                knot.start()
    finally:
        stub.kill()
        stub.wait(10)


def test_dig_ch_txt_says_where_the_answer_came_from(knot: Knot) -> None:
    with running(make_config(state=str(DEMO_STATE))) as stub, \
            running(forwarder_config(stub, knot)) as fwd:
        fwd.query(SERVE)
        texts = [b"".join(rr.strings).decode()
                 for rr in fwd.query(SERVE, "TXT", rdclass="CH", tcp=True).answer[0]]
        stub_addr = f"{stub.host}:{stub.port}"
        assert texts[0] == f"name={SERVE}."
        assert texts[1].startswith(
            f"forwarded=to the cluster resolver (cluster_upstreams {stub_addr})")
        assert texts[2].startswith(f"cached=yes from={stub_addr} rcode=NOERROR ttl_left=")
        assert "cluster: decision=import degraded=false" in texts  # the stub's own record
        other = [b"".join(rr.strings).decode()
                 for rr in fwd.query(f"www.{ZONE}", "TXT", rdclass="CH", tcp=True).answer[0]]
        assert other[1] == f"forwarded=to upstreams ({knot.address}) through the cache"
        assert other[2] == "cached=no: the next query is forwarded"


def test_config_errors_name_the_key() -> None:
    cases = [
        ({"role": "forwarder"}, "cluster_upstreams"),
        ({"cluster_upstreams": ["10.0.0.1"]}, "cluster_upstreams"),
        ({"role": "resolver", "cluster_upstreams": ["10.0.0.1"]}, "cluster_upstreams"),
        ({"role": "forwarder", "cluster_upstreams": ["10.0.0.1"], "state": "x.yaml"}, "state"),
        ({"role": "forwarder", "cluster_upstreams": ["10.0.0.1"], "kubeconfig": "k"},
         "kubeconfig"),
        ({"role": "forwarder", "cluster_upstreams": ["10.0.0.1"], "namespaces": ["a"]},
         "namespaces"),
    ]
    for values, key in cases:
        with pytest.raises(ConfigError) as err:
            build(values)
        assert err.value.key == key and "\n" not in str(err.value)
    done = subprocess.run([sys.executable, "-m", "mcdns", "serve", "--role", "forwarder",
                           "--listen", "127.0.0.1:0", "--http", ""],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "mcdns: error: config key 'cluster_upstreams': role forwarder needs the address of "
        "the mcdns Service (role stub) to forward the cluster zones to"]


def test_the_forwarder_makes_no_api_request(tmp_path: Path, knot: Knot) -> None:
    """With a kubeconfig and the in-cluster variables pointing at a live API server, the
    forwarder still never calls it: it has no source to start."""

    async def main() -> None:
        api = FakeKubeAPI()
        await api.start()
        (tmp_path / "kubeconfig").write_text(api.kubeconfig())
        env = {**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig"),
               "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)}
        proc, port = await asyncio.to_thread(
            spawn, env, "--role", "forwarder", "--cluster-upstream", knot.address,
            "--upstream", knot.address)
        try:
            for name in (SERVE, f"www.{ZONE}"):
                await asyncio.to_thread(subprocess.run, [
                    "dig", "@127.0.0.1", "-p", str(port), name, "+tries=1", "+time=2"],
                    capture_output=True, timeout=10)
            await asyncio.sleep(0.5)
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 15)
            await api.stop()
        assert api.calls == []

    needs("dig")
    asyncio.run(main())


def spawn(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], int]:
    """``mcdns serve ARGS`` in ``env`` on a free port, as conftest.start_mcdns."""
    proc = subprocess.Popen([sys.executable, "-m", "mcdns", "serve", *args, "--listen",
                             "127.0.0.1:0", "--http", ""], stderr=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:
        if m := STARTED.search(line):
            return proc, int(m.group(1))
    raise AssertionError("mcdns did not start")


def test_the_forwarder_loads_no_http_or_kube_library() -> None:
    """What keeps the light sidecar small: without an HTTP port neither aiohttp nor
    prometheus_client is imported, and the Kubernetes client never is."""
    probe = """
import asyncio, sys
from mcdns.app import App
from mcdns.config import build
async def main():
    cfg = build({"role": "forwarder", "cluster_upstreams": ["127.0.0.1:9"],
                 "upstreams": ["127.0.0.1:9"], "listen": ["127.0.0.1:0"], "http": None})
    async with App(cfg):
        pass
asyncio.run(main())
print(sorted(m for m in ("aiohttp", "prometheus_client", "kubernetes_asyncio")
             if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_fresh_forwarded_answers_take_the_hot_path(knot: Knot) -> None:
    """A cached answer asked again (lower case, no DO bit) is served by the handler's hot
    path, as stored answers are: the resolver is not called, the cache hit is counted,
    and the answer leaves the hot path when its TTL runs out."""
    with running(make_config(state=str(DEMO_STATE), ttl=1)) as stub, \
            running(forwarder_config(stub, knot)) as fwd:
        res = fwd.app.forwarder
        assert res is not None
        assert address(fwd) == IMPORT_IP and address(fwd, f"www.{ZONE}") == "192.0.2.1"
        assert address(fwd) == IMPORT_IP  # a cache hit, published for the hot path
        calls: list[bytes] = []
        real = res.answer

        def answer(wire: bytes, qkey: bytes, tcp: bool, cluster: bool = False) -> object:
            calls.append(qkey)
            return real(wire, qkey, tcp, cluster)

        fwd.call(lambda: setattr(res, "answer", answer))
        hits = res.stats.hits
        for _ in range(5):
            reply = fwd.query(SERVE)
            assert reply.answer[0][0].address == IMPORT_IP and reply.answer[0].ttl <= 1
            assert reply.flags & dns.flags.RA and not reply.flags & dns.flags.AA
        assert calls == [] and res.stats.hits == hits + 5
        assert fwd.query(SERVE, want_dnssec=True).answer  # DO: through the resolver
        assert len(calls) == 1
        time.sleep(1.1)  # the stub's TTL: the next query asks the stub again
        assert address(fwd) == IMPORT_IP and len(calls) == 2
