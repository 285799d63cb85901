"""The alert rules and the Grafana dashboard, checked by promtool and by a real Prometheus
(Debian's) scraping live mcdns servers.

- ``promtool check rules`` and ``promtool test rules`` (each alert firing and not);
- two live targets in one job, scraped every second with the rules loaded: ``mcdns serve``
  on the demo state (stub role, two workers), and a resolver-role mcdns watching a fake
  Kubernetes API that holds the demo's objects (the watches, Events, the cache and
  forwarding need it), forwarding to Knot and to a dead upstream, the API failing its
  first requests. Queries run all along, the failed-over name among them, and the fake
  API fails ``serve`` back and over again.

Then every expression of the dashboard and of the rules must return series, checked so a
typo'd metric or label name fails (``problems``): the whole expression (a rule's with its
thresholds turned into ``bool`` comparisons and ``absent(x)`` read as ``x``), each of its
selectors alone, and every label it names (matchers, ``by``, ``without``, ``on``, the
legend's ``{{label}}``) on a series of its metrics. Two of CoreDNS's own dashboard
queries (coredns-mixin) work with the prefix swapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import pytest
import yaml
from conftest import DEMO_STATE, ROOT, needs, start_mcdns
from knot import Knot, free_port
from kubeapi import FakeKubeAPI

pytestmark = pytest.mark.timeout(240)

RULES = ROOT / "config" / "prometheus" / "mcdns-rules.yaml"
RULE_TESTS = ROOT / "config" / "prometheus" / "mcdns-rules.test.yaml"
DASHBOARD = ROOT / "config" / "grafana" / "mcdns-dashboard.json"
CHART_FILES = ROOT / "helm" / "mcdns" / "files"
# The dashboard's variables as Grafana fills them in ("All" instances).
DASHBOARD_VARS = {"$__rate_interval": "1m", "$job": "mcdns", "$instance": ".*"}
# Labels the rules drop with `without` that a scrape may not have: Kubernetes service
# discovery adds `pod`; CoreDNS's `view` label is one mcdns leaves out (docs/metrics.md).
MAYBE_ABSENT = {"pod", "view"}
SCRAPES = 10  # of each target before the expressions are read


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    needs("promtool")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60,
                          cwd=RULES.parent)


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 11 rules found" in done.stdout


def test_promtool_test_rules() -> None:
    done = promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rule_tests_cover_every_alert_firing_and_not() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"]
              for r in g["rules"]}
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for c in t["alert_rule_test"]]
    assert {c["alertname"] for c in cases if c["exp_alerts"]} == alerts
    assert {c["alertname"] for c in cases if not c["exp_alerts"]} == alerts


def test_config_files_are_links_to_the_charts() -> None:
    """One source: config/ links to the files the chart renders."""
    for path, name in ((RULES, "mcdns-rules.yaml"), (DASHBOARD, "mcdns-dashboard.json")):
        assert path.is_symlink(), path
        assert path.resolve() == (CHART_FILES / name).resolve()


def test_dashboard_is_what_its_generator_writes() -> None:
    """The JSON is config/grafana/dashboard.py's output (grafana-foundation-sdk, in a
    virtualenv of its own made by the Makefile): `make dashboard` rewrites it."""
    done = subprocess.run(["make", "-s", "dashboard-check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_shape() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert (board["uid"], board["title"]) == ("mcdns", "mcdns")
    panels = board["panels"]
    titles = [p["title"] for p in panels if p["type"] != "row"]
    assert len(titles) == len(set(titles))
    cells = set()
    for p in panels:  # on the 24-column grid, no two panels overlap
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(g["x"] + dx, g["y"] + dy) for dx in range(g["w"]) for dy in range(g["h"])}
        assert not cells & mine, p["title"]
        cells |= mine
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert p["targets"] and p["description"], p["title"]
            for t in p["targets"]:
                assert 'job=~"$job", instance=~"$instance"' in t["expr"], t["expr"]
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["datasource", "job", "instance"]


# ---- expressions and how they are checked ---------------------------------------------

KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?\s*(\()?")
MATCHER = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"')


def relaxed(expr: str) -> str:
    """A rule's expression without its thresholds: comparisons with a number become
    ``bool`` comparisons (every series, 0 or 1) and ``absent(x)`` is ``x``."""
    out = re.sub(r"(==|!=|>=|<=|>|<)\s*(?=[-+]?[0-9.])", r"\1 bool ", expr)
    while m := re.search(r"\babsent\s*\(", out):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(out[i], 0)
            i += 1
        out = out[:m.start()] + "(" + out[m.end():i - 1] + ")" + out[i:]
    return out


def selectors(expr: str) -> list[str]:
    """The vector selectors of ``expr``: ``name{matchers}`` (functions, keywords, label
    lists and ranges left out)."""
    text = re.sub(r"\[[^\]]*\]", " ", GROUPING.sub(" ", expr))
    return [name + (matchers or "") for name, matchers, call in SELECTOR.findall(text)
            if not call and name.lower() not in KEYWORDS]


def label_names(expr: str) -> tuple[set[str], set[str]]:
    """(labels that must exist, labels a ``without``/``ignoring`` may name absent)."""
    must = {name for sel in selectors(expr) for name in MATCHER.findall(sel)}
    optional = set()
    for kind, names in GROUPING.findall(expr):
        found = {n.strip() for n in names.split(",") if n.strip()}
        (optional if kind in ("without", "ignoring") else must).update(found)
    return must, optional


class Prometheus:
    """The HTTP API of a running Prometheus."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        result: list[dict[str, Any]] = data["result"]
        return result


