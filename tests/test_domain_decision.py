"""The decision engine as pure functions: rule parsing, evaluation of evidence, hysteresis, safe reads.

Hypothesis drives generated evidence sequences through ``evaluate`` -> ``advance`` -> ``read`` and checks
the promises a trading operator relies on: never live without ``allow_live``, no promotion before
``promote_after`` passes, no demotion before ``demote_after`` failures, no hysteresis change inside
``min_dwell``, no flapping on alternating evidence, and missing data never promotes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.decision import Verdict, advance, evaluate, evidence_at, read
from domain.decision_rules import DecisionRules, parse_duration, parse_rules
from messages.decisions import DecisionState, HistoryEntry
from messages.errors import CommandRejected, Refusal

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def entry(sid: str = "s1", *, end: datetime | None = T0, rows: int | None = 1000, **metrics: float) -> HistoryEntry:
    return HistoryEntry(strategy_id=sid, node_id="n", interval=60, rows=rows, metrics=metrics or None,
                        data_end=end.isoformat() if end else None, updated_at="2026-01-05T12:00:00Z")


# --- parsing ---------------------------------------------------------------------------------------


def test_the_documented_example_parses() -> None:
    rules = parse_rules({
        "promote_to": "live", "ttl": "10m", "data_currency": {"max_lag": "5m"},
        "sample": {"min_days": 30, "min_trades": 40, "min_bars": 500},
        "gates": {"and": ["sharpe >= 0.6", {"or": ["max_dd <= 0.25", {"metric": "calmar", "min": 1}]}]},
        "score": {"weights": {"sharpe": 1.0, "ulcer": -0.2}, "min": 0.5},
        "constraints": {"correlation": {"max_pairwise": 0.8}, "exposure": {"max_gross": 1.0}},
        "hysteresis": {"promote_after": 2, "demote_after": 3, "min_dwell": "3h"},
    })
    assert (rules.ttl_s, rules.max_lag_s, rules.min_dwell_s) == (600, 300, 10800)
    assert (rules.promote_after, rules.demote_after, rules.min_trades) == (2, 3, 40)
    assert rules.gates is not None and rules.gates.metrics() == ["sharpe", "max_dd", "calmar"]


@pytest.mark.parametrize(("section", "message"), [
    ({"promote_to": "yolo"}, "decision.promote_to"),
    ({"promote_to": "paper", "demote_to": "paper"}, "decision.demote_to"),
    ({"ttl": "0s"}, "decision.ttl"),
    ({"ttl": "soon"}, "decision.ttl"),
    ({"data_currency": {"max_lag": -5}}, "decision.data_currency.max_lag"),
    ({"data_currency": {"max_lagg": "5m"}}, "unknown keys ['max_lagg']"),
    ({"sample": {"min_days": "thirty"}}, "decision.sample.min_days"),
    ({"gates": {"and": ["sharpe => 1"]}}, "decision.gates.and[0]"),
    ({"gates": {"xor": ["sharpe >= 1"]}}, "decision.gates"),
    ({"gates": {"and": []}}, "decision.gates.and"),
    ({"gates": {"and": [{"metric": "sharpe"}]}}, "needs min or max"),
    ({"score": {"min": 1}}, "decision.score.min"),
    ({"constraints": {"correlation": {"max_pairwise": 1.5}}}, "max_pairwise"),
    ({"hysteresis": {"promote_after": 0}}, "decision.hysteresis.promote_after"),
    ({"hysteresis": {"demote_after": True}}, "decision.hysteresis.demote_after"),
    ({"hysteresis": {"min_dwell": "3 fortnights"}}, "decision.hysteresis.min_dwell"),
    ({"surprise": 1}, "unknown keys ['surprise']"),
])
def test_each_malformed_piece_is_refused_with_its_path(section: dict, message: str) -> None:
    with pytest.raises(CommandRejected) as refused:
        parse_rules(section)
    assert refused.value.refusal == Refusal.UNPROCESSABLE and message in refused.value.detail


def test_durations() -> None:
    assert [parse_duration(x, "d") for x in (90, "90", "250ms", "2m", "1.5h", "2d", "1w")] == \
        [90, 90, 0.25, 120, 5400, 172800, 604800]


def test_gates_nest_and_or() -> None:
    rules = parse_rules({"gates": {"or": ["sharpe >= 2", {"and": ["sharpe >= 1", "max_dd < 0.2"]}]}})
    at = T0
    ok = evaluate(rules, ["s1"], {"s1": entry(sharpe=1.2, max_dd=0.1)}, at)
    bad = evaluate(rules, ["s1"], {"s1": entry(sharpe=1.2, max_dd=0.3)}, at)
    assert (ok.outcome, ok.tokens) == ("pass", ("gates_pass",))
    assert (bad.outcome, bad.tokens) == ("fail", ("gates_failed",))


# --- evaluation, one rule at a time ----------------------------------------------------------------

FULL = {"data_currency": {"max_lag": "1h"}, "sample": {"min_trades": 40}, "gates": ["sharpe >= 1"],
        "score": {"weights": {"sharpe": 1.0, "ulcer": -1.0}, "min": 0.5},
        "constraints": {"correlation": {"max_pairwise": 0.8}, "exposure": {"max_gross": 1.0}}}


def _pair(**override: object) -> dict[str, HistoryEntry]:
    base = {"sharpe": 1.5, "ulcer": 0.2, "n_trades_total": 100.0, "gross_exposure": 0.4}
    b = entry("b", **base)
    return {"a": entry("a", **{**base, **override}), "b": HistoryEntry(**{**_fields(b), "correlations": {"a": 0.3}})}


@pytest.mark.parametrize(("change", "outcome", "tokens"), [
    ({}, "pass", ("data_currency_ok", "sample_ok", "gates_pass", "score_ok", "correlation_ok", "exposure_ok")),
    ({"sharpe": 0.5}, "fail", ("gates_failed", "score_below_min")),
    ({"ulcer": 1.2}, "fail", ("score_below_min",)),
    ({"n_trades_total": 10.0}, "fail", ("sample_insufficient",)),
    ({"gross_exposure": 0.7}, "fail", ("exposure_exceeded",)),
    ({"sharpe": float("nan")}, "missing", ("metric_missing:sharpe",)),
    ({"sharpe": float("inf")}, "missing", ("metric_missing:sharpe",)),
])
def test_evaluation_names_the_rules_that_decided(change: dict, outcome: str, tokens: tuple) -> None:
    verdict = evaluate(parse_rules(FULL), ["a", "b"], _pair(**change), T0)
    assert (verdict.outcome, verdict.tokens) == (outcome, tokens)


def test_stale_data_fails_and_missing_inputs_are_missing() -> None:
    rules = parse_rules(FULL)
    evidence = _pair()
    assert evaluate(rules, ["a", "b"], evidence, T0 + timedelta(hours=2)).tokens == ("data_stale",)
    assert evaluate(rules, ["a", "b", "c"], evidence, T0).tokens == ("evidence_missing",)
    no_end = {**evidence, "a": entry("a", end=None, sharpe=1.5)}
    assert evaluate(rules, ["a", "b"], no_end, T0).tokens == ("data_end_missing",)
    uncorrelated = {sid: entry(sid, sharpe=1.5, ulcer=0.1, n_trades_total=50.0, gross_exposure=0.1)
                    for sid in ("a", "b")}
    assert evaluate(rules, ["a", "b"], uncorrelated, T0).tokens == ("correlation_missing:a|b",)
    correlated = {**uncorrelated, "b": HistoryEntry(**{**_fields(uncorrelated["b"]), "correlations": {"a": -0.9}})}
    assert evaluate(rules, ["a", "b"], correlated, T0).tokens == ("correlation_exceeded",)


def _fields(e: HistoryEntry) -> dict:
    return {f: getattr(e, f) for f in e.__struct_fields__}


def test_an_impossible_coverage_bound_is_an_unknown_data_end() -> None:
    rules = parse_rules({"data_currency": {"max_lag": "1h"}})
    absurd = HistoryEntry(strategy_id="s1", node_id="n", interval=60, coverage_bounds=(0, 10**20), updated_at="x")
    assert evaluate(rules, ["s1"], {"s1": absurd}, T0).tokens == ("data_end_missing",)


def test_sample_reads_days_from_coverage_and_bars_from_rows() -> None:
    rules = parse_rules({"sample": {"min_days": 30, "min_bars": 500}})
    day = 86400
    long_enough = HistoryEntry(strategy_id="s1", node_id="n", interval=60, rows=600, coverage_bounds=(0, 31 * day),
                               updated_at="x")
    too_short = HistoryEntry(**{**_fields(long_enough), "coverage_bounds": (0, 10 * day)})
    too_few = HistoryEntry(**{**_fields(long_enough), "rows": 100})
    assert evaluate(rules, ["s1"], {"s1": long_enough}, T0).outcome == "pass"
    assert evaluate(rules, ["s1"], {"s1": too_short}, T0).tokens == ("sample_insufficient",)
    assert evaluate(rules, ["s1"], {"s1": too_few}, T0).tokens == ("sample_insufficient",)
    no_rows = HistoryEntry(**{**_fields(long_enough), "rows": None})
    assert evaluate(rules, ["s1"], {"s1": no_rows}, T0).tokens == ("sample_missing:bars",)


def test_evidence_at_never_looks_ahead() -> None:
    later = HistoryEntry(**{**_fields(entry("s1")), "as_of": "2026-02-01T00:00:00Z"})
    assert evidence_at({"s1": later}, ["s1"], T0) == {}
    assert evidence_at({"s1": later}, ["s1"], None) == {"s1": later}


# --- hysteresis and safe reads, over generated evidence ---------------------------------------------

GATE = parse_rules({"gates": ["sharpe >= 1"]})


@dataclass(frozen=True)
class Step:
    after_s: int  # seconds since the previous evaluation
    sharpe: float | None  # None: the metric is missing from the evidence


steps = st.lists(st.builds(Step, st.integers(0, 4 * 3600),
                           st.one_of(st.none(), st.floats(-1, 3, allow_nan=False))), max_size=40)
hysteresis = st.fixed_dictionaries({"promote_after": st.integers(1, 4), "demote_after": st.integers(1, 4),
                                    "min_dwell": st.sampled_from([0, 600, 3600, 3 * 3600])})


def _run(rules: DecisionRules, sequence: list[Step]) -> list[tuple[datetime, Verdict, DecisionState]]:
    """Evaluate each step's evidence (fresh data, one strategy) and advance the hysteresis."""
    at, state, out = T0, None, []
    for step in sequence:
        at += timedelta(seconds=step.after_s)
        metrics = {} if step.sharpe is None else {"sharpe": step.sharpe}
        evidence = {"s1": entry(end=at, **metrics)}
        verdict = evaluate(rules, ["s1"], evidence, at)
        state = advance(state, rules, verdict, 1, at)
        out.append((at, verdict, state))
    return out


