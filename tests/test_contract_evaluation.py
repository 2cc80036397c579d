"""Evaluation runs over HTTP, on SQLite and PostgreSQL: the reference's routes, shapes and status codes,
the ControlBus events, and a restart that reads every run, override and revision back the same."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Harness, make_config

POLICY = {"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.5}}, "top_k": {"metric": "sharpe", "k": 2}}
RUNS = "/worlds/demo/strategies/s1/runs"
APPROVAL = {"status": "approved", "reason": "reviewed", "actor": "alice", "timestamp": "2026-01-01T00:00:00Z"}


@pytest.fixture
def sql_api(harness_factory, tmp_path, sql_dsn: str) -> Harness:  # type: ignore[no-untyped-def]
    return harness_factory(make_config(tmp_path, sql_dsn))


def _world(h: Harness) -> None:
    assert h.client.post("/worlds", json={"id": "demo"}).status_code == 201
    assert h.client.post("/worlds/demo/policies", json={"policy": POLICY}).status_code == 200


def _events(h: Harness, event_type: str) -> list[dict[str, Any]]:
    h.system.relay_now()  # the outbox relays after commit; flush it before reading the bus
    return [e.event["data"] for e in h.bus.of_type(event_type)]


def _evaluate(h: Harness, **body: Any) -> dict[str, Any]:
    r = h.client.post("/worlds/demo/evaluate", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_evaluate_records_a_run_the_reference_way(sql_api: Harness) -> None:
    _world(sql_api)
    answer = _evaluate(sql_api, strategy_id="s1", run_id="eval-1", stage="backtest", risk_tier="low",
                       metrics={"s1": {"returns": {"sharpe": 1.2, "max_drawdown": 0.1}}})
    assert (answer["active"], answer["evaluation_run_id"], answer["evaluation_run_url"]) == (
        ["s1"], "eval-1", f"{RUNS}/eval-1")
    assert answer["decision"]["world_id"] == "demo" and answer["activation"] is None
    run = sql_api.client.get(f"{RUNS}/eval-1").json()
    assert {k: run[k] for k in ("world_id", "strategy_id", "run_id", "status", "stage", "risk_tier")} == {
        "world_id": "demo", "strategy_id": "s1", "run_id": "eval-1", "status": "evaluated", "stage": "backtest",
        "risk_tier": "low"}
    assert run["metrics"]["returns"]["sharpe"] == 1.2 and run["metrics"]["returns"]["sortino_ratio"] is None
    assert run["validation"]["results"]["performance"] == {
        "status": "pass", "severity": "blocking", "owner": "quant", "reason_code": "performance_ok",
        "reason": "Passed thresholds and ranking", "tags": ["performance", "thresholds"], "details": {"active": True}}
    assert run["summary"]["status"] == "warn" and run["summary"]["recommended_stage"] == "backtest_only"
    assert run["links"] == {"metrics": f"{RUNS}/eval-1/metrics", "history": f"{RUNS}/eval-1/history"}
    assert sql_api.client.get(f"{RUNS}/eval-1/metrics").json() == run["metrics"]
    created = _events(sql_api, "evaluation_run_created")
    assert created == [{"world_id": "demo", "strategy_id": "s1", "run_id": "eval-1", "stage": "backtest",
                        "version": 1, "risk_tier": "low", "status": "warn", "recommended_stage": "backtest_only",
                        "revision": 1, "idempotency_key": "evaluation_run_created:demo:s1:eval-1:1"}]
    audit = [e for e in sql_api.client.get("/worlds/demo/audit").json() if e["event"] == "evaluation_run_recorded"]
    assert len(audit) == 1


def test_an_unnamed_evaluation_names_its_run_after_the_first_strategy(sql_api: Harness) -> None:
    _world(sql_api)
    answer = _evaluate(sql_api, metrics={"s2": {"sharpe": 0.3}, "s1": {"sharpe": 1.2}})
    assert answer["evaluation_run_id"].startswith("eval-s1-") and answer["evaluation_run_id"].endswith("Z")
    listed = sql_api.client.get(RUNS).json()
    assert [r["run_id"] for r in listed] == [answer["evaluation_run_id"]]
    assert sql_api.client.get("/worlds/demo/strategies/s2/runs").json() == []


def test_missing_runs_and_unevaluated_metrics(sql_api: Harness) -> None:
    _world(sql_api)
    assert sql_api.client.get(f"{RUNS}/nope").json() == {"detail": "evaluation run not found"}
    assert sql_api.client.get(f"{RUNS}/nope").status_code == 404
    _evaluate(sql_api, strategy_id="s1", run_id="pending")
    r = sql_api.client.get(f"{RUNS}/pending/metrics")
    assert r.status_code == 409
    assert r.json() == {"detail": {"code": "E_RUN_NOT_EVALUATED", "message": "evaluation run has no metrics yet"}}
    assert sql_api.client.get(f"{RUNS}/pending").json()["status"] == "evaluating"
    assert sql_api.client.get("/worlds/ghost/strategies/s1/runs").status_code == 404


def test_override_rules_and_idempotence(sql_api: Harness) -> None:
    _world(sql_api)
    _evaluate(sql_api, strategy_id="s1", run_id="r1", metrics={"s1": {"sharpe": 1.0}})
    bare = sql_api.client.post(f"{RUNS}/r1/override", json={"status": "approved"})
    assert bare.status_code == 422 and "reason, actor, timestamp" in bare.json()["detail"]
    assert sql_api.client.post(f"{RUNS}/r1/override", json={"status": "maybe"}).status_code == 422
    first = sql_api.client.post(f"{RUNS}/r1/override", json=APPROVAL)
    assert first.status_code == 200 and first.json()["summary"]["override_status"] == "approved"
    again = sql_api.client.post(f"{RUNS}/r1/override", json=APPROVAL)
    assert again.json() == first.json()
    updates = _events(sql_api, "evaluation_run_updated")
    assert [(u["change_type"], u["revision"]) for u in updates] == [("override", 2)]
    assert sql_api.client.post(f"{RUNS}/nope/override", json=APPROVAL).status_code == 404


def test_ex_post_failures_append_and_validate(sql_api: Harness) -> None:
    _world(sql_api)
    _evaluate(sql_api, strategy_id="s1", run_id="r1", metrics={"s1": {"sharpe": 1.0}})
    record = {"category": "live_loss", "reason_code": "dd_breach", "actor": "risk-bot", "severity": "high"}
    r = sql_api.client.post(f"{RUNS}/r1/ex-post-failures", json=record)
    assert r.status_code == 200
    [failure] = r.json()["summary"]["ex_post_failures"]
    assert (failure["status"], failure["source"], failure["severity"]) == ("confirmed", "manual", "high")
    assert failure["recorded_at"].endswith("Z")
    assert sql_api.client.post(f"{RUNS}/r1/ex-post-failures", json={**record, "category": ""}).status_code == 422
    assert sql_api.client.post(f"{RUNS}/r1/ex-post-failures", json={**record, "severity": "dire"}).status_code == 422
    updates = [u["change_type"] for u in _events(sql_api, "evaluation_run_updated")]
    assert updates == ["ex_post_failure"]


def test_cohort_evaluation_shape_and_refusals(sql_api: Harness) -> None:
    _world(sql_api)
    body = {"campaign_id": "camp-1", "run_id": "cohort-1",
            "metrics": {"s1": {"sharpe": 1.2}, "s2": {"sharpe": 0.9}, "s3": {"sharpe": 0.1}}}
    r = sql_api.client.post("/worlds/demo/evaluate-cohort", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"campaign_id": "camp-1", "run_id": "cohort-1", "candidates": ["s1", "s2", "s3"],
                        "active": ["s1", "s2"], "evaluation_runs": {
                            sid: f"/worlds/demo/strategies/{sid}/runs/cohort-1" for sid in ("s1", "s2", "s3")}}
    s3 = sql_api.client.get("/worlds/demo/strategies/s3/runs/cohort-1").json()
    assert s3["summary"]["campaign_id"] == "camp-1" and s3["summary"]["status"] == "fail"
    missing = sql_api.client.post("/worlds/demo/evaluate-cohort", json={**body, "candidates": ["s1", "s9"]})
    assert missing.status_code == 422 and "missing metrics sources: s9" in missing.json()["detail"]
    assert sql_api.client.post("/worlds/demo/evaluate-cohort", json={"metrics": {}}).status_code == 422


def test_a_restart_reads_runs_overrides_and_history_back_the_same(sql_api: Harness, harness_factory) -> None:
    _world(sql_api)
    _evaluate(sql_api, strategy_id="s1", run_id="r1", stage="paper", metrics={"s1": {"sharpe": 0.2}})
    _evaluate(sql_api, strategy_id="s1", run_id="r1", stage="paper", metrics={"s1": {"sharpe": 1.4}})
    sql_api.client.post(f"{RUNS}/r1/override", json=APPROVAL)
    before = {path: sql_api.client.get(path).json() for path in (RUNS, f"{RUNS}/r1", f"{RUNS}/r1/history")}
    history = before[f"{RUNS}/r1/history"]
    assert [h["revision"] for h in history] == [1, 2, 3]
    assert [h["payload"]["summary"]["status"] for h in history] == ["fail", "warn", "warn"]
    assert history[2]["payload"]["summary"]["override_status"] == "approved"
    config = sql_api.config
    sql_api.runtime.close()
    restarted = harness_factory(config)
    assert {path: restarted.client.get(path).json() for path in before} == before
    _evaluate(restarted, strategy_id="s1", run_id="r1", stage="paper", metrics={"s1": {"sharpe": 1.5}})
    assert [h["revision"] for h in restarted.client.get(f"{RUNS}/r1/history").json()] == [1, 2, 3, 4]