def problems(prom: Prometheus, expr: str, legend: str = "") -> list[str]:
    """Why ``expr`` fails to return data, empty when it does: the expression, each of its
    selectors, each label it names (and its legend's) on its metrics' series."""
    out = []
    result = prom.query(expr)
    if not result:
        out.append("no series")
    for sel in selectors(expr):
        if not prom.query(sel):
            out.append(f"no series for {sel}")
    names = "|".join(sorted({s.split("{")[0] for s in selectors(expr)}))
    must, optional = label_names(expr)
    for label in sorted(must | (optional - MAYBE_ABSENT)):
        if not prom.query(f'group({{__name__=~"{names}", {label}!=""}})'):
            out.append(f"no series of {names} has the label {label}")
    for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend):
        if result and not all(label in r["metric"] for r in result):
            out.append(f"the legend's {label} is not a label of the result")
    return out


def rule_expressions() -> list[tuple[str, str]]:
    doc = yaml.safe_load(RULES.read_text())
    return [(f"{r['alert']}-{r['labels']['severity']}", relaxed(r["expr"].strip()))
            for g in doc["groups"] for r in g["rules"]]


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(panel title and query, expression with the variables filled in, legend)."""
    board = json.loads(DASHBOARD.read_text())
    out = []
    for panel in board["panels"]:
        for t in panel.get("targets", []):
            expr = t["expr"]
            for var, value in DASHBOARD_VARS.items():
                expr = expr.replace(var, value)
            out.append((f"{panel['title']}/{t['refId']}", expr, t.get("legendFormat", "")))
    for var in board["templating"]["list"]:
        if var["type"] == "query":  # label_values(selector, label)
            m = re.fullmatch(r"label_values\((.*), *(\w+)\)", var["query"])
            assert m, var["query"]
            sel = m.group(1).replace("$job", DASHBOARD_VARS["$job"])
            out.append((f"variable {var['name']}", f"group by ({m.group(2)}) ({sel})",
                        f"{{{{{m.group(2)}}}}}"))
    return out


# ---- the live servers ------------------------------------------------------------------

class ApiThread:
    """A FakeKubeAPI on an event loop of its own thread."""

    def __init__(self, api: FakeKubeAPI) -> None:
        self.api = api
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.run(api.start())

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def apply(self, obj: dict[str, Any]) -> None:
        async def apply() -> None:
            self.api.apply(obj)
        self.run(apply())

    def stop(self) -> None:
        self.run(self.api.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def serve_slice(ready: bool) -> dict[str, Any]:
    doc = yaml.safe_load(DEMO_STATE.read_text())
    obj: dict[str, Any] = next(o for o in doc["items"] if o["kind"] == "EndpointSlice"
                               and o["metadata"]["name"] == "serve-x7k2p")
    for ep in obj["endpoints"]:
        ep["conditions"] = {"ready": ready, "serving": ready, "terminating": False}
    return obj


STUB_NAMES = [("serve.default.svc.cluster.local", "A"), ("web.default.svc.cluster.local", "A"),
              ("billing.shop.svc.clusterset.local", "A"), ("db.shop.svc.clusterset.local", "A"),
              ("_http._tcp.web.default.svc.cluster.local", "SRV"),
              ("nothere.default.svc.cluster.local", "AAAA"),
              ("10.10.96.10.in-addr.arpa", "PTR"), ("example.com", "A")]
RESOLVER_NAMES = [*STUB_NAMES[:6], ("www.example.test", "A"), ("short.example.test", "A"),
                  ("absent.example.test", "A"), ("nowhere.invalid", "A")]


@dataclass
class Traffic:
    """Queries to each (port, names) until stopped, some over TCP."""

    targets: list[tuple[int, list[tuple[str, str]]]]
    stop: threading.Event

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            for port, names in self.targets:
                for name, rdtype in names:
                    n += 1
                    ask = dns.query.tcp if n % 5 == 0 else dns.query.udp
                    with contextlib.suppress(OSError, dns.exception.DNSException):
                        ask(dns.message.make_query(name, rdtype), "127.0.0.1", port=port,
                            timeout=3)
            self.stop.wait(0.2)


PROM_CONFIG = """
global: {{scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}}
rule_files: ["{rules}"]
scrape_configs:
  - job_name: mcdns
    static_configs: [{{targets: {targets}}}]