def _rules(h: dict, promote_to: str = "live") -> DecisionRules:
    return parse_rules({"promote_to": promote_to, "gates": ["sharpe >= 1"], "hysteresis": h, "ttl": "1d"})


@settings(max_examples=300, deadline=None)
@given(hysteresis, steps, st.booleans())
def test_never_live_without_allow_live(h: dict, sequence: list[Step], allow_live: bool) -> None:
    rules = _rules(h)
    for at, _verdict, state in _run(rules, sequence):
        evidence = {"s1": entry(end=at, sharpe=2.0)}
        refusals = [] if allow_live else ["allow_live_disabled"]
        reading = read(rules, state, ["s1"], evidence, at, refusals, historical=False)
        if not allow_live:
            assert reading.mode != "live"
            if state.mode == "live":
                assert reading.mode == "compute-only" and "allow_live_disabled" in reading.tokens


@settings(max_examples=300, deadline=None)
@given(hysteresis, steps)
def test_promotion_needs_promote_after_passes_and_demotion_demote_after_failures(h: dict, sequence: list[Step]) -> None:
    rules = _rules(h)
    history = _run(rules, sequence)
    previous_mode = rules.demote_to
    for i, (_at, verdict, state) in enumerate(history):
        window = [v.outcome for _a, v, _s in history[max(0, i - 3):i + 1]]
        if state.mode == "live" and previous_mode != "live":
            assert len(window) >= rules.promote_after and window[-rules.promote_after:] == ["pass"] * rules.promote_after
        if state.mode != "live" and previous_mode == "live" and verdict.outcome != "missing":
            assert window[-rules.demote_after:] == ["fail"] * rules.demote_after
        previous_mode = state.mode


