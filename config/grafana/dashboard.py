"""The mcdns Grafana dashboard, built with grafana-foundation-sdk (Grafana Labs' typed
builders for dashboards, generated from Grafana's own schemas).

``make dashboard`` runs this in a virtualenv of its own with the SDK version the Makefile
pins, and writes helm/mcdns/files/mcdns-dashboard.json: the one source (the chart's
dashboard ConfigMap reads it; config/grafana/mcdns-dashboard.json is a link to it).
``--check`` compares instead of writing (tests/test_prometheus.py runs it). Every query
is run against a real Prometheus scraping a live mcdns by tests/test_prometheus.py.

Queries select ``job=~"$job", instance=~"$instance"`` (template variables read from
``mcdns_build_info``); rates use ``$__rate_interval``. Gauges every replica reports alike
(services by state, failback pending) are shown as the ``max`` over the instances.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import GraphDrawStyle, StackingMode
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "helm" / "mcdns" / "files" / "mcdns-dashboard.json"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'job=~"$job", instance=~"$instance"'
RATE = "[$__rate_interval]"
SERVFAIL = 'rcode="SERVFAIL"'
FALLBACK = 'state="fallback"'


def m(metric: str, matchers: str = "") -> str:
    """``metric`` with the dashboard's selector (and more ``matchers``)."""
    return f"{metric}{{{SEL}{', ' + matchers if matchers else ''}}}"


def q(expr: str, legend: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DS)


def series(title: str, about: str, unit: str, *queries: prometheus.Dataquery,
           width: int = 12, stacked: bool = False, bars: bool = False) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(about).unit(unit).datasource(DS)
             .height(8).span(width).min(0).fill_opacity(10).line_width(1))
    if stacked:
        panel = panel.stacking(_stacking())
    if bars:
        panel = panel.draw_style(GraphDrawStyle.BARS).fill_opacity(60)
    for i, query in enumerate(queries):
        panel = panel.with_target(query.ref_id(chr(ord("A") + i)))
    return panel


def _stacking() -> object:
    from grafana_foundation_sdk.builders.common import StackingConfig

    return StackingConfig().mode(StackingMode.NORMAL)


def single(title: str, about: str, unit: str, query: prometheus.Dataquery) -> stat.Panel:
    return (stat.Panel().title(title).description(about).unit(unit).datasource(DS)
            .height(4).span(4).with_target(query.ref_id("A")))


def quantiles(metric: str, by: str, legend: str) -> list[prometheus.Dataquery]:
    """p50 and p99 of histogram ``metric`` by the ``by`` labels."""
    return [q(f"histogram_quantile({p}, sum by ({by}, le) (rate({m(metric + '_bucket')}"
              f"{RATE})))", f"p{int(p * 100)} {legend}") for p in (0.5, 0.99)]


def variables(board: dashboard.Dashboard) -> dashboard.Dashboard:
    board = board.with_variable(
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    board = board.with_variable(
        dashboard.QueryVariable("job").label("Job").datasource(DS)
        .query("label_values(mcdns_build_info, job)").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .current(VariableOption(selected=True, text="mcdns", value="mcdns")))
    return board.with_variable(
        dashboard.QueryVariable("instance").label("Instance").datasource(DS)
        .query('label_values(mcdns_build_info{job=~"$job"}, instance)')
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True).include_all(True).all_value(".*")
        .current(VariableOption(selected=True, text="All", value="$__all")))


