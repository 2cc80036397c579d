"""The whole Core Loop over HTTP, as the SDK and a Gateway drive it: evaluate -> the run is evaluated ->
paper stage -> the campaign tick suggests promotion -> approve -> a plan with no blocked reasons ->
promotion apply -> the world is live -> live monitoring reports on it. On a world that may not be live the
same loop ends blocked, with the default-safe rule's reason, and nothing goes live. A restart in the middle
loses nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock, Harness, make_config

POLICY = {
    "thresholds": {"sharpe": {"metric": "sharpe", "min": 0.5}},
    "campaign": {"backtest": {"window": "1d"}, "paper": {"window": "2d"}, "common": {"min_trades_total": 10}},
    "governance": {"live_promotion": {"mode": "manual_approval", "cooldown": "1h", "max_live_slots": 3,
                                      "require_risk_snapshot": False}},
    "live_monitoring": {"sharpe_min": 0.0, "dd_max": 0.5},
}
EVIDENCE = {"s1": {"sharpe": 1.3, "n_trades_total": 40}}


class Loop:
    """One world's loop, step by step, over a harness that a restart may replace."""

    def __init__(self, h: Harness, world_id: str) -> None:
        self.h, self.world = h, world_id

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        r = self.h.client.request(method, f"/worlds/{self.world}{path}", **kwargs)
        assert r.status_code == expect, (method, path, r.status_code, r.text)
        return r.json()

    def evaluate(self, **body: Any) -> dict[str, Any]:
        return self.call("POST", "/evaluate", json={"strategy_id": "s1", "metrics": EVIDENCE, **body})

    def tick(self) -> dict[str, Any]:
        [action] = self.call("POST", "/campaign/tick")["actions"]
        return action


def _start(h: Harness, world_id: str, allow_live: bool) -> Loop:
    body = {"id": world_id, "allow_live": allow_live, "dataset_fingerprint": "ohlcv:2026-05-31"}
    assert h.client.post("/worlds", json=body).status_code == 201
    assert h.client.post(f"/worlds/{world_id}/policies", json={"policy": POLICY}).status_code == 200
    return Loop(h, world_id)


def _through_paper(loop: Loop, clock: FakeClock) -> str:
    """Backtest for a day, then paper for two: returns the paper run the tick proposes to promote."""
    loop.evaluate(run_id="bt-1", stage="backtest")
    run = loop.call("GET", "/strategies/s1/runs/bt-1")
    assert (run["status"], run["summary"]["status"], run["summary"]["recommended_stage"]) == (
        "evaluated", "pass", "backtest_only")
    assert loop.tick()["reason"] == "continue_backtest_campaign"
    clock.advance(days=1)
    loop.evaluate(run_id="bt-1", stage="backtest")
    to_paper = loop.tick()
    assert (to_paper["action"], to_paper["stage"], to_paper["reason"]) == ("evaluate", "paper", "promotable_to_paper")
    paper_run = to_paper["suggested_run_id"]
    answer = loop.call("POST", "/evaluate", json={**to_paper["suggested_body"], "metrics": EVIDENCE})
    assert answer["evaluation_run_id"] == paper_run
    clock.advance(days=2)
    loop.evaluate(run_id=paper_run, stage="paper")
    return paper_run


@pytest.fixture
def loop_api(harness_factory, tmp_path: Path, sql_dsn: str, clock: FakeClock) -> Harness:
    return harness_factory(make_config(tmp_path, sql_dsn), clock=clock)


