"""Campaign status and tick as tables over pure functions: windows, shortfalls, phases and each action."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from domain.campaigns import idempotency_key, live_promotion_mode, suggested_run_id
from domain.durations import duration_seconds
from domain.handle import answer, handle
from domain.state import WorldState
from messages.commands import external_command_decoder
from messages.errors import CommandRejected, Refusal

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
GOOD = {"returns": {"sharpe": 1.2, "max_drawdown": 0.1},
        "sample": {"effective_history_years": 0.5, "n_trades_total": 40}}  # 182 sample days
BAD = {"returns": {"sharpe": -1.0}, "sample": {"effective_history_years": 0.5, "n_trades_total": 40}}


def _cmd(kind: str, **fields: Any) -> Any:
    return external_command_decoder.decode(msgspec.json.encode({"kind": kind, "world_id": "w", **fields}))


def _world(campaign: dict[str, Any] | None = None, mode: str | None = None) -> WorldState:
    policy: dict[str, Any] = {"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.0}}}
    if campaign is not None:
        policy["campaign"] = campaign
    if mode is not None:
        policy["governance"] = {"live_promotion": {"mode": mode}}
    state = handle(WorldState(world_id="w"), _cmd("create_world", body={"id": "w"}), T0).state
    return handle(state, _cmd("add_policy", body={"policy": policy}), T0).state


def _run(state: WorldState, sid: str, run_id: str, stage: str, at: timedelta,
         metrics: dict[str, Any] | None = None) -> WorldState:
    body = {"strategy_id": sid, "run_id": run_id, "stage": stage, "metrics": {sid: GOOD if metrics is None else metrics}}
    return handle(state, _cmd("evaluate", body=body), T0 + at).state


def _status(state: WorldState, now: datetime = T0, **query: Any) -> Any:
    return answer(state, _cmd("get_campaign_status", **query), now).reply


def _tick(state: WorldState, now: datetime = T0, **query: Any) -> list[Any]:
    return answer(state, _cmd("campaign_tick", **query), now).reply.actions


# --- durations --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("2d", 172800), ("1.5h", 5400), ("90s", 90), ("15m", 900), ("0d", 0), (" 3 D ", 259200), ("0.5s", 0),
    (None, None), ("", None), ("  ", None),
])
def test_durations_parse_to_whole_seconds(text: str | None, seconds: int | None) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["2w", "2 weeks", "-1d", "d", "1.d", "1e3s", "P1D", "1d2h"])
def test_other_durations_are_a_422_naming_the_value(text: str) -> None:
    with pytest.raises(CommandRejected) as refused:
        duration_seconds(text)
    assert refused.value.refusal == Refusal.UNPROCESSABLE and refused.value.detail == f"invalid duration: {text.strip()!r}"


def test_a_bad_window_in_the_policy_refuses_status_and_tick() -> None:
    state = _world({"paper": {"window": "a fortnight"}})
    for kind in ("get_campaign_status", "campaign_tick"):
        with pytest.raises(CommandRejected) as refused:
            answer(state, _cmd(kind), T0)
        assert (refused.value.refusal, refused.value.detail) == (Refusal.UNPROCESSABLE, "invalid duration: 'a fortnight'")


# --- status: windows, phases, shortfalls ----------------------------------------------------------------


@pytest.mark.parametrize(("elapsed", "progress", "satisfied"), [
    (timedelta(0), 0.0, False),
    (timedelta(days=1), 0.5, False),
    (timedelta(days=2) - timedelta(seconds=1), 172799 / 172800, False),
    (timedelta(days=2), 1.0, True),
    (timedelta(days=5), 1.0, True),  # capped
])
def test_window_progress_runs_from_the_first_creation_to_the_last_update(
        elapsed: timedelta, progress: float, satisfied: bool) -> None:
    state = _run(_world({"backtest": {"window": "2d"}}), "s1", "bt-1", "backtest", timedelta(0))
    state = _run(state, "s1", "bt-2", "backtest", elapsed)
    window = _status(state).strategies[0].backtest
    assert (window.progress, window.satisfied) == (progress, satisfied)
    assert (window.required_sec, window.observed_sec) == (172800, int(elapsed.total_seconds()))
    assert window.started_at == "2026-03-02T09:00:00Z"


def test_re_evaluating_one_run_extends_its_window_through_updated_at() -> None:
    state = _run(_world({"paper": {"window": "1d"}}), "s1", "p-1", "paper", timedelta(0))
    state = _run(state, "s1", "p-1", "paper", timedelta(days=1))  # same run id: a revision
    paper = _status(state).strategies[0].paper
    assert (paper.observed_sec, paper.satisfied, paper.ended_at) == (86400, True, "2026-03-03T09:00:00Z")


def test_without_a_window_nothing_is_required_and_a_zero_window_is_met_at_once() -> None:
    state = _run(_world({"paper": {"window": "0s"}}), "s1", "bt", "backtest", timedelta(0))
    status = _status(state).strategies[0]
    assert (status.backtest.window, status.backtest.progress, status.backtest.satisfied) == (None, None, False)
    assert (status.paper.progress, status.paper.satisfied, status.paper.observed_sec) == (0.0, False, None)
    state = _run(state, "s1", "p", "paper", timedelta(hours=1))
    assert _status(state).strategies[0].paper.satisfied is True


@pytest.mark.parametrize(("stages", "phase"), [
    (["backtest"], "backtest_campaign"), (["backtest", "paper"], "paper_campaign"), (["paper"], "paper_campaign"),
    (["backtest", "paper", "live"], "live_campaign"), (["live"], "live_campaign"), (["shadow"], "backtest_campaign"),
])
def test_phase_is_the_furthest_stage_with_a_run(stages: list[str], phase: str) -> None:
    state = _world()
    for i, stage in enumerate(stages):
        state = _run(state, "s1", f"r-{stage}", stage, timedelta(minutes=i))
    status = _status(state).strategies[0]
    assert status.phase == phase
    assert status.latest_live_run_id == ("r-live" if "live" in stages else None)


@pytest.mark.parametrize(("sample", "common", "reasons"), [
    ({"effective_history_years": 0.5, "n_trades_total": 40}, {"min_sample_days": 182, "min_trades_total": 40}, []),
    ({"effective_history_years": 0.5, "n_trades_total": 40}, {"min_sample_days": 183}, ["insufficient_sample_days"]),
    ({"effective_history_years": 0.5, "n_trades_total": 39}, {"min_trades_total": 40}, ["insufficient_trades"]),
    ({"n_trades_total": 40}, {"min_sample_days": 1}, ["missing_sample_days_metric"]),
    ({"effective_history_years": 1.0}, {"min_trades_total": 1}, ["missing_trades_metric"]),
    ({}, {"min_sample_days": 1, "min_trades_total": 1}, ["missing_sample_days_metric", "missing_trades_metric"]),
    ({}, {}, []),
])
def test_sample_and_trade_shortfalls_block_promotion(sample: dict[str, Any], common: dict[str, Any],
                                                      reasons: list[str]) -> None:
    metrics = {"returns": {"sharpe": 1.0}, **({"sample": sample} if sample else {})}
    state = _run(_world({"common": common}), "s1", "bt", "backtest", timedelta(0), metrics)
    status = _status(state).strategies[0]
    assert status.reasons == [*reasons, "missing_paper_run"]
    assert status.promotable_to_paper is (not reasons)


@pytest.mark.parametrize(("paper_metrics", "window", "elapsed", "promotable"), [
    (GOOD, "1d", timedelta(days=1), True),
    (GOOD, "1d", timedelta(hours=23), False),  # window not yet met
    (BAD, "1d", timedelta(days=1), False),  # a failing verdict
    (GOOD, None, timedelta(0), True),  # no window configured
])
def test_promotable_to_live_needs_a_passing_verdict_and_a_satisfied_window(
        paper_metrics: dict[str, Any], window: str | None, elapsed: timedelta, promotable: bool) -> None:
    campaign = {"paper": {"window": window}} if window else {}
    state = _run(_world(campaign), "s1", "p-1", "paper", timedelta(0), paper_metrics)
    state = _run(state, "s1", "p-1", "paper", elapsed, paper_metrics)
    status = _status(state).strategies[0]
    assert status.promotable_to_live is promotable
    assert ("paper_window_incomplete" in status.reasons) is (window is not None and elapsed < timedelta(days=1))


def test_status_reports_the_latest_papers_evidence_config_and_filters_by_strategy() -> None:
    campaign = {"backtest": {"window": "2d"}, "paper": {"window": "1d"},
                "common": {"min_sample_days": "30", "min_trades_total": 10}}
    state = _run(_world(campaign), "s1", "bt", "backtest", timedelta(0))
    state = _run(state, "s1", "p", "paper", timedelta(hours=1), {"returns": {"sharpe": 2.0, "max_drawdown": 0.2},
                                                                "sample": {"effective_history_years": 0.1,
                                                                           "n_trades_total": 12}})
    state = _run(state, "s2", "bt", "backtest", timedelta(0))
    status = _status(state, T0 + timedelta(days=3))
    assert msgspec.to_builtins(status.config) == {"backtest_window": "2d", "paper_window": "1d",
                                                  "min_sample_days": 30, "min_trades_total": 10}
    assert status.generated_at == "2026-03-05T09:00:00Z"
    assert [s.strategy_id for s in status.strategies] == ["s1", "s2"]
    s1 = status.strategies[0]
    assert (s1.sample_days, s1.trades_total, s1.sharpe, s1.max_drawdown) == (36, 12, 2.0, 0.2)
    assert [s.strategy_id for s in _status(state, strategy_id="s2").strategies] == ["s2"]
    assert _status(state, strategy_id="nobody").strategies == []


def test_status_of_an_unknown_world_is_404() -> None:
    with pytest.raises(CommandRejected) as refused:
        answer(WorldState(world_id="w"), _cmd("get_campaign_status"), T0)
    assert refused.value.refusal == Refusal.NOT_FOUND


# --- tick -------------------------------------------------------------------------------------------------


def test_suggested_run_ids_and_idempotency_keys() -> None:
    assert suggested_run_id("w", "s1", "paper", T0) == "camp-w-s1-paper-20260302"
    assert suggested_run_id("w:eu", "alpha beta/1", "backtest", T0) == "camp-w-eu-alpha-beta-1-backtest-20260302"
    assert idempotency_key("observe_live", "w", "s1", "live", None) == "observe_live:w:s1:live"
    assert idempotency_key("auto_apply_live", "w") == "auto_apply_live:w"


@pytest.mark.parametrize(("document", "mode"), [
    ({}, "manual_approval"), ({"governance": {"live_promotion": {"mode": "auto_apply"}}}, "auto_apply"),
    ({"governance": {"live_promotion": {"mode": "DISABLED"}}}, "disabled"),
    ({"governance": {"live_promotion": {"mode": "yolo"}}}, "manual_approval"), ({"governance": "x"}, "manual_approval"),
])
def test_live_promotion_mode_defaults_to_manual_approval(document: dict[str, Any], mode: str) -> None:
    assert live_promotion_mode(document) == mode


def _one(actions: list[Any]) -> dict[str, Any]:
    assert len(actions) == 1
    return msgspec.to_builtins(actions[0])


def test_a_backtest_not_yet_promotable_keeps_evaluating_the_backtest() -> None:
    state = _run(_world({"backtest": {"window": "2d"}}), "s1", "bt", "backtest", timedelta(0))
    action = _one(_tick(state))
    assert action == {
        "action": "evaluate", "idempotency_key": "evaluate:w:s1:backtest:camp-w-s1-backtest-20260302",
        "strategy_id": "s1", "stage": "backtest", "reason": "continue_backtest_campaign", "requires": ["metrics"],
        "suggested_run_id": "camp-w-s1-backtest-20260302", "suggested_endpoint": "/worlds/w/evaluate",
        "suggested_method": "POST", "suggested_params": None,
        "suggested_body": {"strategy_id": "s1", "stage": "backtest", "risk_tier": "low",
                           "run_id": "camp-w-s1-backtest-20260302"}}


def test_a_promotable_backtest_is_evaluated_on_paper_without_metrics_in_the_body() -> None:
    state = _run(_world({"backtest": {"window": "1d"}}), "s1", "bt", "backtest", timedelta(0))
    state = _run(state, "s1", "bt", "backtest", timedelta(days=1))
    action = _one(_tick(state, T0 + timedelta(days=1)))
    assert (action["action"], action["stage"], action["reason"]) == ("evaluate", "paper", "promotable_to_paper")
    assert action["suggested_run_id"] == "camp-w-s1-paper-20260303" == action["suggested_body"]["run_id"]
    assert "metrics" not in action["suggested_body"]


@pytest.mark.parametrize(("mode", "expected"), [
    (None, {"action": "manual_approval_required", "requires": ["approval"], "suggested_method": "GET",
            "suggested_endpoint": "/worlds/w/promotions/live/plan",
            "suggested_params": {"strategy_id": "s1", "run_id": "p-1"}, "suggested_body": None}),
    ("manual_approval", {"action": "manual_approval_required"}),
    ("auto_apply", {"action": "auto_apply_live", "requires": [], "suggested_method": "POST",
                    "suggested_endpoint": "/worlds/w/promotions/live/auto-apply", "suggested_params": None,
                    "suggested_body": {}}),
    ("disabled", {"action": "evaluate", "stage": "paper", "reason": "live_promotion_disabled"}),
])
def test_a_promotable_paper_run_follows_the_governance_mode(mode: str | None, expected: dict[str, Any]) -> None:
    state = _run(_world({}, mode), "s1", "p-1", "paper", timedelta(0))
    action = _one(_tick(state))
    assert {k: action[k] for k in expected} == expected
    if action["action"] != "evaluate":
        assert (action["strategy_id"], action["stage"], action["suggested_run_id"]) == ("s1", "live", "p-1")
        assert action["idempotency_key"] == f"{action['action']}:w:s1:live:p-1"
        assert action["reason"] == "promotable_to_live"


def test_a_paper_run_not_yet_promotable_keeps_evaluating_on_paper() -> None:
    state = _run(_world({"paper": {"window": "7d"}}, "auto_apply"), "s1", "p-1", "paper", timedelta(0))
    action = _one(_tick(state))
    assert (action["action"], action["stage"], action["reason"]) == ("evaluate", "paper", "continue_paper_campaign")


def test_a_live_strategy_is_observed() -> None:
    state = _run(_world(), "s1", "p-1", "paper", timedelta(0))
    state = _run(state, "s1", "live-1", "live", timedelta(hours=1))
    action = _one(_tick(state))
    assert action == {"action": "observe_live", "idempotency_key": "observe_live:w:s1:live:live-1",
                      "strategy_id": "s1", "stage": "live", "reason": "already_in_live_campaign", "requires": [],
                      "suggested_run_id": "live-1", "suggested_endpoint": "/worlds/w/live-monitoring/report",
                      "suggested_method": "GET", "suggested_params": None, "suggested_body": None}


def test_tick_writes_nothing_and_answers_one_action_per_strategy() -> None:
    state = _run(_world(), "s1", "bt", "backtest", timedelta(0))
    state = _run(state, "s2", "p", "paper", timedelta(0))
    outcome = answer(state, _cmd("campaign_tick"), T0)
    assert outcome.effects == [] and outcome.state is state
    reply = outcome.reply
    assert (reply.schema_version, reply.world_id, reply.generated_at) == (1, "w", "2026-03-02T09:00:00Z")
    assert [(a.strategy_id, a.action) for a in reply.actions] == [("s1", "evaluate"), ("s2", "manual_approval_required")]
    assert [a.strategy_id for a in _tick(state, strategy_id="s2")] == ["s2"]