@settings(max_examples=300, deadline=None)
@given(hysteresis, steps)
def test_no_hysteresis_change_within_min_dwell(h: dict, sequence: list[Step]) -> None:
    """A change follows the previous change by at least ``min_dwell``; only a missing-data demotion (the
    default-safe rule) may come sooner."""
    rules = _rules(h)
    last_change: datetime | None = None
    mode = rules.demote_to
    for at, verdict, state in _run(rules, sequence):
        if state.mode != mode:
            if last_change is not None and verdict.outcome != "missing":
                assert (at - last_change).total_seconds() >= rules.min_dwell_s
            last_change, mode = at, state.mode
            assert state.since is not None and state.since.startswith(at.strftime("%Y-%m-%dT%H:%M:%S"))


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 4), st.integers(2, 4), st.integers(2, 40), st.booleans(), st.integers(0, 7200))
def test_alternating_pass_and_fail_never_flaps(promote_after: int, demote_after: int, n: int, start_promoted: bool,
                                                gap_s: int) -> None:
    rules = _rules({"promote_after": promote_after, "demote_after": demote_after})
    # Bring the world to its starting mode first, then alternate.
    lead = [Step(0, 2.0)] * promote_after if start_promoted else []
    alternating = [Step(gap_s, 2.0 if i % 2 else 0.0) for i in range(n)]
    history = _run(rules, lead + alternating)
    modes = {state.mode for _at, _v, state in history[len(lead):]}
    assert modes == {"live" if start_promoted else "compute-only"}