"""


@pytest.fixture(scope="module")
def prom() -> Iterator[Prometheus]:
    needs("prometheus")
    needs("knotd")
    stack = []
    tmp = Path(tempfile.mkdtemp(prefix="mcdns-prometheus-"))
    try:
        knot = Knot()
        knot.start()
        stack.append(knot.stop)
        api = FakeKubeAPI()
        for obj in yaml.safe_load(DEMO_STATE.read_text())["items"]:
            api.apply(obj)
        api.fail(500, times=4)  # the first requests fail: watch restarts, reason http_500
        kube = ApiThread(api)
        stack.append(kube.stop)
        (tmp / "kubeconfig").write_text(api.kubeconfig())
        stub, stub_dns, stub_http = start_mcdns(  # workers need a fixed port
            "--state", str(DEMO_STATE), "--http", "127.0.0.1:0", "--workers", "2",
            "--listen", f"127.0.0.1:{free_port()}")
        _drain(stub)
        stack.append(lambda: _end(stub))
        res, res_dns, res_http = start_mcdns(
            "--kubeconfig", str(tmp / "kubeconfig"), "--role", "resolver", "--http",
            "127.0.0.1:0", "--upstream", knot.address, "--upstream",
            f"127.0.0.1:{free_port()}")  # nothing listens there: a dead upstream
        _drain(res)
        stack.append(lambda: _end(res))
        stop = threading.Event()
        traffic = Traffic([(stub_dns, STUB_NAMES), (res_dns, RESOLVER_NAMES)], stop)
        thread = threading.Thread(target=traffic.run, daemon=True)
        thread.start()
        stack.append(lambda: (stop.set(), thread.join(10)))
        port = free_port()
        (tmp / "prometheus.yml").write_text(PROM_CONFIG.format(
            rules=RULES, targets=json.dumps([f"127.0.0.1:{stub_http}",
                                             f"127.0.0.1:{res_http}"])))
        server = subprocess.Popen(
            ["prometheus", f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.append(lambda: _end(server))
        client = Prometheus(port)
        _wait(client, server)
        time.sleep(3)
        kube.apply(serve_slice(ready=True))  # serve fails back (to_local) ...
        time.sleep(3)
        kube.apply(serve_slice(ready=False))  # ... and over again (to_import)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = client.query(f'count_over_time(up{{job="mcdns"}}[1m]) >= {SCRAPES}')
            if len(got) == 2 and len(client.query('up{job="mcdns"} == 1')) == 2:
                break
            time.sleep(0.5)
        else:
            pytest.fail("Prometheus did not scrape both targets")
        yield client
    finally:
        for end in reversed(stack):
            end()
        shutil.rmtree(tmp, ignore_errors=True)


def _drain(proc: subprocess.Popen[str]) -> None:
    """Read mcdns's log as it comes (a full pipe would block its logging)."""
    assert proc.stderr is not None
    threading.Thread(target=proc.stderr.read, daemon=True).start()


