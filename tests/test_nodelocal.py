"""Node-local mode (docs/node-local.md): the address, the server, the upstream, the API load.

- ``LocalAddresses`` (mcdns/ops/netlink.py) against a fake netlink: the dummy interface
  path (this machine's kernel has no dummy link type, so only a fake can take it), the
  fallback onto lo, an address already there, errors in one line.
- For real, in a network namespace the test creates: the chart's own init container and
  server commands (rendered by Helm) put 169.254.20.10 on the node (lo here, the kernel
  has no dummy type), answer dig on it, serve /health, /ready and /metrics through it;
  the address outlives the server (a query is refused at once, not timed out), a second
  start finds it and works, ``--remove`` takes it away; without NET_ADMIN one line, exit 1.
- ``upstream_tcp``: forwarded names reach a real upstream (Knot) over TCP only.
- The API load: watches of one instance against the fake API server, times N: the
  figure docs/node-local.md gives for 100 nodes x 30 pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from conftest import DEMO_STATE, ROOT, STARTED, make_config, needs, running
from kubeapi import FakeKubeAPI
from test_helm import CHART, NAMESPACE, RELEASE, objects, one

from mcdns import cli
from mcdns.config import Config
from mcdns.kube.resources import source_names
from mcdns.kube.source import KubeSource
from mcdns.ops.netlink import InterfaceError, LocalAddresses
from mcdns.state.store import Store

ADDRESS = "169.254.20.10"
NAME = "serve.default.svc.cluster.local"
IMPORT_IP = "10.13.187.164"  # the demo's serve: local pods down, the import answers

# ---- LocalAddresses, against a fake netlink --------------------------------------------


class FakeNetlink:
    """Links and addresses of a pretend node; ``dummy`` says whether the kernel has the
    dummy link type, ``refuse`` is the errno every change fails with (EPERM: no
    NET_ADMIN)."""

    def __init__(self, dummy: bool = True, refuse: int = 0) -> None:
        self.links: dict[str, list[Any]] = {"lo": [1, None, True], "eth0": [2, None, True]}
        self.addrs: dict[str, int] = {"127.0.0.1": 1, "10.0.0.5": 2}
        self.dummy = dummy
        self.refuse = refuse
        self.changes: list[str] = []

    def _change(self, what: str) -> None:
        if self.refuse:
            raise OSError(self.refuse, os.strerror(self.refuse))
        self.changes.append(what)

    def link_index(self, name: str) -> int | None:
        return self.links[name][0] if name in self.links else None

    def _name(self, index: int) -> str:
        return next(n for n, (i, _, _) in self.links.items() if i == index)

    def link_state(self, index: int) -> tuple[str | None, bool]:
        _, kind, up = self.links[self._name(index)]
        return kind, up

    def add_dummy(self, name: str) -> int:
        self._change(f"add dummy {name}")
        if not self.dummy:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        index = max(i for i, _, _ in self.links.values()) + 1
        self.links[name] = [index, "dummy", False]
        return index

    def set_up(self, index: int) -> None:
        self._change(f"up {self._name(index)}")
        self.links[self._name(index)][2] = True

    def del_link(self, index: int) -> None:
        self._change(f"del {self._name(index)}")
        del self.links[self._name(index)]
        self.addrs = {a: i for a, i in self.addrs.items() if i != index}

    def addresses(self) -> dict[str, int]:
        return dict(self.addrs)

    def add_address(self, index: int, ip: str) -> None:
        self._change(f"add {ip} to {self._name(index)}")
        if ip in self.addrs:
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))
        self.addrs[ip] = index

    def del_address(self, index: int, ip: str) -> None:
        self._change(f"del {ip}")
        del self.addrs[ip]

    def close(self) -> None:
        pass


def local(fake: FakeNetlink, *ips: str, interface: str = "mcdns0") -> LocalAddresses:
    return LocalAddresses(ips or (ADDRESS,), interface, netlink=lambda: fake)


def test_dummy_interface_is_created_brought_up_and_given_the_address() -> None:
    fake = FakeNetlink()
    la = local(fake, ADDRESS, "fd00::10")
    la.setup()
    assert fake.changes == ["add dummy mcdns0", "up mcdns0", f"add {ADDRESS} to mcdns0",
                            "add fd00::10 to mcdns0"]
    assert la.holder == "mcdns0"
    assert la.done == ["dummy interface mcdns0 created", f"address {ADDRESS} added to mcdns0",
                       "address fd00::10 added to mcdns0"]
    again = local(fake, ADDRESS, "fd00::10")  # the next start: nothing to do
    again.setup()
    assert fake.changes[4:] == []
    assert again.done == [f"address {ADDRESS} already present, left as it is",
                          "address fd00::10 already present, left as it is"]


def test_an_existing_interface_is_used_and_a_downed_dummy_brought_back_up() -> None:
    fake = FakeNetlink()
    fake.links["mcdns0"] = [7, "dummy", False]
    local(fake).setup()
    assert fake.changes == ["up mcdns0", f"add {ADDRESS} to mcdns0"]
    fake.links["mcdns0"][2] = False  # something took it down: the address answers nothing
    la = local(fake)
    la.setup()
    assert fake.changes[2:] == ["up mcdns0"] and "interface mcdns0 brought up" in la.done
    fake.links["eth9"] = [8, "veth", False]  # not ours to bring up: only used
    local(fake, "169.254.20.11", interface="eth9").setup()
    assert fake.changes[3:] == ["add 169.254.20.11 to eth9"]


def test_without_the_dummy_type_the_addresses_go_on_lo() -> None:
    fake = FakeNetlink(dummy=False)
    fake.links["lo"][2] = False  # a fresh network namespace: lo is down
    la = local(fake)
    la.setup()
    assert la.holder == "lo" and fake.addrs[ADDRESS] == 1
    assert fake.changes == ["add dummy mcdns0", "up lo", f"add {ADDRESS} to lo"]
    assert la.done[0] == ("the kernel has no dummy link type: the addresses go on lo "
                          "instead of mcdns0")


def test_an_address_on_another_interface_is_left_alone() -> None:
    fake = FakeNetlink()
    fake.addrs[ADDRESS] = 2  # an administrator put it on eth0
    local(fake).setup()
    assert fake.changes == [] and "mcdns0" not in fake.links


def test_an_address_added_meanwhile_is_fine() -> None:
    fake = FakeNetlink()
    real_add = fake.add_address

    def racing(index: int, ip: str) -> None:
        fake.addrs[ip] = 2  # another process was quicker
        real_add(index, ip)

    fake.add_address = racing  # type: ignore[method-assign]
    la = local(fake)
    la.setup()
    assert la.done == ["dummy interface mcdns0 created"]


def test_no_net_admin_is_one_line_naming_the_capability() -> None:
    with pytest.raises(InterfaceError) as e:
        local(FakeNetlink(refuse=errno.EPERM)).setup()
    assert str(e.value) == (
        "cannot create dummy interface mcdns0: Operation not permitted (setting up the "
        "node-local addresses needs the NET_ADMIN capability: add it to this container, or "
        "put the addresses on the node beforehand)")
    assert "\n" not in str(e.value)


def test_remove_takes_the_addresses_and_the_empty_dummy_away() -> None:
    fake = FakeNetlink()
    local(fake, ADDRESS, "fd00::10").setup()
    la = local(fake, ADDRESS, "fd00::10", "169.254.20.11")
    la.remove()
    assert "mcdns0" not in fake.links and ADDRESS not in fake.addrs
    assert la.done == [f"address {ADDRESS} removed", "address fd00::10 removed",
                       "address 169.254.20.11 not present", "dummy interface mcdns0 deleted"]
    lo = FakeNetlink(dummy=False)
    local(lo).setup()
    local(lo).remove()  # lo itself stays, of course
    assert ADDRESS not in lo.addrs and "lo" in lo.links


@pytest.mark.parametrize(("args", "problem"), [
    (["--address", "300.1.1.1"], "config key '--address': '300.1.1.1' is not an IP address"),
    (["--address", ADDRESS, "--interface", "a/b"], "config key '--interface': 'a/b' is not an "
     "interface name (1-15 characters, no '/', ':' or space)"),
    (["--address", ADDRESS, "--interface", "much-too-long-name"], "is not an interface name"),
])
def test_bad_arguments_are_one_line_and_exit_2(args: list[str], problem: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["setup-interface", *args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("mcdns: error: ") and problem in err[0]


def test_serving_never_imports_pyroute2() -> None:
    """pyroute2 (about 9 MiB) loads in the init container only, never in the server."""
    code = ("import sys\nfrom mcdns import config\nfrom mcdns.app import App\n"
            "cfg = config.build({'listen': ['127.0.0.1:0'], 'state': sys.argv[1], "
            "'role': 'resolver', 'upstreams': ['127.0.0.1:5399'], 'upstream_tcp': True})\n"
            "App(cfg)\nimport mcdns.cli\n"
            "print(sorted(m for m in sys.modules if m.startswith('pyroute2')))")
    out = subprocess.run([sys.executable, "-c", code, str(DEMO_STATE)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == "[]"


# ---- for real, in a network namespace -----------------------------------------------------

NODE_LOCAL = {"nodeLocal": {"enabled": True, "clusterDNS": "10.96.0.10"},
              "config": {"events": False, "pod_cidrs": ["10.244.0.0/16"], "lameduck": 0.5}}


@pytest.fixture(scope="module")
def chart_commands() -> tuple[list[str], list[str], str]:
    """The init container's and the server's arguments, and mcdns.yaml, as the chart
    renders them in node-local mode."""
    with helm.Chart.load(CHART) as chart:
        objs = objects(chart.render(values=NODE_LOCAL, name=RELEASE, namespace=NAMESPACE))
    pod = one(objs, "DaemonSet")["spec"]["template"]["spec"]
    (config,) = [o["data"]["mcdns.yaml"] for o in objs if o["kind"] == "ConfigMap"]
    return pod["initContainers"][0]["args"], pod["containers"][0]["args"], config


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with lo up: a node of its own. Always deleted."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the test creates a network namespace (ip netns add)")
    needs("ip")
    needs("dig")
    name = f"mcdns-nl-{os.getpid()}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], timeout=10)


def in_ns(ns: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout)


def mcdns_in(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return in_ns(ns, sys.executable, "-m", "mcdns", *args)


def holder(ns: str) -> str | None:
    """The interface that holds ADDRESS in ``ns`` (None: none)."""
    out = subprocess.run(["ip", "-n", ns, "-o", "addr", "show", "to", f"{ADDRESS}/32"],
                         capture_output=True, text=True, check=True, timeout=10).stdout
    return out.split()[1] if out.strip() else None


def dig(ns: str, *args: str) -> tuple[str, float]:
    started = time.monotonic()
    out = in_ns(ns, "dig", f"@{ADDRESS}", "+tries=1", "+time=5", *args).stdout
    return out, time.monotonic() - started


@contextlib.contextmanager
def server(ns: str, args: list[str], config: str) -> Iterator[subprocess.Popen[str]]:
    """The chart's server command in ``ns`` (its mcdns.yaml from a temp dir, the demo
    state instead of the API, logfmt to read the start-up line); SIGTERM at the end."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mcdns.yaml"
        path.write_text(config, encoding="utf-8")
        argv = [str(path) if a == "/etc/mcdns/mcdns.yaml" else a for a in args]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "mcdns", *argv,
             "--state", str(DEMO_STATE), "--log-format", "logfmt"],
            stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert proc.stderr is not None
            seen = []
            for line in proc.stderr:
                seen.append(line)
                if m := STARTED.search(line):
                    assert (m.group(1), m.group(2)) == ("53", "9254"), line
                    break
            else:
                raise AssertionError("mcdns did not start:\n" + "".join(seen))
            yield proc
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def http_get(ns: str, path: str) -> tuple[int, str]:
    code = ("import sys, urllib.request, urllib.error\n"
            "try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=5)\n"
            "except urllib.error.HTTPError as e:\n    r = e\n"
            "print(r.status); print(r.read().decode(), end='')")
    done = in_ns(ns, sys.executable, "-c", code, f"http://{ADDRESS}:9254{path}")
    assert done.returncode == 0, done.stderr
    status, _, body = done.stdout.partition("\n")
    return int(status), body


