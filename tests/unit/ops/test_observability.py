"""Alert rules, Grafana dashboards and the compose stack against the metrics the workers really export.

Every metric name in a rule or a dashboard query must be exported by the workers (the prometheus_client
registry after importing every service's metrics) or be one Prometheus makes itself (``up``).
``promtool check rules`` runs too when promtool is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import services.registry as registry
from shared.messaging import metrics as runtime_metrics
from tests.unit.ops.promql import metric_names

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
PROMETHEUS = ROOT / "deploy/prometheus/prometheus.yml"
DASHBOARDS = ROOT / "deploy/grafana/dashboards"
DATASOURCES = ROOT / "deploy/grafana/provisioning/datasources/datasources.yaml"
RUNBOOKS = ROOT / "docs/runbooks.md"
COMPOSE = ROOT / "docker-compose.yml"
FROM_PROMETHEUS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}


def exported() -> set[str]:
    """Sample names the workers expose on /metrics: every service spec's metrics plus the runtime's."""
    assert runtime_metrics.PROCESSED is not None
    assert all(s.metrics is not None for s in registry.SPECS)
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL of a dashboard: panel targets (nested rows too) and query variables."""
    out: list[str] = []

    def panels(items: list[dict[str, Any]]) -> None:
        for panel in items:
            out.extend(t["expr"] for t in panel.get("targets", []) if "expr" in t)
            panels(panel.get("panels", []))

    panels(board.get("panels", []))
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var["query"]
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


def test_the_registry_holds_the_workers_metrics() -> None:
    names = exported()
    for expected in (
        "som_messages_processed_total",
        "som_handler_seconds_bucket",
        "som_renewal_payments_total",
        "som_outbox_oldest_seconds",
        "som_timers_due",
        "som_entitlement_sync_lag_seconds",
    ):
        assert expected in names
    assert "som_messages_processed" not in names  # a counter is only ever exposed with _total


def test_every_alert_has_its_fields_and_runbook() -> None:
    rules = alert_rules()
    headings = set(re.findall(r"^## (\S+)$", RUNBOOKS.read_text(), flags=re.MULTILINE))
    assert {r["alert"] for r in rules} == {
        "SomOrderProcessingSlow",
        "SomRenewalPaymentSuccessLow",
        "SomDeadLettersGrowing",
        "SomConsumerLagGrowing",
        "SomOutboxStale",
        "SomWorkerNotReady",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["summary"]
        assert rule["alert"] in headings, f"docs/runbooks.md has no section for {rule['alert']}"
        assert rule["annotations"]["runbook_url"] == f"docs/runbooks.md#{rule['alert'].lower()}"


def test_service_level_thresholds() -> None:
    by_name = {r["alert"]: " ".join(r["expr"].split()) for r in alert_rules()}
    assert "histogram_quantile(0.99," in by_name["SomOrderProcessingSlow"]
    assert by_name["SomOrderProcessingSlow"].endswith("> 0.2")
    assert "< 0.995" in by_name["SomRenewalPaymentSuccessLow"]
    assert "> 30" in by_name["SomOutboxStale"]
    assert "[5m]" in by_name["SomConsumerLagGrowing"]


def balanced(expr: str) -> bool:
    """Brackets pair up outside string literals (a cheap syntax check where promtool is missing)."""
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for ch in re.sub(r'"(?:\\.|[^"\\])*"', '""', expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack


def test_bracket_check_catches_a_typo() -> None:
    assert balanced('sum by (a) (rate(x{l="("}[5m]))')
    assert not balanced("sum(rate(x[5m])")
    assert not balanced("sum(rate(x[5m)])")


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_metrics_are_exported(rule: dict[str, Any]) -> None:
    assert balanced(rule["expr"]), rule["expr"]
    used = metric_names(rule["expr"])
    assert used, f"no metric found in {rule['expr']!r}"
    missing = used - exported() - FROM_PROMETHEUS
    assert not missing, f"{rule['alert']} uses metrics no worker exports: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboard_metrics_are_exported(name: str) -> None:
    board = dashboards()[name]
    queries = dashboard_queries(board)
    assert queries
    for expr in queries:
        assert balanced(expr), expr
        missing = metric_names(expr) - exported() - FROM_PROMETHEUS
        assert not missing, f"{name}: {expr!r} uses metrics no worker exports: {sorted(missing)}"


def test_dashboards_cover_what_the_operators_need() -> None:
    boards = dashboards()
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    used = set().union(*(metric_names(q) for b in boards.values() for q in dashboard_queries(b)))
    for needed in (
        "som_messages_processed_total",  # throughput per worker
        "som_handler_seconds_bucket",  # latency per worker
        "som_consumer_lag",  # lag per group and partition
        "som_message_retries_total",
        "som_dead_letters_total",
        "som_outbox_backlog",
        "som_renewal_payments_total",
        "som_timers_due",
        "som_entitlement_sync_lag_seconds",
    ):
        assert needed in used, f"no dashboard shows {needed}"


def test_dashboards_use_the_provisioned_data_sources() -> None:
    uids = {d["uid"] for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    types = {d["type"] for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    assert {"prometheus", "jaeger"} <= types
    used = set()
    for name, board in dashboards().items():
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in uids, f"{name}: {panel['title']}"
            used.add(panel["datasource"]["type"])
    assert used == {"prometheus", "jaeger"}


def test_prometheus_loads_the_rules_and_compose_mounts_them() -> None:
    prom = yaml.safe_load(PROMETHEUS.read_text())
    compose = yaml.safe_load(COMPOSE.read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    targets = {m.split(":")[1]: m.split(":")[0] for m in mounts}
    for rule_file in prom["rule_files"]:
        assert rule_file in targets, f"{rule_file} is not mounted into the prometheus container"
        assert (ROOT / targets[rule_file]).resolve() == ALERTS


def test_compose_references_are_consistent() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert "grafana" in services
    for name, svc in services.items():
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        deps = svc.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown service {dep}"


def _compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _compose_available(), reason="the docker compose plugin is not installed")
def test_docker_compose_config_validates() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
