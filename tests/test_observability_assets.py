"""The Grafana dashboard and the Prometheus alert rules in ``deploy/`` only name metrics the daemon serves:
``/metrics`` of a running harness, after some traffic, is scraped and every selector of every panel and
rule must be on it. The rules are parsed as PromQL (and checked by ``promtool`` where it is installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "worldservice.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
CONTEXT = {"node_id": "n1", "execution_domain": "backtest", "contract_id": "c1", "dataset_fingerprint": "fp1",
           "code_version": "v1", "resource_policy": "rp1"}
DURATION = re.compile(r"^\d+[smhd]$")


def selectors(expr: str) -> set[str]:
    """Metric names of every vector selector in a PromQL expression (Grafana's ``$__…`` ranges as 5m)."""
    tree = promql_parser.parse(re.sub(r"\$__\w+", "5m", expr))
    names: set[str] = set()
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if type(node).__name__ == "VectorSelector":
            names.add(node.name)
        for attribute in ("expr", "lhs", "rhs", "args", "param", "vector_selector"):
            child = getattr(node, attribute, None)
            stack.extend(child if isinstance(child, list) else [child] if child is not None else [])
    return names


def served_names(text: str) -> set[str]:
    """Every name a query may select: samples, and the families without samples yet (a labelled counter
    nobody incremented) under their exposition names."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def rule_exprs() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


@pytest.fixture
def scraped(api) -> str:  # type: ignore[no-untyped-def]
    c = api.client
    assert c.post("/worlds", json={"id": "w1"}).status_code == 201
    assert c.post("/worlds", json={"id": "w2"}).status_code == 201
    assert c.put("/worlds/w1/activation", json={"strategy_id": "s1", "side": "long", "active": True}).status_code == 200
    assert c.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s1"]}}).status_code == 200
    assert c.get("/worlds/w1/decide").status_code == 200
    upsert = {"run_id": "a1", "total_equity": 1000, "world_allocations": {"w1": 0.5, "w2": 0.5}, "positions": []}
    assert c.post("/allocations", json=upsert).status_code == 200
    assert c.get("/allocations").status_code == 200
    stored = c.post("/worlds/w1/validations/cache", json={**CONTEXT, "result": "valid", "metrics": {"sharpe": 1.0}})
    assert stored.status_code == 200, stored.text
    assert c.post("/worlds/w1/validations/cache/lookup", json=CONTEXT).json()["cached"] is True
    response = c.get("/metrics")
    assert response.status_code == 200
    return response.text


def test_every_metric_of_the_dashboard_and_the_rules_is_served(scraped: str) -> None:
    served = served_names(scraped)
    named = {name for expr in dashboard_exprs() + rule_exprs() for name in selectors(expr)}
    assert named and named - served == set()
    assert 'world_validation_cache_lookups_total{result="hit"} 1.0' in scraped
    assert "cross_context_cache_hit_total 0.0" in scraped  # a same-context hit is not a cross-context one


def test_the_alert_rules_parse_and_are_complete() -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len({group["name"] for group in groups}) == len(groups)
    assert len({rule["alert"] for rule in rules}) == len(rules)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule["alert"]
        assert DURATION.match(rule.get("for", "0m")), rule["alert"]
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        promql_parser.parse(rule["expr"])  # raises on a syntax error
    watched = {name for rule in rules for name in selectors(rule["expr"])}
    for metric in ("world_apply_failure_total", "world_activation_ack_wait_seconds_bucket",
                   "world_allocation_snapshot_stale_total", "worldservice_outbox_pending",
                   "worldservice_activation_projection_dirty_worlds", "cross_context_cache_hit_total"):
        assert metric in watched, metric
    promtool = shutil.which("promtool")
    if promtool:  # an extra check where the machine has it; the checks above run everywhere
        checked = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_covers_each_area_with_well_formed_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    graphs = [panel for panel in panels if panel["type"] != "row"]
    for panel in graphs:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys(), panel["title"]
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    watched = {name for expr in dashboard_exprs() for name in selectors(expr)}
    for metric in ("worldservice_commands_total", "worldservice_command_seconds_bucket", "world_apply_run_total",
                   "world_apply_failure_total", "world_activation_ack_wait_seconds_bucket",
                   "worldservice_outbox_pending", "worldservice_activation_projection_dirty_worlds",
                   "worldservice_resident_world_actors", "worldservice_actor_mailbox_depth",
                   "world_allocation_snapshot_stale_total"):
        assert metric in watched, metric