def test_the_charts_commands_run_a_node_local_mcdns(
        netns: str, chart_commands: tuple[list[str], list[str], str]) -> None:
    init, args, config = chart_commands
    assert init[0] == "setup-interface"
    # 1. the init container: the address on a dummy interface, or on lo without one
    first = mcdns_in(netns, *init)
    assert first.returncode == 0, first.stderr
    no_dummy = "the kernel has no dummy link type" in first.stdout
    assert holder(netns) == ("lo" if no_dummy else "mcdns0"), first.stdout
    assert f"mcdns: address {ADDRESS} added to {holder(netns)}" in first.stdout.splitlines()
    # 2. the server binds it and answers on it; HTTP through the address too
    with server(netns, args, config):
        out, _ = dig(netns, NAME, "+short")
        assert out.split() == [IMPORT_IP]
        out, _ = dig(netns, NAME, "+short", "+tcp")
        assert out.split() == [IMPORT_IP]
        assert http_get(netns, "/health") == (200, "OK\n")
        assert http_get(netns, "/ready")[0] == 200
        status, metrics = http_get(netns, "/metrics")
        assert status == 200
        assert re.search(r'^mcdns_dns_requests_total\{[^}]*proto="udp"[^}]*\} [1-9]', metrics,
                         re.M), "the dig above is not counted"
    # 3. the address outlives the server: refused at once, not a timeout
    assert holder(netns) is not None
    out, took = dig(netns, NAME)
    assert "connection refused" in out and took < 2.0, (out, took)
    # 4. the next pod: the init container finds the address, the server starts again
    second = mcdns_in(netns, *init)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [f"mcdns: address {ADDRESS} already present, "
                                          "left as it is"]
    with server(netns, args, config):
        assert dig(netns, NAME, "+short")[0].split() == [IMPORT_IP]
    # 5. after an uninstall: --remove takes it away
    gone = mcdns_in(netns, *init, "--remove")
    assert gone.returncode == 0, gone.stderr
    assert f"mcdns: address {ADDRESS} removed" in gone.stdout and holder(netns) is None