def _end(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def _wait(client: Prometheus, server: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, "prometheus exited"
        try:
            with urllib.request.urlopen(f"{client.base}/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail("prometheus did not become ready")


# ---- the checks ------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expr"), rule_expressions(),
                         ids=[n for n, _ in rule_expressions()])
def test_rule_expression_returns_series(prom: Prometheus, name: str, expr: str) -> None:
    assert problems(prom, expr) == [], expr


@pytest.mark.parametrize(("name", "expr", "legend"), dashboard_targets(),
                         ids=[n for n, _, _ in dashboard_targets()])
def test_dashboard_query_returns_series(prom: Prometheus, name: str, expr: str,
                                        legend: str) -> None:
    assert problems(prom, expr, legend) == [], expr


def test_rules_are_loaded_and_evaluate(prom: Prometheus) -> None:
    rules = [r for g in prom.get("/api/v1/rules")["groups"] for r in g["rules"]]
    assert len(rules) == len(rule_expressions())
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []


@pytest.mark.parametrize("expr", [
    'sum(rate(mcdns_dns_requests_totl{job="mcdns"}[1m]))',  # metric name
    'sum by (tpye) (rate(mcdns_dns_requests_total{job="mcdns"}[1m]))',  # grouping label
    'sum(rate(mcdns_kube_watch_restarts_total{resn!~"timeout"}[1m]))',  # matcher label
    'max(mcdns_services{state="falback"}) or vector(0)',  # matcher value
])
def test_a_typo_is_caught(prom: Prometheus, expr: str) -> None:
    assert problems(prom, expr, "{{type}}") != []


# coredns-mixin (povilasv/coredns-mixin, dashboards/coredns.libsonnet at eb356cf), as
# written there; corednsSelector job="mcdns", instanceLabel instance, $instance all.
COREDNS_QUERIES = [
    'histogram_quantile(0.99, sum(rate(coredns_dns_request_duration_seconds_bucket'
    '{%(corednsSelector)s,%(instanceLabel)s=~"$instance"}[5m])) by (server, zone, le))',
    'sum(coredns_cache_hits_total{%(corednsSelector)s,%(instanceLabel)s=~"$instance"}) / '
    '(sum(coredns_cache_misses_total{%(corednsSelector)s,%(instanceLabel)s=~"$instance"}) + '
    'sum(coredns_cache_hits_total{%(corednsSelector)s,%(instanceLabel)s=~"$instance"}))',
]


@pytest.mark.parametrize("query", COREDNS_QUERIES, ids=["latency-p99", "cache-hit-ratio"])
def test_coredns_dashboard_query_with_the_prefix_swapped(prom: Prometheus, query: str) -> None:
    expr = (query % {"corednsSelector": 'job="mcdns"', "instanceLabel": "instance"}
            ).replace("coredns_", "mcdns_").replace("$instance", ".*")
    result = prom.query(expr)
    values = [float(r["value"][1]) for r in result]
    print(f"\n{expr}\n  -> " + "\n  -> ".join(
        f"{r['metric']} {float(r['value'][1]):.6g}" for r in result))
    assert values and all(math.isfinite(v) and v > 0 for v in values), result
