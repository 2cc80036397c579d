"""``/rebalancing/plan`` and ``/rebalancing/apply`` over HTTP: v1/v2 contracts against JSON fixtures, for
the REST answer and for the ``rebalancing_planned`` ControlBus event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import make_config

FIXTURES = Path(__file__).parent / "fixtures" / "rebalancing"


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _subset(expected: Any, actual: Any) -> bool:
    """Every key of ``expected`` is in ``actual`` with the same value (recursively)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _subset(v, actual[k]) for k, v in expected.items())
    return expected == actual


def test_plan_v1_matches_the_reference_worked_example(api) -> None:  # type: ignore[no-untyped-def]
    r = api.client.post("/rebalancing/plan", json=_fixture("plan_request.json"))
    assert r.status_code == 200 and r.json() == _fixture("plan_response_v1.json")
    assert api.client.get("/worlds/w1/audit").status_code == 404  # a plan stores nothing


def test_v2_needs_compat_and_alpha_requirement_refuses_v1(harness_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    h = harness_factory(make_config(tmp_path, compat_rebalance_v2=True, alpha_metrics_required=True))
    v1 = h.client.post("/rebalancing/plan", json=_fixture("plan_request.json"))
    assert v1.status_code == 400 and "schema_version>=2" in v1.json()["detail"]
    body = {**_fixture("plan_request.json"), "schema_version": 2,
            "realized_returns_by_world": {"w1": [0.01, -0.02, 0.03]}}
    v2 = h.client.post("/rebalancing/plan", json=body).json()
    assert v2["schema_version"] == 2 and v2["rebalance_intent"] == {"meta": {}}
    w1 = v2["alpha_metrics"]["per_world"]["w1"]
    assert set(w1) == {f"alpha_performance.{m}" for m in
                       ("sharpe", "max_drawdown", "win_ratio", "profit_factor", "car_mdd", "rar_mdd")}
    assert w1["alpha_performance.win_ratio"] > 0 and all(v == 0.0 for v in v2["alpha_metrics"]["per_world"]["w2"].values())


def test_modes_and_bad_input_are_refused_with_the_reference_statuses(api) -> None:  # type: ignore[no-untyped-def]
    base = _fixture("plan_request.json")
    assert api.client.post("/rebalancing/plan", json={**base, "mode": "hybrid"}).status_code == 501
    overlay = api.client.post("/rebalancing/plan", json={**base, "mode": "overlay"})
    assert overlay.status_code == 422 and "overlay config is required" in overlay.json()["detail"]
    assert api.client.post("/rebalancing/plan", json={**base, "total_equity": "lots"}).status_code == 422


def test_apply_audits_and_announces_one_event_per_world(harness_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    h = harness_factory(make_config(tmp_path, compat_rebalance_v2=True))
    body = {**_fixture("plan_request.json"), "schema_version": 2, "rebalance_intent": {"meta": {"reason": "quarterly"}}}
    r = h.client.post("/rebalancing/apply", json=body)
    assert r.status_code == 200 and r.json()["schema_version"] == 2
    h.system.relay_now()
    events = {e.key: e for e in h.bus.of_type("rebalancing_planned")}
    assert sorted(events) == ["w1", "w2"] and {e.topic for e in events.values()} == {"rebalancing_planned"}
    assert _subset(_fixture("event_w1_v2.json"), events["w1"].event)
    assert events["w1"].event["data"]["idempotency_key"].startswith("rebalancing_planned:w1:blake3:")
    audit = h.client.get("/worlds/w1/audit")  # recorded even for a world this service does not hold
    assert audit.status_code == 200 and [a["event"] for a in audit.json()] == ["rebalancing_planned"]
