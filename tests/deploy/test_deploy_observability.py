"""deploy/prometheus/ and deploy/grafana/: promtool checks the rules, the scrape configuration
and the rules' unit tests; every metric a rule or a dashboard panel names is one the real
server and worker processes export (scraped after one download went through, so the labelled
series exist); the routes the latency queries leave out are real route labels."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from support import tools
from support.seeding import Factory
from support.sse import SSE, open_stream
from support.stack import free_port
from tests.deploy.conftest import StackOn
from tests.helpers import eventually
from tests.host_stack import CHECKOUT
from tests.prerequisites import needs

PROMETHEUS = CHECKOUT / "deploy" / "prometheus"
DASHBOARD = CHECKOUT / "deploy" / "grafana" / "pmd-service.json"
# Series Prometheus makes itself for every target; no process exports them.
SYNTHETIC = {"up"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_WORD = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
    "atan2",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions or
    aggregations (followed by `(`), keywords, label names (inside `{}` or a by/without/on
    clause), strings, or durations (inside `[]`)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _CLAUSE.sub(" ", text)
    names = set()
    for match in _WORD.finditer(text):
        word = match.group()
        if text[match.end() :].lstrip().startswith("(") or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def rule_exprs() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def panel_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_metric_names_are_read_out_of_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, route) (rate(pmd_http_request_duration_seconds_bucket{route!~"/a|b"}[$__rate_interval])))'
    ) == {"pmd_http_request_duration_seconds_bucket"}
    assert metric_names(
        'sum(rate(pmd_http_requests_total{status=~"5.."}[5m])) / sum without (instance) (rate(pmd_http_requests_total[5m] offset 1d)) > 0.01'
    ) == {"pmd_http_requests_total"}
    assert metric_names('sum(up{job="pmd-worker"}) == 0 or absent(up{job="x"})') == {"up"}
    assert metric_names("max(min_over_time(a_b:c[15m])) > 0 and max(deriv(d[1h:1m])) > 1e3") == {
        "a_b:c",
        "d",
    }


def test_the_dashboard_has_a_panel_for_each_concern() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "pmd-service" and dashboard["schemaVersion"] >= 30
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
    named = {name for panel in panels for t in panel["targets"] for name in metric_names(t["expr"])}
    for needed in (
        "pmd_http_requests_total",
        "pmd_http_request_duration_seconds_bucket",
        "pmd_sse_subscribers",
        "pmd_sse_events_sent_total",
        "pmd_arq_queue_depth",
        "bdr_status_total",
        "bdr_processing_duration_seconds_bucket",
        "pmd_gc_pause_max_seconds",
        "pmd_gc_pauses_total",
    ):
        assert needed in named, needed


PROMTOOL = tools.find("promtool")
needs_promtool = needs("deploy", tools.missing(["promtool"]))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, tools.missing(["promtool"])
    return subprocess.run(
        [PROMTOOL, *args],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_promtool
def test_promtool_checks_the_rules_and_the_scrape_config() -> None:
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in rules.stdout
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


async def scrape(http: aiohttp.ClientSession, url: str) -> tuple[set[str], set[str]]:
    """Sample names (with _total, _bucket, _sum, _count as exported) and `route` labels."""
    async with http.get(url) as resp:
        assert resp.status == 200, url
        text = await resp.text()
    names, routes = set(), set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.add(sample.name)
            if "route" in sample.labels:
                routes.add(sample.labels["route"])
    return names, routes


async def test_every_metric_the_rules_and_panels_name_is_exported(
    stack_on: StackOn, factory: Factory
) -> None:
    owner = await factory.user()
    posts = [await factory.post(owner) for _ in range(2)]
    worker_port = free_port()
    # A stream a client closed is counted when the server finds its socket closed: at its next
    # write, which with one event per new request (the first-event hold) may be a ping.
    env = {"METRICS_PORT": str(worker_port), "SSE_PING_SECONDS": "0.5"}
    async with (
        stack_on(**env) as stack,
        aiohttp.ClientSession() as http,
    ):
        base = stack.base
        # One stream opened and closed, one download requested, built and downloaded.
        async with open_stream(http, base + SSE, headers=owner.auth) as stream:
            await stream.opening()
        body = {"post_ids": [p.id for p in posts]}
        async with http.post(base + "/api/pmd/bdr", json=body, headers=owner.auth) as resp:
            assert resp.status == 202
            item: dict[str, Any] = await resp.json()

        async def ready() -> bool:
            async with http.get(f"{base}/api/pmd/bdr/{item['id']}", headers=owner.auth) as r:
                item.update(await r.json())
            return bool(item["status"] == "ready")

        await eventually(ready, 60, "the download ready", interval=0.1)
        async with http.get(base + item["download_url"], headers=owner.auth) as resp:
            assert resp.status == 200
            await resp.read()
        scraped: tuple[set[str], set[str]] = (set(), set())

        async def stream_counted() -> bool:
            nonlocal scraped
            scraped = await scrape(http, base + "/metrics")  # a scrape counts in the next one
            return SSE in scraped[1] and "/metrics" in scraped[1]

        await eventually(stream_counted, 30, "the closed stream counted in the server's metrics")
        server_names, routes = scraped
        worker_names, _ = await scrape(http, f"http://127.0.0.1:{worker_port}/metrics")

    exported = server_names | worker_names
    assert "bdr_status_total" in worker_names  # the worker's own port answered
    assert "pmd_gc_pause_max_seconds" in server_names  # the server process tends its heap
    missing = {}
    for where, exprs in (("alerts.yml", rule_exprs()), ("pmd-service.json", panel_exprs())):
        for expr in exprs:
            unknown = metric_names(expr) - exported - SYNTHETIC
            if unknown:
                missing[f"{where}: {expr}"] = sorted(unknown)
    assert missing == {}, f"not exported by the server or the worker: {missing}"

    # The long-lived routes the latency queries leave out are routes as exported.
    for expr in [*rule_exprs(), *panel_exprs()]:
        for pattern in re.findall(r'route!~"([^"]*)"', expr):
            for alternative in pattern.split("|"):
                route = alternative.replace("\\\\", "\\").replace("\\{", "{").replace("\\}", "}")
                assert route in routes, (route, sorted(routes))