def test_a_strategy_goes_from_evaluation_to_live_and_is_monitored(loop_api: Harness, clock: FakeClock) -> None:
    loop = _start(loop_api, "w1", allow_live=True)
    paper_run = _through_paper(loop, clock)
    proposal = loop.tick()
    assert (proposal["action"], proposal["suggested_params"]) == (
        "manual_approval_required", {"strategy_id": "s1", "run_id": paper_run})
    loop.call("POST", "/promotions/live/approve", json={
        "strategy_id": "s1", "run_id": paper_run, "reason": "desk review", "actor": "head-of-risk"})
    plan = loop.call("GET", "/promotions/live/plan", params=proposal["suggested_params"])
    assert plan["blocked_reasons"] == [] and plan["plan"] == {"activate": ["s1"], "deactivate": []}
    promoted = loop.call("POST", "/promotions/live/apply",
                         json={"strategy_id": "s1", "run_id": paper_run, "apply_run_id": "promote-1"})
    assert promoted["summary"]["override_status"] == "approved"
    assert loop.call("GET", "")["execution_domain"] == "live"
    activation = loop.call("GET", "/activation", params={"strategy_id": "s1", "side": "long"})
    assert (activation["active"], activation["effective_mode"]) == (True, "live")
    assert loop.call("GET", "/apply/promote-1")["phase"] == "completed"

    clock.advance(hours=6)
    loop.evaluate(run_id="live-1", stage="live", metrics={"s1": {"sharpe": 1.1, "live_returns": [0.01, -0.002, 0.004]}})
    assert loop.call("POST", "/live-monitoring/run") == {"world_id": "w1", "updated": 1}
    report = loop.call("GET", "/live-monitoring/report")
    [row] = report["strategies"]
    assert (row["strategy_id"], row["run_id"], row["live_monitoring"]["status"]) == ("s1", "live-1", "pass")
    assert report["summary"]["counts"]["pass"] == 1
    assert loop.tick()["action"] == "observe_live"
    assert 'world_apply_duration_ms_count{outcome="completed"} 1.0' in loop_api.client.get("/metrics").text


def test_a_world_that_may_not_be_live_ends_the_loop_blocked_with_the_reason(loop_api: Harness,
                                                                            clock: FakeClock) -> None:
    loop = _start(loop_api, "w2", allow_live=False)
    paper_run = _through_paper(loop, clock)
    assert loop.tick()["action"] == "manual_approval_required"
    loop.call("POST", "/promotions/live/approve", json={
        "strategy_id": "s1", "run_id": paper_run, "reason": "desk review", "actor": "head-of-risk"})
    plan = loop.call("GET", "/promotions/live/plan", params={"strategy_id": "s1", "run_id": paper_run})
    assert "allow_live_disabled" in plan["blocked_reasons"]
    refused = loop.call("POST", "/promotions/live/apply", expect=409,
                        json={"strategy_id": "s1", "run_id": paper_run, "apply_run_id": "promote-1"})
    assert "allow_live_disabled" in refused["detail"]
    assert loop.call("GET", "")["execution_domain"] == "backtest"
    state = loop.call("GET", "/activation")["state"]
    assert all(e["effective_mode"] != "live" for sides in state.values() for e in sides.values())
    assert loop.call("GET", "/apply/promote-1", expect=404)


def test_a_restart_in_the_middle_of_the_loop_loses_nothing(harness_factory, tmp_path: Path, sql_dsn: str,
                                                           clock: FakeClock) -> None:
    config = make_config(tmp_path, sql_dsn)
    first = harness_factory(config, clock=clock)
    loop = _start(first, "w1", allow_live=True)
    paper_run = _through_paper(loop, clock)
    loop.call("POST", "/promotions/live/approve", json={
        "strategy_id": "s1", "run_id": paper_run, "reason": "desk review", "actor": "head-of-risk"})
    reads = ["/strategies/s1/runs", f"/strategies/s1/runs/{paper_run}", f"/strategies/s1/runs/{paper_run}/history",
             "/campaign/status", "/promotions/live/candidates"]
    before = {path: loop.call("GET", path) for path in reads}
    first.runtime.close()
    loop.h = harness_factory(config, clock=clock)
    assert {path: loop.call("GET", path) for path in reads} == before
    loop.call("POST", "/promotions/live/apply",
              json={"strategy_id": "s1", "run_id": paper_run, "apply_run_id": "promote-1"})
    assert loop.call("GET", "")["execution_domain"] == "live"
