"""Evaluation runs as pure functions: what a run records, how its verdict is worded, how it is amended."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from domain.effects import AuditRecord, OutboxEvent, SaveEvaluationRun
from domain.evaluation import auto_run_id, latest
from domain.evaluation_report import metric_blocks, recommended_stage, verdict
from domain.handle import answer, handle
from domain.state import WorldState
from messages.commands import external_command_decoder
from messages.errors import CommandRejected, Refusal
from messages.evaluation import RuleResult

NOW = datetime(2026, 1, 1, 9, 30, 0, 123456, tzinfo=timezone.utc)
POLICY = {"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.5}}, "top_k": {"metric": "sharpe", "k": 2}}


def _cmd(kind: str, **fields):  # type: ignore[no-untyped-def]
    return external_command_decoder.decode(msgspec.json.encode({"kind": kind, "world_id": "w", **fields}))


def _world() -> WorldState:
    state = handle(WorldState(world_id="w"), _cmd("create_world", body={"id": "w"}), NOW).state
    return handle(state, _cmd("add_policy", body={"policy": POLICY}), NOW).state


def _evaluate(state: WorldState, now: datetime = NOW, **body):  # type: ignore[no-untyped-def]
    return handle(state, _cmd("evaluate", body=body), now)


def test_a_named_run_records_blocks_rules_and_verdict() -> None:
    outcome = _evaluate(_world(), strategy_id="s1", run_id="eval-1", stage="backtest", risk_tier="low",
                        metrics={"s1": {"returns": {"sharpe": 1.2, "max_drawdown": 0.1}}})
    run = latest(outcome.state, "s1", "eval-1")
    assert run is not None and run.status == "evaluated" and run.revision == 1
    assert run.metrics.returns.sharpe == 1.2 and run.metrics.returns.max_drawdown == 0.1
    assert run.metrics.benchmark is None  # a strategy's own sharpe is not its benchmark's
    results = run.validation.results
    assert list(results) == ["data_currency", "sample", "performance", "risk_constraint", "robustness"]
    assert (results["sample"].status, results["sample"].reason_code) == ("warn", "sample_metrics_missing")
    assert results["risk_constraint"].reason_code == "risk_constraints_not_configured"
    assert run.validation.policy_version == "1" and run.validation.ruleset_hash.startswith("blake3:")
    assert run.validation.ruleset_hash.count("blake3:") == 1
    assert (run.summary.status, run.summary.recommended_stage, run.summary.active) == ("warn", "backtest_only", True)
    assert [type(e) for e in outcome.effects] == [SaveEvaluationRun, AuditRecord, OutboxEvent]
    event = outcome.effects[2].cloudevent
    assert event["type"] == "evaluation_run_created"
    assert event["data"]["idempotency_key"] == "evaluation_run_created:w:s1:eval-1:1"
    assert outcome.reply.evaluation_run_url == "/worlds/w/strategies/s1/runs/eval-1"


def test_an_unnamed_run_takes_the_first_strategy_and_a_timestamped_id() -> None:
    outcome = _evaluate(_world(), metrics={"s2": {"sharpe": 0.3}, "s1": {"sharpe": 1.2}})
    assert outcome.reply.evaluation_run_id == "eval-s1-20260101T093000123456Z" == auto_run_id("s1", NOW)
    assert outcome.reply.active == ["s1"]


def test_no_metrics_and_no_strategy_records_nothing() -> None:
    outcome = _evaluate(_world())
    assert outcome.effects == [] and outcome.reply.evaluation_run_id is None


def test_re_evaluating_a_run_appends_a_revision_and_keeps_created_at() -> None:
    first = _evaluate(_world(), strategy_id="s1", run_id="r", metrics={"s1": {"sharpe": 0.1}})
    later = NOW + timedelta(hours=1)
    second = _evaluate(first.state, later, strategy_id="s1", run_id="r", metrics={"s1": {"sharpe": 0.9}})
    runs = second.state.evaluations["s1"]["r"]
    assert [r.revision for r in runs] == [1, 2]
    assert (runs[0].summary.status, runs[1].summary.status) == ("fail", "warn")
    assert runs[1].created_at == runs[0].created_at != runs[1].updated_at
    assert second.effects[2].cloudevent["data"]["change_type"] == "reevaluated"


def test_a_strategy_named_without_metrics_is_evaluating_and_fails() -> None:
    run = latest(_evaluate(_world(), strategy_id="s9", run_id="r").state, "s9", "r")
    assert run.status == "evaluating" and run.metrics is None and run.summary.status == "fail"


@pytest.mark.parametrize(("statuses", "expected"), [
    ({"a": ("pass", "blocking"), "b": ("pass", "soft")}, "pass"),
    ({"a": ("pass", "blocking"), "b": ("warn", "soft")}, "warn"),
    ({"a": ("pass", "blocking"), "b": ("fail", "soft")}, "warn"),  # a soft failure warns
    ({"a": ("fail", "blocking"), "b": ("pass", "soft")}, "fail"),
    ({"a": ("pass", "info")}, "pass"),
])
def test_verdict_table(statuses: dict[str, tuple[str, str]], expected: str) -> None:
    results = {name: RuleResult(status=s, severity=sev) for name, (s, sev) in statuses.items()}  # type: ignore[arg-type]
    assert verdict(results) == expected


@pytest.mark.parametrize(("profile", "stage", "expected"), [
    (None, "backtest", "backtest_only"), (None, "Paper", "paper_only"), (None, "live", "paper_ok_live_candidate"),
    ("paper", None, "paper_only"), ("live", "backtest", "backtest_only"), (None, "paper-only", "paper_only"),
    (None, "shadow", None), ("custom", None, None),
])
def test_recommended_stage_table(profile: str | None, stage: str | None, expected: str | None) -> None:
    assert recommended_stage(profile, stage) == expected


def test_metric_blocks_file_known_fields_and_keep_the_rest_as_extra() -> None:
    results = {f"rule{i}": RuleResult(status="pass") for i in range(4)}
    blocks = metric_blocks({"sharpe": 1.0, "n_trades_total": 40, "benchmark": {"sharpe": 0.4}, "alpha_x": 3}, results)
    assert blocks.returns.sharpe == 1.0 and blocks.sample.n_trades_total == 40
    assert blocks.benchmark.sharpe == 0.4
    assert blocks.diagnostics.extra_metrics == {"alpha_x": 3.0}
    health = blocks.diagnostics.validation_health
    assert (health.metric_coverage_ratio, health.rules_executed_ratio) == (2 / 12, 0.8)  # 2 of 12 core metrics


def test_override_needs_reason_actor_and_timestamp_when_approving_and_is_idempotent() -> None:
    state = _evaluate(_world(), strategy_id="s1", run_id="r", metrics={"s1": {"sharpe": 1.0}}).state
    with pytest.raises(CommandRejected) as refused:
        handle(state, _cmd("override_run", strategy_id="s1", run_id="r", body={"status": "approved"}), NOW)
    assert refused.value.refusal == Refusal.UNPROCESSABLE and "reason, actor, timestamp" in refused.value.detail
    body = {"status": "approved", "reason": "ok", "actor": "alice", "timestamp": "2026-01-01T00:00:00Z"}
    first = handle(state, _cmd("override_run", strategy_id="s1", run_id="r", body=body), NOW)
    assert first.reply.summary.override_status == "approved" and first.reply.revision == 2
    assert first.effects[2].cloudevent["data"]["change_type"] == "override"
    again = handle(first.state, _cmd("override_run", strategy_id="s1", run_id="r", body=body), NOW)
    assert again.effects == [] and again.reply.revision == 2


def test_ex_post_failures_append_and_stamp_the_time() -> None:
    state = _evaluate(_world(), strategy_id="s1", run_id="r", metrics={"s1": {"sharpe": 1.0}}).state
    record = {"category": "live_loss", "reason_code": "dd_breach", "actor": "risk-bot"}
    one = handle(state, _cmd("record_ex_post_failure", strategy_id="s1", run_id="r", body=record), NOW)
    two = handle(one.state, _cmd("record_ex_post_failure", strategy_id="s1", run_id="r", body=record), NOW)
    failures = two.reply.summary.ex_post_failures
    assert [f.reason_code for f in failures] == ["dd_breach", "dd_breach"]
    assert failures[0].recorded_at == "2026-01-01T09:30:00Z" and failures[0].status == "confirmed"
    assert two.effects[2].cloudevent["data"]["change_type"] == "ex_post_failure"


def test_metrics_of_a_run_without_metrics_is_a_coded_conflict() -> None:
    state = _evaluate(_world(), strategy_id="s9", run_id="r").state
    with pytest.raises(CommandRejected) as refused:
        answer(state, _cmd("get_run_metrics", strategy_id="s9", run_id="r"), NOW)
    assert refused.value.refusal == Refusal.CONFLICT and refused.value.body.detail.code == "E_RUN_NOT_EVALUATED"
    with pytest.raises(CommandRejected) as missing:
        answer(state, _cmd("get_run", strategy_id="s9", run_id="nope"), NOW)
    assert (missing.value.refusal, missing.value.detail) == (Refusal.NOT_FOUND, "evaluation run not found")


def test_cohort_records_one_run_per_candidate_and_refuses_candidates_without_metrics() -> None:
    body = {"campaign_id": "c1", "run_id": "cohort-1", "metrics": {"s1": {"sharpe": 1.0}, "s2": {"sharpe": 0.2}}}
    outcome = handle(_world(), _cmd("evaluate_cohort", body=body), NOW)
    assert outcome.reply.candidates == ["s1", "s2"] and outcome.reply.active == ["s1"]
    assert outcome.reply.evaluation_runs == {"s1": "/worlds/w/strategies/s1/runs/cohort-1",
                                             "s2": "/worlds/w/strategies/s2/runs/cohort-1"}
    s2 = latest(outcome.state, "s2", "cohort-1")
    assert s2.summary.campaign_id == "c1" and s2.summary.campaign_candidates == ["s1", "s2"]
    with pytest.raises(CommandRejected) as refused:
        handle(_world(), _cmd("evaluate_cohort", body={**body, "candidates": ["s1", "s3"]}), NOW)
    assert refused.value.refusal == Refusal.UNPROCESSABLE and "missing metrics sources: s3" in refused.value.detail