def build() -> dashboard.Dashboard:
    board = (dashboard.Dashboard("mcdns").uid("mcdns").tags(["mcdns", "dns", "coredns"])
             .description("mcdns, multi-cluster DNS for Kubernetes: queries, answers, "
                          "failover, the Kubernetes watches and the process.")
             .editable().tooltip(DashboardCursorSync.CROSSHAIR).refresh("30s")
             .time("now-1h", "now").timezone("browser"))
    board = variables(board)
    board = board.with_row(dashboard.Row("Overview"))
    for panel in (
        single("Instances up", "Targets of the job that answered their last scrape.", "none",
               q('sum(up{job=~"$job", instance=~"$instance"})', "up")),
        single("Queries", "DNS requests a second, every zone.", "reqps",
               q(f"sum(rate({m('mcdns_dns_requests_total')}{RATE}))", "queries")),
        single("SERVFAIL", "Share of answers that were SERVFAIL.", "percentunit",
               q(f"(sum(rate({m('mcdns_dns_responses_total', SERVFAIL)}{RATE})) or vector(0))"
                 f" / sum(rate({m('mcdns_dns_responses_total')}{RATE}))", "SERVFAIL")),
        single("Answered by an import", "Local Services answered by their ServiceImport "
               "(failed over, or import-first).", "none",
               q(f"max({m('mcdns_services', FALLBACK)})", "fallback")),
        single("Failbacks pending", "Services whose local side is healthy again, held on "
               "their import until the failback hold-down ends.", "none",
               q(f"max({m('mcdns_failback_pending')})", "pending")),
        single("Panics", "Exceptions while answering (each answered SERVFAIL).", "none",
               q(f"sum(increase({m('mcdns_panics_total')}{RATE}))", "panics")),
    ):
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Queries"))
    for panel in (
        series("Requests by type", "DNS requests a second by query type.", "reqps",
               q(f"sum by (type) (rate({m('mcdns_dns_requests_total')}{RATE}))", "{{type}}"),
               stacked=True),
        series("Requests by zone", "DNS requests a second by zone (\".\": outside every "
               "mcdns zone: forwarded, or refused in the stub role).", "reqps",
               q(f"sum by (zone) (rate({m('mcdns_dns_requests_total')}{RATE}))", "{{zone}}"),
               stacked=True),
        series("Responses by rcode", "Answers a second by response code.", "reqps",
               q(f"sum by (rcode) (rate({m('mcdns_dns_responses_total')}{RATE}))",
                 "{{rcode}}"), stacked=True),
        series("Answers by decision", "Answers for service names a second, by the decision "
               "behind them: local, import (failed over), degraded.", "reqps",
               q(f"sum by (decision) (rate({m('mcdns_answers_total')}{RATE}))",
                 "{{decision}}"), stacked=True),
        series("Latency", "Time from taking a query to the answer being ready, p50 and p99 "
               "by server and zone.", "s",
               *quantiles("mcdns_dns_request_duration_seconds", "server, zone",
                          "{{server}} {{zone}}"), width=24),
        series("Request size", "Query size in bytes, p50 and p99 by server, zone and "
               "protocol.", "bytes",
               *quantiles("mcdns_dns_request_size_bytes", "server, zone, proto",
                          "{{server}} {{zone}} {{proto}}")),
        series("Response size", "Answer size in bytes, p50 and p99 by server, zone and "
               "protocol.", "bytes",
               *quantiles("mcdns_dns_response_size_bytes", "server, zone, proto",
                          "{{server}} {{zone}} {{proto}}")),
    ):
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Failover"))
    for panel in (
        series("Services by state", "healthy: answered by the local Service; fallback: a "
               "local Service answered by its import; degraded: no ready backend.", "none",
               q(f"max by (state) ({m('mcdns_services')})", "{{state}}"), width=8),
        series("Answer switches", "Switches of a service's answer: to_import (failed over), "
               "to_local (failed back), tier (another cluster tier).", "none",
               q(f"max by (direction) (increase({m('mcdns_answer_switches_total')}{RATE}))",
                 "{{direction}}"), width=8, bars=True),
        series("Failback hold-downs", "Services held on their import while the local side's "
               "failback hold-down runs.", "none",
               q(f"max({m('mcdns_failback_pending')})", "pending"), width=8),
        series("Programming latency", "From a watch event (or state file change) to the "
               "changed answer, p50 and p99.", "s",
               q("histogram_quantile(0.5, sum by (le) (rate("
                 f"{m('mcdns_programming_duration_seconds_bucket')}{RATE})))", "p50"),
               q("histogram_quantile(0.99, sum by (le) (rate("
                 f"{m('mcdns_programming_duration_seconds_bucket')}{RATE})))", "p99")),
        series("Kubernetes Events", "Events of answer switches written to the API: created, "
               "updated, dropped (queue full), error.", "none",
               q(f"sum by (result) (increase({m('mcdns_events_total')}{RATE}))", "{{result}}"),
               bars=True),
    ):
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Resolver role: cache and upstreams"))
    hits = f"sum(rate({m('mcdns_cache_hits_total')}{RATE}))"
    misses = f"sum(rate({m('mcdns_cache_misses_total')}{RATE}))"
    for panel in (
        series("Cache hit ratio", "Cache hits over hits and misses.", "percentunit",
               q(f"{hits} / ({hits} + {misses})", "hit ratio"), width=8),
        series("Cache hits and misses", "Lookups a second: hits by type (success, denial) "
               "and misses (forwarded).", "reqps",
               q(f"sum by (type) (rate({m('mcdns_cache_hits_total')}{RATE}))", "hits {{type}}"),
               q(misses, "misses"), width=8),
        series("Cache entries", "Entries in the cache by type.", "none",
               q(f"sum by (type) ({m('mcdns_cache_entries')})", "{{type}}"), width=8),
        series("Upstream latency", "Time of exchanges with each upstream that got a reply, "
               "p99.", "s",
               q("histogram_quantile(0.99, sum by (to, le) (rate("
                 f"{m('mcdns_proxy_request_duration_seconds_bucket')}{RATE})))", "p99 {{to}}")),
        series("Upstream replies", "Replies a second from each upstream by rcode.", "reqps",
               q(f"sum by (to, rcode) (rate({m('mcdns_proxy_request_duration_seconds_count')}"
                 f"{RATE}))", "{{to}} {{rcode}}")),
    ):
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Kubernetes watches"))
    for panel in (
        series("Synced", "1 once a resource's first list completed (0: mcdns is not ready).",
               "none", q(f"min by (resource) ({m('mcdns_kube_synced')})", "{{resource}}"),
               width=8),
        series("Watch restarts", "Watch restarts by resource and reason (timeout and gone "
               "are routine; the others are errors).", "none",
               q(f"sum by (resource, reason) (increase({m('mcdns_kube_watch_restarts_total')}"
                 f"{RATE}))", "{{resource}} {{reason}}"), width=8, bars=True),
        series("Watch events", "Watch events a second by resource and type.", "ops",
               q(f"sum by (resource, type) (rate({m('mcdns_kube_events_total')}{RATE}))",
                 "{{resource}} {{type}}"), width=8),
    ):
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Process"))
    for panel in (
        series("Workers", "DNS processes running (the first included), and workers started "
               "again after one exited.", "none",
               q(m("mcdns_workers"), "{{instance}} workers"),
               q(f"increase({m('mcdns_worker_restarts_total')}{RATE})",
                 "{{instance}} restarts"), width=8),
        series("CPU", "CPU seconds a second of every mcdns process of an instance.", "percentunit",
               q(f"rate({m('process_cpu_seconds_total')}{RATE})", "{{instance}}"), width=8),
        series("Memory", "Resident memory of the first process (the pod's memory is "
               "container_memory_working_set_bytes).", "bytes",
               q(m("process_resident_memory_bytes"), "{{instance}}"), width=8),
    ):
        board = board.with_panel(panel)
    return board


def render() -> str:
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 when {OUT.relative_to(ROOT)} is not what this writes")
    args = parser.parse_args()
    text = render()
    if args.check:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run `make dashboard`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
