"""Live monitoring as tables over pure functions: the readings, the rule, a monitoring run and the report."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from domain.effects import AuditRecord, OutboxEvent, SaveEvaluationRun
from domain.evaluation import latest
from domain.handle import answer, handle
from domain.live_metrics import aggregate, max_drawdown, sharpe_ratio
from domain.live_monitoring import judge
from domain.state import WorldState
from messages.commands import external_command_decoder
from messages.errors import CommandRejected, Refusal

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
SERIES = [0.01, -0.005, 0.02, 0.0]


def _cmd(kind: str, **fields: Any) -> Any:
    return external_command_decoder.decode(msgspec.json.encode({"kind": kind, "world_id": "w", **fields}))


def _world(live_monitoring: dict[str, Any] | None = None) -> WorldState:
    policy: dict[str, Any] = {"thresholds": {}}
    if live_monitoring is not None:
        policy["live_monitoring"] = live_monitoring
    state = handle(WorldState(world_id="w"), _cmd("create_world", body={"id": "w"}), T0).state
    return handle(state, _cmd("add_policy", body={"policy": policy}), T0).state


def _run(state: WorldState, sid: str, run_id: str, stage: str, metrics: dict[str, Any],
         at: timedelta = timedelta(0)) -> WorldState:
    body = {"strategy_id": sid, "run_id": run_id, "stage": stage, "metrics": {sid: metrics}}
    return handle(state, _cmd("evaluate", body=body), T0 + at).state


def _monitor(state: WorldState, at: timedelta = timedelta(hours=1)) -> Any:
    return handle(state, _cmd("run_live_monitoring"), T0 + at)


# --- readings -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("returns", "expected"), [
    ([], None), ([0.01], None), ([0.01, 0.01], None),  # no spread: no ratio
    ([0.01, -0.01], 0.0), ([0.02, 0.0], 1.0), ([0.03, 0.01, 0.02], 0.02 / math.sqrt(2 / 3 * 1e-4)),
])
def test_sharpe_is_mean_over_population_deviation(returns: list[float], expected: float | None) -> None:
    value = sharpe_ratio(returns)
    assert value == expected if expected is None else value == pytest.approx(expected)


@pytest.mark.parametrize(("returns", "expected"), [
    ([], None), ([0.01, 0.02], 0.0), ([0.05, -0.02, -0.01, 0.04], 0.03),
    ([-0.1, 0.0], 0.1),  # a loss on the first day is a drawdown from the starting equity
    ([0.1, -0.3, 0.1, -0.05], 0.3),
])
def test_drawdown_is_the_deepest_fall_of_cumulative_returns(returns: list[float], expected: float | None) -> None:
    value = max_drawdown(returns)
    assert value == expected if expected is None else value == pytest.approx(expected)


def test_windows_take_the_tail_and_the_shortest_is_canonical() -> None:
    series = [0.01] * 60 + [-0.01, 0.03] * 15  # the last 30 differ from the rest
    readings = aggregate(series, backtest_sharpe=2.0)
    assert readings["live_sharpe_p30"] == pytest.approx(sharpe_ratio([-0.01, 0.03] * 15))
    assert readings["live_sharpe_p90"] == pytest.approx(sharpe_ratio(series))
    assert readings["live_sharpe"] == readings["realized_sharpe"] == readings["live_sharpe_p30"]
    assert readings["live_max_drawdown"] == readings["realized_max_drawdown"] == readings["live_max_drawdown_p30"]
    assert readings["live_vs_backtest_sharpe_ratio"] == pytest.approx(readings["live_sharpe"] / 2.0)
    assert "live_vs_backtest_sharpe_ratio" not in aggregate(series, backtest_sharpe=0.0)
    assert "live_vs_backtest_sharpe_ratio" not in aggregate(series, backtest_sharpe=None)


def test_evaluating_a_live_run_records_its_readings_against_the_latest_backtest() -> None:
    state = _run(_world(), "s1", "bt", "backtest", {"returns": {"sharpe": 2.0}})
    state = _run(state, "s1", "live-1", "live", {"diagnostics": {"live_returns": SERIES}, "as_of": "2026-03-01"},
                 timedelta(minutes=5))
    live = latest(state, "s1", "live-1").metrics.diagnostics.live_monitoring
    assert live["live_returns"] == SERIES and live["live_returns_len"] == 4 and live["as_of"] == "2026-03-01"
    assert live["backtest_sharpe"] == 2.0
    assert live["live_vs_backtest_sharpe_ratio"] == pytest.approx(sharpe_ratio(SERIES) / 2.0)


@pytest.mark.parametrize("metrics", [
    {"live_returns": SERIES}, {"live": {"returns": SERIES}}, {"diagnostics": {"live_returns": SERIES}},
])
def test_realized_returns_are_found_where_the_reference_looks(metrics: dict[str, Any]) -> None:
    state = _run(_world(), "s1", "live-1", "live", metrics)
    live = latest(state, "s1", "live-1").metrics.diagnostics.live_monitoring
    assert live["live_sharpe"] == pytest.approx(sharpe_ratio(SERIES))
    assert live["as_of"] == "2026-03-02T09:00:00Z"  # no as_of given: when it was recorded


@pytest.mark.parametrize("series", [[0.01, "x"], [0.01, True], [], "0.01", [0.01, float("nan")]])
def test_anything_but_a_list_of_finite_numbers_is_no_series(series: Any) -> None:
    state = _run(_world(), "s1", "live-1", "live", {"sharpe": 1.0, "live_returns": series})
    assert latest(state, "s1", "live-1").metrics.diagnostics.live_monitoring is msgspec.UNSET


# --- the rule -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("config", "values", "status", "reasons"), [
    ({}, {}, "pass", []),
    ({"sharpe_min": 0.5}, {"live_sharpe": 0.5}, "pass", []),
    ({"sharpe_min": 0.5}, {"live_sharpe": 0.49}, "fail", ["live_sharpe_below_min"]),
    ({"sharpe_min": 0.5}, {}, "warn", ["live_sharpe_missing"]),
    ({"dd_max": 0.2}, {"live_max_drawdown": 0.2}, "pass", []),
    ({"dd_max": 0.2}, {"live_max_drawdown": 0.21}, "fail", ["live_dd_exceeds_max"]),
    ({"decay_threshold": 0.7}, {"live_vs_backtest_sharpe_ratio": 0.6}, "fail", ["live_decay_below_threshold"]),
    ({"decay_threshold": 0.7}, {}, "warn", ["live_decay_missing"]),
    ({"sharpe_min": 0.5, "dd_max": 0.2}, {"live_sharpe": 1.0}, "warn", ["live_dd_missing"]),
    ({"sharpe_min": 0.5, "dd_max": 0.2, "decay_threshold": 0.7}, {"live_sharpe": 0.1, "live_max_drawdown": 0.3},
     "fail", ["live_sharpe_below_min", "live_dd_exceeds_max", "live_decay_missing"]),
    ({"sharpe_min": "high", "dd_max": True}, {}, "pass", []),  # not numbers: not thresholds
])
def test_rule_table(config: dict[str, Any], values: dict[str, float], status: str, reasons: list[str]) -> None:
    result = judge(config, values)
    assert result.status == status
    assert result.reason_code == (reasons[0] if reasons else "live_monitoring_ok")
    assert result.reason == (", ".join(reasons) if reasons else "Live monitoring within thresholds")
    assert (result.severity, result.owner, result.tags) == ("soft", "risk", ["live_monitoring"])


def test_rule_details_carry_the_readings_and_thresholds_and_policy_severity() -> None:
    result = judge({"sharpe_min": 1, "lookback_days": 30, "severity": "blocking", "owner": "ops"},
                   {"live_sharpe": 1.5, "live_max_drawdown": 0.1})
    assert result.details == {"sharpe_mean": 1.5, "dd_mean": 0.1, "decay_mean": None, "lookback_days": 30,
                              "sharpe_min": 1.0}
    assert (result.severity, result.owner) == ("blocking", "ops")
    assert judge({"severity": "catastrophic", "owner": "ceo"}, {}).severity == "soft"


# --- a monitoring run -------------------------------------------------------------------------------------


def test_a_run_judges_each_strategys_latest_live_run_by_its_own_readings() -> None:
    state = _run(_world({"sharpe_min": 0.0, "dd_max": 10.0}), "good", "live-1", "live", {"live_returns": SERIES})
    state = _run(state, "bad", "live-1", "live", {"live_returns": [-0.01, -0.02, 0.0]})
    state = _run(state, "bad", "bt-1", "backtest", {"sharpe": 1.0})
    outcome = _monitor(state)
    assert msgspec.to_builtins(outcome.reply) == {"world_id": "w", "updated": 2}
    assert [type(e) for e in outcome.effects] == [SaveEvaluationRun, AuditRecord, OutboxEvent] * 2
    assert outcome.effects[2].cloudevent["data"]["change_type"] == "live_monitoring"
    good, bad = latest(outcome.state, "good", "live-1"), latest(outcome.state, "bad", "live-1")
    assert good.validation.results["live_monitoring"].status == "pass"
    assert bad.validation.results["live_monitoring"].reason_code == "live_sharpe_below_min"
    assert (bad.revision, bad.updated_at, bad.validation.extended_revision) == (2, "2026-03-02T10:00:00Z", 1)
    assert bad.validation.extended_history[0]["results"]["live_monitoring"]["status"] == "fail"
    assert list(bad.validation.results)[:5] == ["data_currency", "sample", "performance", "risk_constraint",
                                                "robustness"]  # the evaluation's rules stay
    assert latest(outcome.state, "bad", "bt-1").revision == 1  # only live runs


def test_a_second_run_without_news_writes_nothing_and_a_new_baseline_is_news() -> None:
    state = _run(_world({"decay_threshold": 0.5}), "s1", "bt", "backtest", {"sharpe": 0.1})
    state = _run(state, "s1", "live-1", "live", {"live_returns": SERIES}, timedelta(minutes=1))
    first = _monitor(state)
    assert first.reply.updated == 1
    again = _monitor(first.state, timedelta(hours=2))
    assert again.reply.updated == 0 and again.effects == []
    later = _run(again.state, "s1", "bt", "backtest", {"sharpe": 100.0}, timedelta(hours=3))
    third = _monitor(later, timedelta(hours=4))
    run = latest(third.state, "s1", "live-1")
    assert third.reply.updated == 1 and run.metrics.diagnostics.live_monitoring["backtest_sharpe"] == 100.0
    assert run.validation.results["live_monitoring"].reason_code == "live_decay_below_threshold"
    assert run.validation.extended_revision == 2


def test_plain_live_numbers_are_judged_without_a_series() -> None:
    state = _run(_world({"sharpe_min": 1.0, "dd_max": 0.1}), "s1", "live-1", "live",
                 {"diagnostics": {"live_sharpe": 1.2}, "realized_max_drawdown": 0.3})
    run = latest(_monitor(state).state, "s1", "live-1")
    result = run.validation.results["live_monitoring"]
    assert (result.status, result.details["sharpe_mean"], result.details["dd_mean"]) == ("fail", 1.2, 0.3)
    assert run.metrics.diagnostics.live_monitoring is msgspec.UNSET


def test_only_the_latest_live_run_of_a_strategy_is_judged() -> None:
    state = _run(_world({}), "s1", "live-old", "live", {"live_returns": SERIES})
    state = _run(state, "s1", "live-new", "live", {"live_returns": SERIES}, timedelta(minutes=1))
    outcome = _monitor(state)
    assert outcome.reply.updated == 1
    assert latest(outcome.state, "s1", "live-old").revision == 1
    assert latest(outcome.state, "s1", "live-new").validation.results["live_monitoring"].status == "pass"


def test_without_a_live_monitoring_section_nothing_is_judged() -> None:
    state = _run(_world(None), "s1", "live-1", "live", {"live_returns": SERIES})
    outcome = _monitor(state)
    assert (outcome.reply.updated, outcome.effects) == (0, [])


def test_a_world_without_a_policy_updates_nothing_and_an_unknown_world_is_404() -> None:
    state = handle(WorldState(world_id="w"), _cmd("create_world", body={"id": "w"}), T0).state
    assert _monitor(state).reply.updated == 0
    with pytest.raises(CommandRejected) as refused:
        _monitor(WorldState(world_id="w"))
    assert refused.value.refusal == Refusal.NOT_FOUND


# --- the report -------------------------------------------------------------------------------------------


def test_the_report_lists_latest_live_runs_with_their_verdicts_and_counts() -> None:
    state = _run(_world({"sharpe_min": 0.0}), "s1", "live-1", "live",
                 {"live_returns": SERIES, "as_of": "2026-03-01T00:00:00Z"})
    state = _run(state, "s2", "live-1", "live", {"live_returns": [-0.01, 0.0]})
    state = _run(state, "s3", "paper-1", "paper", {"sharpe": 1.0})
    before = answer(state, _cmd("get_live_monitoring_report"), T0).reply
    assert [e.live_monitoring for e in before.strategies] == [None, None]
    assert msgspec.to_builtins(before.summary) == {"counts": {"pass": 0, "warn": 0, "fail": 0}, "total": 2}
    monitored = _monitor(state).state
    report = msgspec.to_builtins(answer(monitored, _cmd("get_live_monitoring_report"), T0 + timedelta(hours=2)).reply)
    assert report["world_id"] == "w" and report["generated_at"] == "2026-03-02T11:00:00Z"
    assert [(e["strategy_id"], e["run_id"], e["live_monitoring"]["status"]) for e in report["strategies"]] == [
        ("s1", "live-1", "pass"), ("s2", "live-1", "fail")]
    assert report["strategies"][0]["as_of"] == "2026-03-01T00:00:00Z"
    assert report["strategies"][0]["diagnostics"]["live_monitoring"]["live_returns_len"] == 4
    assert report["summary"] == {"counts": {"pass": 1, "warn": 0, "fail": 1}, "total": 2}


def test_the_extended_limits_are_the_references_fields_and_merge_into_the_verdict() -> None:
    from domain.live_extended import Findings, limits_of
    document = {"portfolio": {"max_incremental_var_99": 0.5, "max_incremental_es_99": "high"},
                "stress": {"scenarios": {"crash": {"dd_max": 0.3}, "odd": {"dd_max": True}}}}
    assert limits_of(document) == ({"max_incremental_var_99": 0.5}, {"crash": 0.3})
    assert limits_of({"live_monitoring": {}}) == ({}, {})
    found = Findings(details={"incremental_var_99": 0.7})
    found.add("fail", "incremental_var_exceeds_max")
    result = judge({"sharpe_min": 0.5}, {"live_sharpe": 1.0}, found)
    assert (result.status, result.reason_code, result.details["incremental_var_99"]) == (
        "fail", "incremental_var_exceeds_max", 0.7)