@settings(max_examples=300, deadline=None)
@given(hysteresis, steps)
def test_missing_data_never_promotes_and_reads_compute_only(h: dict, sequence: list[Step]) -> None:
    rules = _rules(h)
    for at, verdict, state in _run(rules, sequence):
        if verdict.outcome == "missing":
            assert state.mode == rules.demote_to and state.pass_streak == 0
            evidence = {"s1": entry(end=at)}
            assert read(rules, state, ["s1"], evidence, at, [], historical=False).mode == "compute-only"


def test_safe_reads_lower_the_mode_and_never_change_the_state() -> None:
    rules = parse_rules({"gates": ["sharpe >= 1"], "ttl": "10m", "data_currency": {"max_lag": "30m"}})
    state = advance(None, rules, evaluate(rules, ["s1"], {"s1": entry(sharpe=2.0)}, T0), 1, T0)
    fresh = {"s1": entry(sharpe=2.0)}
    assert state.mode == "live"
    assert read(rules, state, ["s1"], fresh, T0 + timedelta(minutes=4), [], False).ttl_s == 360
    stale_decision = read(rules, state, ["s1"], fresh, T0 + timedelta(minutes=11), [], False)
    assert (stale_decision.mode, stale_decision.tokens[-1]) == ("compute-only", "decision_stale")
    stale_data = read(rules, state, ["s1"], fresh, T0 + timedelta(minutes=40), [], False)
    assert "data_stale" in stale_data.tokens and stale_data.mode == "compute-only"
    assert read(rules, state, ["s1", "s2"], fresh, T0, [], False).tokens[-1] == "evidence_missing"
    assert read(rules, None, ["s1"], fresh, T0, [], False).tokens == ["awaiting_evaluation"]
    assert state.mode == "live"  # reads never moved it


def test_a_new_policy_version_restarts_the_streaks_but_keeps_the_mode() -> None:
    rules = _rules({"promote_after": 2})
    passing = Verdict("pass", ("gates_pass",))
    one = advance(None, rules, passing, 1, T0)
    assert (one.mode, one.pass_streak, one.hysteresis) == ("compute-only", 1, "pending_promotion")
    other_version = advance(one, rules, passing, 2, T0)
    assert (other_version.mode, other_version.pass_streak) == ("compute-only", 1)
    promoted = advance(other_version, rules, passing, 2, T0)
    assert (promoted.mode, promoted.hysteresis, [t.mode for t in promoted.transitions]) == ("live", "promoted", ["live"])


def test_historical_reads_use_the_mode_then_in_effect() -> None:
    rules = _rules({})
    state = advance(None, rules, Verdict("pass", ("gates_pass",)), 1, T0)
    later = advance(state, rules, Verdict("fail", ("gates_failed",)), 1, T0 + timedelta(hours=2))
    evidence = {"s1": entry(sharpe=2.0)}
    at_one_hour = read(rules, later, ["s1"], evidence, T0 + timedelta(hours=1), [], historical=True)
    assert (at_one_hour.mode, at_one_hour.tokens) == ("live", ["decided_live"])
    before_any = read(rules, later, ["s1"], evidence, T0 - timedelta(hours=1), [], historical=True)
    assert (before_any.mode, before_any.tokens) == ("compute-only", ["decision_unavailable"])
