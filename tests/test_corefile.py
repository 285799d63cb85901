"""The CoreDNS server blocks, one source in three places: the chart's template (printed by
NOTES.txt), config/coredns/Corefile and the README. They must agree, and their shape is the
safety net: mcdns first, CoreDNS's own kubernetes plugin on loopback when mcdns is down.

The blocks are rendered by the real Helm library; tests/test_coredns_fallback.py runs the
same shape with real servers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from mcdns import config as mcdns_config

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "mcdns"
COREFILE = ROOT / "config" / "coredns" / "Corefile"
README = ROOT / "README.md"
BEGIN, END = "# mcdns: begin", "# mcdns: end\n"
FALLBACK = "127.0.0.1:5301"
# The example values of config/coredns/Corefile and the README's install command.
EXAMPLE: dict[str, Any] = {
    "service": {"clusterIP": "10.96.0.53"},
    "config": {"service_cidrs": ["10.96.0.0/12"], "pod_cidrs": ["10.244.0.0/16"]},
}


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def notes(chart: Any, values: dict[str, Any]) -> str:
    out: dict[str, str] = chart.render(values=values, name="mcdns", namespace="mcdns-system")
    return next(text for path, text in out.items() if path.endswith("NOTES.txt"))


def section(text: str) -> str:
    """The mcdns blocks: from the begin marker to the end marker, inclusive."""
    start = text.index(BEGIN)
    return text[start:text.index(END, start) + len(END)]


def blocks(text: str) -> dict[str, str]:
    """Server blocks by their first line (comments dropped)."""
    body = re.sub(r"#.*", "", section(text))
    return {m.group(1).strip(): m.group(2)
            for m in re.finditer(r"^(\S[^\n{]*)\{\n(.*?)^\}$", body, re.M | re.S)}


def test_corefile_and_readme_are_the_chart_template(chart: Any) -> None:
    rendered = section(notes(chart, EXAMPLE))
    assert section(COREFILE.read_text(encoding="utf-8")) == rendered, (
        "config/coredns/Corefile differs from the chart's template rendered with the "
        f"example values; it should read:\n{rendered}")
    readme = README.read_text(encoding="utf-8")
    assert section(readme) == rendered, "the README's Corefile blocks differ from the chart's"
    assert "--set service.clusterIP=10.96.0.53" in readme
    assert "'config.service_cidrs={10.96.0.0/12}'" in readme
    assert "'config.pod_cidrs={10.244.0.0/16}'" in readme


def test_mcdns_first_then_the_kubernetes_plugin_on_loopback(chart: Any) -> None:
    cfg = mcdns_config.build({**chart.values["config"], **EXAMPLE["config"]})
    got = blocks(notes(chart, EXAMPLE))
    zones = [cfg.zone, "10.96.0.0/12", "10.244.0.0/16"]
    first = got[" ".join(f"{z}:53" for z in zones)]
    assert "forward . 10.96.0.53:53 127.0.0.1:5301 {" in first
    assert re.search(r"^\s+policy sequential$", first, re.M)
    # CoreDNS's defaults (health_check 0.5s, max_fails 2, expire 10s) are the ones the
    # docs rely on: the block must not quietly change them.
    for option in ("health_check", "max_fails", "expire", "max_connect_attempts"):
        assert option not in first, option
    caps = [int(n) for n in re.findall(r"^\s+(?:cache|success \d+|denial \d+) (\d+)", first,
                                       re.M)]
    assert len(caps) == 3 and max(caps) <= cfg.ttl
    for plugin in ("errors", "prometheus :9153", "reload"):
        assert re.search(rf"^\s+{plugin}$", first, re.M), plugin
    # clusterset.local: mcdns only (the stock plugin has no clusterset zone by default)
    clusterset = got[f"{cfg.clusterset_zone}:53"]
    assert re.search(r"^\s+forward \. 10\.96\.0\.53:53$", clusterset, re.M)
    # The fallback: the same zones, bound to loopback, answered by the kubernetes plugin.
    fallback = got[" ".join(f"{z}:5301" for z in zones)]
    assert re.search(r"^\s+bind 127\.0\.0\.1$", fallback, re.M)
    assert re.search(rf"^\s+kubernetes {' '.join(zones)} \{{", fallback, re.M)
    for plugin in ("ready", "prometheus :9153", "errors"):
        assert re.search(rf"^\s+{plugin}$", fallback, re.M), plugin
    assert "forward" not in fallback  # it must never loop back into the first block
    assert len(got) == 3


def test_without_cidrs_reverse_lookups_stay_with_the_dot_block(chart: Any) -> None:
    text = notes(chart, {"service": {"clusterIP": "10.96.0.53"}})
    got = blocks(text)
    assert set(got) == {"cluster.local:53", "clusterset.local:53", "cluster.local:5301"}
    assert "arpa" not in section(text)
    assert "set config.service_cidrs" in text


def test_notes_without_a_fixed_ip_say_where_to_get_it(chart: Any) -> None:
    text = notes(chart, {})
    assert "forward . MCDNS_IP:53 127.0.0.1:5301 {" in text
    assert "get service mcdns -o jsonpath='{.spec.clusterIP}'" in text


def test_notes_roll_back_in_a_safe_order(chart: Any) -> None:
    text = notes(chart, EXAMPLE)
    remove = text.index('remove the blocks between "mcdns: begin" and "mcdns: end"')
    wait = text.index("wait for CoreDNS to reload")
    uninstall = text.index("helm uninstall mcdns -n mcdns-system")
    assert remove < wait < uninstall


def test_resolver_role_notes_do_not_wire_coredns(chart: Any) -> None:
    text = notes(chart, {"config": {"role": "resolver"}})
    assert BEGIN not in text and "forward ." not in text
    assert "CoreDNS needs no change" in text


def test_the_dot_block_is_stock() -> None:
    """The example keeps kubeadm's ".:53" block: nothing outside the markers changes, and
    PTR outside the CIDRs still falls through to the upstream."""
    text = COREFILE.read_text(encoding="utf-8")
    dot = text[text.index("\n.:53 {"):]
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa {" in dot
    assert "fallthrough in-addr.arpa ip6.arpa" in dot
    assert "forward . /etc/resolv.conf" in dot
