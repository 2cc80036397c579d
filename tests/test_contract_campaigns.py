"""Campaigns and live monitoring over HTTP, on SQLite and PostgreSQL: the reference's routes, shapes and
status codes; observation windows that elapse on a fake clock; a tick that writes and emits nothing;
monitoring runs that revise live runs through the world's actor, survive a restart, and run in every world."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import FakeClock, Harness, make_config

SERIES = [0.01, -0.005, 0.02, 0.0]
GOOD = {"returns": {"sharpe": 1.2, "max_drawdown": 0.1}, "sample": {"effective_history_years": 0.5,
                                                                   "n_trades_total": 40}}
CAMPAIGN = {"backtest": {"window": "2d"}, "paper": {"window": "1d"},
            "common": {"min_sample_days": 30, "min_trades_total": 10}}
LIVE_MONITORING = {"sharpe_min": 0.0, "dd_max": 0.05, "lookback_days": 30}



@pytest.fixture
def sql_api(harness_factory, tmp_path, sql_dsn: str, clock: FakeClock) -> Harness:  # type: ignore[no-untyped-def]
    return harness_factory(make_config(tmp_path, sql_dsn), clock=clock)


def _world(h: Harness, world_id: str = "demo", **policy: Any) -> None:
    assert h.client.post("/worlds", json={"id": world_id}).status_code == 201
    body = {"policy": {"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.0}}, **policy}}
    assert h.client.post(f"/worlds/{world_id}/policies", json=body).status_code == 200


def _evaluate(h: Harness, sid: str, run_id: str, stage: str, metrics: dict[str, Any] | None = None,
              world_id: str = "demo") -> None:
    body = {"strategy_id": sid, "run_id": run_id, "stage": stage, "metrics": {sid: GOOD if metrics is None else metrics}}
    r = h.client.post(f"/worlds/{world_id}/evaluate", json=body)
    assert r.status_code == 200, r.text


def _get(h: Harness, path: str, **params: str) -> dict[str, Any]:
    r = h.client.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _post(h: Harness, path: str, **params: str) -> dict[str, Any]:
    r = h.client.post(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


# --- campaign status ---------------------------------------------------------------------------------------


def test_campaign_status_follows_the_windows_as_the_clock_runs(sql_api: Harness, clock: FakeClock) -> None:
    _world(sql_api, campaign=CAMPAIGN)
    _evaluate(sql_api, "s1", "bt-1", "backtest")
    clock.advance(days=1)
    _evaluate(sql_api, "s1", "bt-1", "backtest")  # a revision: the window runs to its updated_at
    body = _get(sql_api, "/worlds/demo/campaign/status")
    assert set(body) == {"world_id", "generated_at", "config", "strategies"}
    assert (body["world_id"], body["generated_at"]) == ("demo", "2026-03-03T09:00:00Z")
    assert body["config"] == {"backtest_window": "2d", "paper_window": "1d", "min_sample_days": 30,
                              "min_trades_total": 10}
    [s1] = body["strategies"]
    assert s1["backtest"] == {"window": "2d", "required_sec": 172800, "observed_sec": 86400, "progress": 0.5,
                              "started_at": "2026-03-02T09:00:00Z", "ended_at": "2026-03-03T09:00:00Z",
                              "satisfied": False}
    assert (s1["phase"], s1["promotable_to_paper"], s1["promotable_to_live"]) == ("backtest_campaign", False, False)
    assert s1["reasons"] == ["missing_paper_run", "backtest_window_incomplete", "paper_window_incomplete"]
    assert (s1["sample_days"], s1["trades_total"], s1["sharpe"], s1["max_drawdown"]) == (182, 40, 1.2, 0.1)
    assert s1["latest_backtest_run_id"] == "bt-1" and s1["latest_paper_run_id"] is None

    clock.advance(days=1)
    _evaluate(sql_api, "s1", "bt-2", "backtest")
    _evaluate(sql_api, "s1", "p-1", "paper")
    [s1] = _get(sql_api, "/worlds/demo/campaign/status")["strategies"]
    assert (s1["backtest"]["progress"], s1["backtest"]["satisfied"]) == (1.0, True)
    assert (s1["phase"], s1["promotable_to_paper"], s1["promotable_to_live"]) == ("paper_campaign", True, False)
    assert (s1["paper"]["observed_sec"], s1["latest_backtest_run_id"]) == (0, "bt-2")

    clock.advance(days=1)
    _evaluate(sql_api, "s1", "p-1", "paper")
    [s1] = _get(sql_api, "/worlds/demo/campaign/status", strategy_id="s1")["strategies"]
    assert (s1["paper"]["satisfied"], s1["promotable_to_live"], s1["reasons"]) == (True, True, [])


def test_campaign_status_refusals(sql_api: Harness) -> None:
    assert sql_api.client.get("/worlds/ghost/campaign/status").status_code == 404
    _world(sql_api, campaign={"paper": {"window": "2 weeks"}})
    r = sql_api.client.get("/worlds/demo/campaign/status")
    assert (r.status_code, r.json()) == (422, {"detail": "invalid duration: '2 weeks'"})
    assert sql_api.client.post("/worlds/demo/campaign/tick").status_code == 422
    bad = sql_api.client.get("/worlds/demo/campaign/status", params={"strategy_id": ""})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "strategy_id"]


def test_a_world_without_runs_or_campaign_section_reports_nothing_to_do(sql_api: Harness) -> None:
    _world(sql_api)
    body = _get(sql_api, "/worlds/demo/campaign/status")
    assert body["config"] == {"backtest_window": None, "paper_window": None, "min_sample_days": None,
                              "min_trades_total": None}
    assert body["strategies"] == []
    assert _post(sql_api, "/worlds/demo/campaign/tick")["actions"] == []


# --- campaign tick -----------------------------------------------------------------------------------------


def _counts(h: Harness) -> tuple[int, int, int]:
    """Audit entries, published events and stored run revisions."""
    audit = len(h.client.get("/worlds/demo/audit", params={"limit": 1000}).json())
    with h.runtime.store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT COUNT(*) FROM evaluation_runs").scalar_one()
    return audit, len(h.bus.events), rows


def test_tick_recommends_one_step_per_strategy_and_writes_nothing(sql_api: Harness) -> None:
    _world(sql_api, campaign={"backtest": {"window": "0d"}, "paper": {"window": "0d"}},
           governance={"live_promotion": {"mode": "auto_apply"}})
    _evaluate(sql_api, "s1", "bt-1", "backtest")
    _evaluate(sql_api, "s2", "paper-1", "paper")
    _evaluate(sql_api, "s3", "live-1", "live")
    before = _counts(sql_api)
    body = _post(sql_api, "/worlds/demo/campaign/tick")
    assert _post(sql_api, "/worlds/demo/campaign/tick") == body  # same clock, same answer
    assert _counts(sql_api) == before
    assert (body["schema_version"], body["world_id"], body["generated_at"]) == (1, "demo", "2026-03-02T09:00:00Z")
    evaluate, auto, observe = body["actions"]
    assert evaluate == {
        "action": "evaluate", "idempotency_key": "evaluate:demo:s1:paper:camp-demo-s1-paper-20260302",
        "strategy_id": "s1", "stage": "paper", "reason": "promotable_to_paper", "requires": ["metrics"],
        "suggested_run_id": "camp-demo-s1-paper-20260302", "suggested_endpoint": "/worlds/demo/evaluate",
        "suggested_method": "POST", "suggested_params": None,
        "suggested_body": {"strategy_id": "s1", "stage": "paper", "risk_tier": "low",
                           "run_id": "camp-demo-s1-paper-20260302"}}
    assert {k: auto[k] for k in ("action", "idempotency_key", "strategy_id", "stage", "suggested_run_id",
                                 "suggested_endpoint", "suggested_method")} == {
        "action": "auto_apply_live", "idempotency_key": "auto_apply_live:demo:s2:live:paper-1", "strategy_id": "s2",
        "stage": "live", "suggested_run_id": "paper-1", "suggested_endpoint": "/worlds/demo/promotions/live/auto-apply",
        "suggested_method": "POST"}
    assert (observe["action"], observe["strategy_id"], observe["idempotency_key"]) == (
        "observe_live", "s3", "observe_live:demo:s3:live:live-1")
    only = _post(sql_api, "/worlds/demo/campaign/tick", strategy_id="s2")["actions"]
    assert [a["strategy_id"] for a in only] == ["s2"]


def test_the_suggested_evaluation_is_accepted_as_it_stands(sql_api: Harness) -> None:
    _world(sql_api)
    _evaluate(sql_api, "s1", "bt-1", "backtest")
    [action] = _post(sql_api, "/worlds/demo/campaign/tick")["actions"]
    assert (action["action"], action["stage"], action["reason"]) == ("evaluate", "paper", "promotable_to_paper")
    body = {**action["suggested_body"], "metrics": {"s1": GOOD}}
    r = sql_api.client.request(action["suggested_method"], action["suggested_endpoint"], json=body)
    assert r.status_code == 200 and r.json()["evaluation_run_id"] == action["suggested_run_id"]
    [action] = _post(sql_api, "/worlds/demo/campaign/tick")["actions"]
    assert (action["action"], action["suggested_params"]) == (
        "manual_approval_required", {"strategy_id": "s1", "run_id": "camp-demo-s1-paper-20260302"})


# --- live monitoring -----------------------------------------------------------------------------------------


def _live_world(h: Harness, world_id: str = "demo") -> None:
    _world(h, world_id, live_monitoring=LIVE_MONITORING)
    _evaluate(h, "s1", "bt-1", "backtest", {"returns": {"sharpe": 2.0}}, world_id)
    _evaluate(h, "s1", "live-1", "live", {"diagnostics": {"live_returns": SERIES}}, world_id)
    _evaluate(h, "s2", "live-1", "live", {"live_returns": [0.01, -0.08, 0.01]}, world_id)


def _counter(h: Harness, line: str) -> float:
    text = h.client.get("/metrics").text
    return float(next(row.split()[-1] for row in text.splitlines() if row.startswith(line + " ")))


def test_a_monitoring_run_revises_live_runs_and_the_report_shows_their_verdicts(sql_api: Harness,
                                                                               clock: FakeClock) -> None:
    _live_world(sql_api)
    report = _get(sql_api, "/worlds/demo/live-monitoring/report")
    assert [(s["strategy_id"], s["run_id"], s["live_monitoring"]) for s in report["strategies"]] == [
        ("s1", "live-1", None), ("s2", "live-1", None)]
    assert report["summary"] == {"counts": {"pass": 0, "warn": 0, "fail": 0}, "total": 2}
    successes = _counter(sql_api, 'live_monitoring_run_total{status="success"}')

    clock.advance(hours=1)
    assert _post(sql_api, "/worlds/demo/live-monitoring/run") == {"world_id": "demo", "updated": 2}
    report = _get(sql_api, "/worlds/demo/live-monitoring/report")
    assert set(report) == {"world_id", "generated_at", "strategies", "summary"}
    s1, s2 = report["strategies"]
    assert set(s1) == {"strategy_id", "run_id", "as_of", "diagnostics", "live_monitoring"}
    assert s1["live_monitoring"] == {
        "status": "pass", "severity": "soft", "owner": "risk", "reason_code": "live_monitoring_ok",
        "reason": "Live monitoring within thresholds", "tags": ["live_monitoring"],
        "details": {"sharpe_mean": s1["diagnostics"]["live_monitoring"]["live_sharpe"], "dd_mean": 0.005,
                    "decay_mean": s1["diagnostics"]["live_monitoring"]["live_vs_backtest_sharpe_ratio"],
                    "lookback_days": 30, "sharpe_min": 0.0, "dd_max": 0.05}}
    assert s1["as_of"] == "2026-03-02T09:00:00Z" and s1["diagnostics"]["live_monitoring"]["backtest_sharpe"] == 2.0
    assert (s2["live_monitoring"]["status"], s2["live_monitoring"]["reason"]) == (
        "fail", "live_sharpe_below_min, live_dd_exceeds_max")
    assert report["summary"] == {"counts": {"pass": 1, "warn": 0, "fail": 1}, "total": 2}

    run = _get(sql_api, "/worlds/demo/strategies/s2/runs/live-1")
    assert (run["revision"], run["updated_at"], run["validation"]["extended_revision"]) == (2, "2026-03-02T10:00:00Z", 1)
    assert run["validation"]["results"]["live_monitoring"]["status"] == "fail"
    sql_api.system.relay_now()  # the reply can overtake the relay: publish everything committed first
    updated = [e.event["data"] for e in sql_api.bus.of_type("evaluation_run_updated")]
    assert [(d["strategy_id"], d["change_type"], d["revision"]) for d in updated] == [
        ("s1", "live_monitoring", 2), ("s2", "live_monitoring", 2)]
    audit = [e for e in sql_api.client.get("/worlds/demo/audit").json() if e["event"] == "evaluation_run_updated"]
    assert [e["result"]["change_type"] for e in audit] == ["live_monitoring", "live_monitoring"]
    assert _counter(sql_api, 'live_monitoring_run_total{status="success"}') == successes + 1
    assert _counter(sql_api, "live_monitoring_run_updated_strategies_total") >= 2

    assert _post(sql_api, "/worlds/demo/live-monitoring/run") == {"world_id": "demo", "updated": 0}
    sql_api.system.relay_now()
    assert len(sql_api.bus.of_type("evaluation_run_updated")) == 2


def test_monitoring_results_survive_a_restart_and_nothing_new_is_not_rewritten(sql_api: Harness, harness_factory,
                                                                            clock: FakeClock) -> None:
    _live_world(sql_api)
    _post(sql_api, "/worlds/demo/live-monitoring/run")
    before = _get(sql_api, "/worlds/demo/live-monitoring/report")
    config = sql_api.config
    sql_api.runtime.close()
    restarted = harness_factory(config, clock=clock)
    assert _get(restarted, "/worlds/demo/live-monitoring/report") == before
    assert _post(restarted, "/worlds/demo/live-monitoring/run")["updated"] == 0


def test_live_monitoring_refusals_and_a_world_without_the_section(sql_api: Harness) -> None:
    assert sql_api.client.get("/worlds/ghost/live-monitoring/report").status_code == 404
    r = sql_api.client.post("/worlds/ghost/live-monitoring/run")
    assert (r.status_code, r.json()) == (404, {"detail": "world not found"})
    _world(sql_api)
    _evaluate(sql_api, "s1", "live-1", "live", {"live_returns": SERIES})
    assert _post(sql_api, "/worlds/demo/live-monitoring/run") == {"world_id": "demo", "updated": 0}


def test_run_all_sends_one_run_to_every_world(sql_api: Harness) -> None:
    assert _post(sql_api, "/worlds/live-monitoring/run-all") == {"results": {}}
    _live_world(sql_api)
    _live_world(sql_api, "live-monitoring")  # a world may carry the route's name: its own routes still work
    _world(sql_api, "quiet")
    assert _post(sql_api, "/worlds/live-monitoring/run-all") == {"results": {"demo": 2, "live-monitoring": 2,
                                                                             "quiet": 0}}
    assert _get(sql_api, "/worlds/live-monitoring/live-monitoring/report")["summary"]["total"] == 2
    assert _get(sql_api, "/worlds/live-monitoring")["id"] == "live-monitoring"
    again = sql_api.client.post("/worlds/live-monitoring/run-all", headers={"X-Correlation-ID": "cron-7"})
    assert again.json() == {"results": {"demo": 0, "live-monitoring": 0, "quiet": 0}}
    assert again.headers["X-Correlation-ID"] == "cron-7"