def test_without_net_admin_setup_is_one_line_and_exit_1(netns: str) -> None:
    needs("setpriv")
    done = in_ns(netns, "setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin",
                 sys.executable, "-m", "mcdns", "setup-interface", "--address", ADDRESS)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert re.fullmatch(r"mcdns: error: cannot create dummy interface mcdns0: Operation not "
                        r"permitted \(setting up the node-local addresses needs the NET_ADMIN "
                        r"capability: .*\)", line), line
    assert holder(netns) is None


# ---- upstream_tcp against a real upstream ------------------------------------------------


def protocols(knot: Any) -> dict[str, int]:
    out = subprocess.run(["knotc", "-c", str(knot.conf), "stats", "mod-stats.request-protocol"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return {p: int(n) for p, n in re.findall(r"request-protocol\[(\w+)\] = (\d+)", out)}


@pytest.mark.parametrize("tcp", [True, False], ids=["upstream_tcp", "udp"])
def test_upstream_tcp_forwards_over_tcp_only(tcp: bool) -> None:
    from knot import ZONE, Knot

    needs("knotd")
    needs("knotc")
    with Knot() as knot:
        before = protocols(knot)
        cfg = make_config(role="resolver", upstreams=[knot.address], upstream_tcp=tcp,
                          state=str(DEMO_STATE))
        with running(cfg) as srv:
            for name in (f"www.{ZONE}", f"txt.{ZONE}", f"missing.{ZONE}"):
                assert srv.query(name).rcode() in (0, 3)
            assert srv.query(f"www.{ZONE}").answer[0][0].address == "192.0.2.1"
            (up,) = srv.app.forwarder.upstreams if srv.app.forwarder else ()
            assert up.tcp is tcp and up.stats.errors == 0
        after = protocols(knot)
    grew = {p for p in after if after[p] > before.get(p, 0)}
    assert grew == ({"tcp4"} if tcp else {"udp4"})
    assert after["tcp4" if tcp else "udp4"] - before.get("tcp4" if tcp else "udp4", 0) == 3


def test_upstream_tcp_flag_reaches_the_config() -> None:
    args = cli.parser().parse_args(["serve", "--upstream-tcp", "true", "--allow", "10.0.0.0/8",
                                    "--allow", "127.0.0.0/8"])
    assert cli.overrides(args) == {"upstream_tcp": True, "allow": ["10.0.0.0/8", "127.0.0.0/8"]}
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["serve", "--upstream-tcp", "yes"])
    assert "--upstream-tcp" in cli.worker_command(make_config(), cli.overrides(args))


# ---- the API load: watches per instance, times the instances ------------------------------

NODES, PODS_PER_NODE = 100, 30


async def watches_of(instances: int) -> int:
    """Open watch streams of ``instances`` mcdns (role resolver, as the DaemonSet runs)
    against one API server, once all have synced."""
    api = FakeKubeAPI()
    await api.start()
    tasks = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = Path(tmp) / "kubeconfig"
            kubeconfig.write_text(api.kubeconfig())
            cfg = Config(kubeconfig=str(kubeconfig), role="resolver", events=False)
            sources = []
            for _ in range(instances):
                store = Store(source_names(cfg))
                source = KubeSource(cfg, store)
                sources.append((store, source))
                tasks.append(asyncio.create_task(source.run()))
            want = sum(len(s.watchers) for _, s in sources)
            async with asyncio.timeout(20):
                while not (all(st.synced for st, _ in sources) and want
                           and len(api.watches) == want):
                    await asyncio.sleep(0.02)
                    want = sum(len(s.watchers) for _, s in sources)
            return len(api.watches)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await api.stop()


def test_api_watches_node_local_vs_per_pod_sidecars() -> None:
    """Measured: one instance opens 5 watches, and N instances 5 x N. So for 100 nodes x
    30 pods the node-local DaemonSet opens 500 and per-pod watching sidecars 15,000, the
    figures docs/node-local.md gives."""
    one_instance = asyncio.run(watches_of(1))
    three = asyncio.run(watches_of(3))
    assert one_instance == 5 and three == 3 * one_instance
    node_local, sidecars = NODES * one_instance, NODES * PODS_PER_NODE * one_instance
    assert (node_local, sidecars) == (500, 15_000)
    doc = (ROOT / "docs" / "node-local.md").read_text(encoding="utf-8")
    assert f"{node_local:,}" in doc and f"{sidecars:,}" in doc

