"""The selection policy engine (reference §5.2), as pure functions: table tests per rule, then properties."""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.selection import (
    SelectionResult,
    choose_profile,
    correlation,
    effective_rules,
    flatten_metrics,
    parse_correlations,
    profile_thresholds,
    select,
)
from messages.errors import CommandRejected, Refusal
from messages.policies import Policy, Selection, Threshold


def _policy(**document: Any) -> Policy:
    return msgspec.convert(document, Policy)


def _run(document: dict[str, Any], metrics: dict[str, Any], previous: list[str] | None = None,
         correlations: Any = None, stage: str | None = None) -> SelectionResult:
    return select(_policy(**document), metrics, previous or [], parse_correlations(correlations), stage)


def _min(metric: str, bound: float) -> dict[str, Any]:
    return {metric: {"metric": metric, "min": bound}}


# --- thresholds ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("bounds", "value", "selected"), [
    ({"min": 0.7}, 0.8, True),
    ({"min": 0.7}, 0.7, True),          # bounds are inclusive
    ({"min": 0.7}, 0.4, False),
    ({"max": 0.25}, 0.25, True),
    ({"max": 0.25}, 0.3, False),
    ({"min": 0.1, "max": 0.25}, 0.2, True),
    ({"min": 0.1, "max": 0.25}, 0.05, False),
    ({}, -5.0, True),                   # a threshold with no bound never blocks
])
def test_threshold_bounds(bounds: dict[str, float], value: float, selected: bool) -> None:
    result = _run({"thresholds": {"t": {"metric": "m", **bounds}}}, {"s1": {"m": value}})
    assert result.active == (["s1"] if selected else [])
    assert result.rules["s1"]["performance"] == ("pass" if selected else "fail")


def test_threshold_failure_note_names_the_value_and_the_bound() -> None:
    result = _run({"thresholds": {**_min("sharpe", 0.7), "dd": {"metric": "max_drawdown", "max": 0.2}}},
                  {"s1": {"sharpe": 1.0, "max_drawdown": 0.1}, "s3": {"sharpe": 0.4, "max_drawdown": 0.3}})
    assert result.active == ["s1"]
    assert result.notes == ["s3: max_drawdown 0.3 > max 0.2", "s3: sharpe 0.4 < min 0.7"]


@pytest.mark.parametrize(("mode", "selected", "performance", "notes"), [
    ("fail", [], "fail", ["s1: sharpe missing"]),
    ("warn", ["s1"], "warn", []),
    ("ignore", ["s1"], "pass", []),
])
def test_on_missing_metric(mode: str, selected: list[str], performance: str, notes: list[str]) -> None:
    document = {"thresholds": _min("sharpe", 0.5), "validation": {"on_missing_metric": mode}}
    result = _run(document, {"s1": {"other": 1.0}})
    assert (result.active, result.rules["s1"]["performance"], result.notes) == (selected, performance, notes)


def test_missing_metric_fails_by_default() -> None:
    assert _run({"thresholds": _min("sharpe", 0.5)}, {"s1": {}}).active == []


# --- top_k ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("metrics", "k", "expected"), [
    ({"a": {"sharpe": 1.0}, "b": {"sharpe": 3.0}, "c": {"sharpe": 2.0}}, 2, ["b", "c"]),
    ({"c": {"sharpe": 1.0}, "b": {"sharpe": 1.0}, "a": {"sharpe": 1.0}}, 2, ["a", "b"]),  # ties: by id
    ({"z": {"sharpe": 1.0}, "a": {}, "b": {"sharpe": -9.0}}, 2, ["b", "z"]),              # missing = -inf
    ({"a": {}, "b": {}}, 1, ["a"]),
    ({"a": {"sharpe": 1.0}}, 5, ["a"]),
])
def test_top_k(metrics: dict[str, Any], k: int, expected: list[str]) -> None:
    result = _run({"top_k": {"metric": "sharpe", "k": k}}, metrics)
    assert result.active == expected
    for sid in metrics:
        assert result.rules[sid]["performance"] == ("pass" if sid in expected else "fail")


def test_top_k_ranks_only_threshold_survivors_and_notes_the_rank() -> None:
    metrics = {"s1": {"sharpe": 3.0, "dd": 0.9}, "s2": {"sharpe": 2.0, "dd": 0.1},
               "s3": {"sharpe": 1.0, "dd": 0.1}, "s4": {"sharpe": 0.5, "dd": 0.1}}
    result = _run({"thresholds": {"dd": {"metric": "dd", "max": 0.5}}, "top_k": {"metric": "sharpe", "k": 2}},
                  metrics)
    assert result.active == ["s2", "s3"]
    assert result.notes == ["s1: dd 0.9 > max 0.5", "s4: rank 3 by sharpe is outside top_k 2"]


# --- correlation ---------------------------------------------------------------------------------------

_RANKED = {"s1": {"sharpe": 3.0}, "s2": {"sharpe": 2.0}, "s3": {"sharpe": 1.0}}


@pytest.mark.parametrize(("correlations", "expected"), [
    ({}, ["s1", "s2", "s3"]),
    ({"s1": {"s2": 0.9}}, ["s1", "s3"]),
    ({"s2": {"s1": 0.9}}, ["s1", "s3"]),                        # the lookup is symmetric
    ({"s1": {"s2": -0.9}}, ["s1", "s3"]),                       # |corr| is compared
    ({"s1": {"s2": 0.7}}, ["s1", "s2", "s3"]),                  # equal to max is allowed
    # greedy: s2 is dropped first, so its high correlation with s3 no longer counts
    ({"s1": {"s2": 0.9, "s3": 0.1}, "s2": {"s3": 0.95}}, ["s1", "s3"]),
    ({"s1": {"s3": 0.9}, "s2": {"s3": 0.1}}, ["s1", "s2"]),
    ([{"a": "s2", "b": "s1", "value": 0.9}], ["s1", "s3"]),     # the list form
])
def test_correlation_greedy(correlations: Any, expected: list[str]) -> None:
    result = _run({"top_k": {"metric": "sharpe", "k": 3}, "correlation": {"max": 0.7}}, _RANKED,
                  correlations=correlations)
    assert result.active == expected
    for sid in _RANKED:
        assert result.rules[sid]["risk_constraint"] == ("pass" if sid in expected else "fail")


def test_correlation_follows_top_k_order_not_id_order() -> None:
    metrics = {"a": {"sharpe": 1.0}, "b": {"sharpe": 2.0}}
    result = _run({"top_k": {"metric": "sharpe", "k": 2}, "correlation": {"max": 0.5}}, metrics,
                  correlations={"a": {"b": 0.8}})
    assert result.active == ["b"]
    assert result.notes == ["a: |corr| with b is 0.8 > max 0.5"]


def test_correlation_without_top_k_goes_in_id_order() -> None:
    metrics = {"b": {"sharpe": 2.0}, "a": {"sharpe": 1.0}}
    assert _run({"correlation": {"max": 0.5}}, metrics, correlations={"a": {"b": 0.8}}).active == ["a"]


def test_correlation_lookup_is_symmetric_and_defaults_to_zero() -> None:
    table = {"s1": {"s2": 0.93}}
    assert correlation(table, "s1", "s2") == correlation(table, "s2", "s1") == 0.93
    assert correlation(table, "s1", "s3") == 0.0
    one_sided_twice = {"s1": {"s2": 0.9}, "s2": {"s1": 0.1}}   # unparsed input may disagree with itself
    assert correlation(one_sided_twice, "s2", "s1") == correlation(one_sided_twice, "s1", "s2")


@pytest.mark.parametrize(("raw", "value"), [
    ({"s1": {"s2": 0.5}, "s3": {}}, 0.5),
    ({"s2": {"s1": 0.5}}, 0.5),
    ([{"a": "s1", "b": "s2", "value": 0.5}], 0.5),
    ([{"a": "s2", "b": "s1", "value": 0.5}, {"a": "s1", "b": "s2", "value": 0.5}], 0.5),  # agreeing repeat
    ({"s1": {"s2": 1}}, 1.0),
])
def test_parse_correlations_accepts_both_forms(raw: Any, value: float) -> None:
    parsed = parse_correlations(raw)
    assert correlation(parsed, "s1", "s2") == correlation(parsed, "s2", "s1") == value
    assert all(a < b for a, row in parsed.items() for b in row)  # canonical: each pair under its smaller id


def test_parse_correlations_canonical_form() -> None:
    assert parse_correlations([{"a": "y", "b": "x", "value": -0.25}]) == {"x": {"y": -0.25}}
    assert parse_correlations(None) == {}
    assert parse_correlations({}) == {} == parse_correlations([])


@pytest.mark.parametrize(("raw", "message"), [
    ("s1,s2", "must be an object"),
    (0.5, "must be an object"),
    ({"s1": 0.5}, "correlations['s1'] must be an object"),
    ({"s1": {"s2": 1.5}}, "correlations['s1']['s2'] must be a finite number in [-1, 1]"),
    ({"s1": {"s2": -1.01}}, "in [-1, 1]"),
    ({"s1": {"s2": float("nan")}}, "finite number"),
    ({"s1": {"s2": float("inf")}}, "finite number"),
    ({"s1": {"s2": 10**400}}, "finite number"),
    ({"s1": {"s2": True}}, "finite number"),
    ({"s1": {"s2": "0.5"}}, "finite number"),
    ({"s1": {"s2": None}}, "finite number"),
    ([{"a": "s1", "b": "s2"}], "correlations[0] must be exactly"),
    ([{"a": "s1", "b": "s2", "value": 0.5, "extra": 1}], "correlations[0] must be exactly"),
    ([{"a": "s1", "b": 2, "value": 0.5}], "correlations[0] must be exactly"),
    (["s1"], "correlations[0] must be exactly"),
    ([{"a": "s1", "b": "s2", "value": 2}], "correlations[0].value must be a finite number"),
    ({"s1": {"s2": 0.5}, "s2": {"s1": 0.6}}, "two different values for the pair 's1'/'s2'"),
    ([{"a": "s1", "b": "s2", "value": 0.5}, {"a": "s1", "b": "s2", "value": 0.4}], "two different values"),
])
def test_parse_correlations_rejects_with_422(raw: Any, message: str) -> None:
    with pytest.raises(CommandRejected) as caught:
        parse_correlations(raw)
    assert caught.value.refusal == Refusal.UNPROCESSABLE
    assert message in caught.value.detail


# --- hysteresis ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "was_active", "selected", "note"), [
    (0.9, True, True, None),                  # incumbent above exit stays
    (0.8, True, True, None),                  # exit is inclusive
    (0.7, True, False, "s1: sharpe 0.7 < exit 0.8 (previously active)"),
    (0.9, False, False, "s1: sharpe 0.9 < enter 1"),   # a newcomer must clear the higher bar
    (1.0, False, True, None),
    (None, True, False, "s1: sharpe missing (hysteresis)"),
    (None, False, False, "s1: sharpe missing (hysteresis)"),
])
def test_hysteresis(value: float | None, was_active: bool, selected: bool, note: str | None) -> None:
    metrics = {"s1": {} if value is None else {"sharpe": value}}
    result = _run({"hysteresis": {"metric": "sharpe", "enter": 1.0, "exit": 0.8}}, metrics,
                  previous=["s1"] if was_active else [])
    assert result.active == (["s1"] if selected else [])
    assert result.notes == ([] if note is None else [note])
    assert result.rules["s1"]["risk_constraint"] == ("pass" if selected else "fail")


def test_previously_active_strategy_without_metrics_is_noted() -> None:
    result = _run({}, {"s1": {"sharpe": 1.0}}, previous=["s9", "s1"])
    assert result.active == ["s1"]
    assert result.notes == ["s9: previously active but no metrics were supplied"]


# --- selection block merge -----------------------------------------------------------------------------

def test_selection_block_merge_precedence() -> None:
    policy = _policy(
        thresholds=_min("sharpe", 1.0), top_k={"metric": "sharpe", "k": 9}, correlation={"max": 0.9},
        hysteresis={"metric": "sharpe", "enter": 1, "exit": 0.5},
        selection={"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.1},
                                  "dd": {"metric": "dd", "max": 0.3}},
                   "top_k": {"metric": "sortino", "k": 2}, "correlation": {"max": 0.4}},
    )
    rules = effective_rules(policy)
    assert rules.thresholds["sharpe"].min == 1.0          # top-level thresholds win on the same key
    assert rules.thresholds["dd"].max == 0.3               # selection-only thresholds are kept
    assert (rules.top_k.metric, rules.top_k.k) == ("sortino", 2)   # the selection block wins for top_k ...
    assert rules.correlation.max == 0.4                    # ... and for correlation
    assert rules.hysteresis.exit == 0.5                    # top-level fills what the block leaves out


def test_selection_block_alone_drives_selection() -> None:
    document = {"selection": {"thresholds": _min("sharpe", 1.0), "top_k": {"metric": "sharpe", "k": 1}}}
    result = _run(document, {"a": {"sharpe": 0.5}, "b": {"sharpe": 2.0}, "c": {"sharpe": 1.5}})
    assert result.active == ["b"]


# --- validation profiles -------------------------------------------------------------------------------

_PROFILES = {"backtest": {"performance": {"sharpe_min": 0.5}}, "paper": {"performance": {"sharpe_min": 1.0}},
             "strict": {"performance": {"sharpe_min": 2.0}}}


@pytest.mark.parametrize(("profiles", "by_stage", "stage", "chosen"), [
    (_PROFILES, {"paper": "strict"}, "paper", "strict"),          # default_profile_by_stage[stage]
    (_PROFILES, {"paper_only": "strict"}, "paper", "strict"),     # then [stage_only]
    (_PROFILES, {"live": "strict"}, "paper", "paper"),            # then the stage name itself
    (_PROFILES, {"live": "strict"}, "shadow", "strict"),          # then any default_profile_by_stage value
    (_PROFILES, {}, "shadow", "backtest"),                        # then backtest
    ({"paper": {}, "zeta": {}}, {}, "shadow", "paper"),           # then paper
    ({"zeta": {}, "alpha": {}}, {}, None, "alpha"),               # then the first (smallest) name
    (_PROFILES, {"PAPER": "Strict"}, " Paper ", "strict"),       # names compare case- and space-insensitively
    ({"live-ready": {}, "backtest": {}}, {}, "live_ready", "live-ready"),   # "-" and "_" are the same
    (_PROFILES, {"paper": "nonexistent"}, "paper", "paper"),      # a dangling mapping is skipped
    ({}, {"paper": "strict"}, "paper", None),                     # no profiles, no choice
])
def test_profile_choice(profiles: dict[str, Any], by_stage: dict[str, str], stage: str | None,
                        chosen: str | None) -> None:
    policy = _policy(validation_profiles=profiles, default_profile_by_stage=by_stage)
    assert choose_profile(policy, stage) == chosen


@pytest.mark.parametrize(("profiles", "by_stage", "stage"), [
    ({"Paper": {}, "paper": {}}, {}, "paper"),                    # two names normalise alike
    ({"strict": {}, "paper": {}}, {"zz": "strict", "aa": "paper"}, "shadow"),   # "any mapped value"
    ({"zeta": {}, "alpha": {}}, {}, None),                        # "the first profile"
])
def test_profile_choice_ignores_dict_order(profiles: dict[str, Any], by_stage: dict[str, str],
                                           stage: str | None) -> None:
    forward = _policy(validation_profiles=profiles, default_profile_by_stage=by_stage)
    backward = _policy(validation_profiles=dict(reversed(profiles.items())),
                       default_profile_by_stage=dict(reversed(by_stage.items())))
    assert choose_profile(forward, stage) == choose_profile(backward, stage) is not None


@pytest.mark.parametrize(("stage", "selected"),
                         [("backtest", ["a", "b"]), ("paper", ["b"]), ("live", ["a", "b"])])
def test_profile_thresholds_apply_by_stage(stage: str, selected: list[str]) -> None:
    metrics = {"a": {"sharpe": 0.8}, "b": {"sharpe": 1.2}}
    result = _run({"validation_profiles": _PROFILES}, metrics, stage=stage)
    assert result.active == selected
    assert result.profile == ("paper" if stage == "paper" else "backtest")


def test_profile_threshold_table() -> None:
    profile = {
        "sample": {"min_effective_years": 3, "min_trades_total": 100, "severity": "soft", "owner": "quant"},
        "performance": {"sharpe_min": 0.6, "max_dd_max": 0.2, "gain_to_pain_min": 1.1},
        "robustness": {"dsr_min": 0.9, "cv_sharpe_gap_max": 0.5},
        "risk": {"adv_utilization_p95_max": 0.1, "participation_rate_p95_max": 0.05},
    }
    created = {m: (t.min, t.max) for m, t in profile_thresholds("p", profile).items()}
    assert created == {
        "effective_history_years": (3.0, None), "n_trades_total": (100.0, None), "sharpe": (0.6, None),
        "max_drawdown": (None, 0.2), "gain_to_pain_ratio": (1.1, None), "deflated_sharpe_ratio": (0.9, None),
        "adv_utilization_p95": (None, 0.1), "participation_rate_p95": (None, 0.05),
    }
    assert profile_thresholds("p", {"performance": None}) == {}


def test_profile_thresholds_override_a_policy_threshold_of_the_same_name() -> None:
    policy = _policy(thresholds=_min("sharpe", 5.0),
                     validation_profiles={"backtest": {"performance": {"sharpe_min": 1}}})
    assert effective_rules(policy, "backtest").thresholds["sharpe"].min == 1.0
    assert effective_rules(policy).thresholds["sharpe"].min == 5.0


@pytest.mark.parametrize("profile", [
    {"performance": {"sharpe_min": "high"}}, {"performance": {"sharpe_min": True}},
    {"performance": {"sharpe_min": float("nan")}}, {"sample": [1, 2]},
])
def test_unusable_profile_is_422(profile: dict[str, Any]) -> None:
    with pytest.raises(CommandRejected) as caught:
        _run({"validation_profiles": {"backtest": profile}}, {"s1": {"sharpe": 1.0}})
    assert caught.value.refusal == Refusal.UNPROCESSABLE and "validation profile 'backtest'" in caught.value.detail


def test_nan_threshold_bound_is_422() -> None:
    with pytest.raises(CommandRejected) as caught:
        select(Policy(thresholds={"t": Threshold(metric="m", min=math.nan)}), {}, [], {})
    assert caught.value.refusal == Refusal.UNPROCESSABLE


# --- metric flattening ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "flat"), [
    ({"returns": {"sharpe": 1}}, {"sharpe": 1.0, "returns.sharpe": 1.0}),
    ({"a": {"b": {"c": 2.5}}}, {"c": 2.5, "a.b.c": 2.5}),
    ({"ok": True, "n": 3, "name": "x", "series": [1, 2]}, {"n": 3.0}),  # bools, text, lists: not metrics
    ({"x": math.nan, "y": math.inf, "z": -math.inf, "w": 10**400}, {}),      # non-finite counts as missing
    ({"sharpe": math.nan, "returns": {"sharpe": 1.5}}, {"sharpe": 1.5, "returns.sharpe": 1.5}),
    ({"sharpe": 2, "returns": {"sharpe": 1}}, {"sharpe": 2.0, "returns.sharpe": 1.0}),   # the shallowest wins
    ({"b": {"sharpe": 2}, "a": {"sharpe": 1}}, {"sharpe": 1.0, "a.sharpe": 1.0, "b.sharpe": 2.0}),
    ({"x": {"b.c": 1}, "b": {"c": 2}}, {"b.c": 2.0, "x.b.c": 1.0, "c": 2.0}),  # exact path beats leaf alias
    (None, {}),
    (5, {}),
])
def test_flatten_metrics(raw: Any, flat: dict[str, float]) -> None:
    assert flatten_metrics(raw) == flat


def test_nested_metrics_are_selected_by_leaf_and_by_path() -> None:
    metrics = {"s1": {"returns": {"sharpe": 1.2}, "risk": {"max_drawdown": 0.1}},
               "s2": {"returns": {"sharpe": 0.2}}}
    by_leaf = _run({"thresholds": _min("sharpe", 1.0)}, metrics)
    by_path = _run({"thresholds": _min("returns.sharpe", 1.0)}, metrics)
    assert by_leaf.active == by_path.active == ["s1"]


def test_nan_metric_is_missing_for_thresholds() -> None:
    result = _run({"thresholds": _min("sharpe", 0.0), "validation": {"on_missing_metric": "fail"}},
                  {"s1": {"sharpe": math.nan}})
    assert (result.active, result.notes) == ([], ["s1: sharpe missing"])


# --- rule report ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "metrics", "status"), [
    ("fail", {"lag_seconds": 5.0}, "pass"),
    ("fail", {"other": 1.0}, "fail"),
    ("warn", {"other": 1.0}, "warn"),
    ("ignore", {"other": 1.0}, "warn"),
    ("fail", {}, "fail"),                   # no metrics at all is a currency problem
])
def test_data_currency_report(mode: str, metrics: dict[str, float], status: str) -> None:
    document = {"thresholds": {"lag": {"metric": "lag_seconds", "max": 60}},
                "validation": {"on_missing_metric": mode}}
    assert _run(document, {"s1": metrics}).rules["s1"]["data_currency"] == status


@pytest.mark.parametrize(("thresholds", "metrics", "status"), [
    ({}, {"n_trades_total": 50.0}, "pass"),
    ({}, {"sharpe": 1.0}, "warn"),                                       # no sample depth reported
    (_min("n_trades_total", 100), {"n_trades_total": 50.0}, "fail"),
    (_min("n_trades_total", 100), {"n_trades_total": 150.0}, "pass"),
    (_min("effective_history_years", 2), {"sharpe": 1.0}, "fail"),       # missing under "fail"
])
def test_sample_report(thresholds: dict[str, Any], metrics: dict[str, float], status: str) -> None:
    assert _run({"thresholds": thresholds}, {"s1": metrics}).rules["s1"]["sample"] == status


def test_report_covers_every_strategy_with_the_four_rules() -> None:
    result = _run({"thresholds": _min("sharpe", 1.0)}, {"a": {"sharpe": 2.0}, "b": {"sharpe": 0.0}})
    assert set(result.rules) == {"a", "b"}
    names = {"data_currency", "sample", "performance", "risk_constraint"}
    assert all(set(r) == names for r in result.rules.values())
    assert all(s in ("pass", "fail", "warn") for r in result.rules.values() for s in r.values())


# --- ruleset hash --------------------------------------------------------------------------------------

_BASE = {"thresholds": _min("sharpe", 0.5), "top_k": {"metric": "sharpe", "k": 3}}


def _hash(document: dict[str, Any], stage: str | None = None) -> str:
    return _run(document, {"s1": {"sharpe": 1.0}}, stage=stage).ruleset_hash


def test_ruleset_hash_has_exactly_one_prefix() -> None:
    assert re.fullmatch(r"blake3:[0-9a-f]{64}", _hash(_BASE))


@pytest.mark.parametrize("changed", [
    {**_BASE, "thresholds": _min("sharpe", 0.6)},
    {**_BASE, "top_k": {"metric": "sharpe", "k": 4}},
    {**_BASE, "correlation": {"max": 0.5}},
    {**_BASE, "hysteresis": {"metric": "sharpe", "enter": 1, "exit": 0.5}},
    {**_BASE, "validation": {"on_missing_metric": "warn"}},
    {**_BASE, "cohort": {"sharpe_median_min": 1}},
])
def test_ruleset_hash_changes_with_the_policy(changed: dict[str, Any]) -> None:
    assert _hash(changed) != _hash(_BASE)


def test_ruleset_hash_covers_the_chosen_profile() -> None:
    document = {**_BASE, "validation_profiles": {"backtest": {}, "paper": {}}}
    assert _hash(document, "backtest") != _hash(document, "paper")
    assert _hash(document, "backtest") != _hash(_BASE)


def test_ruleset_hash_ignores_spelling() -> None:
    spelled = {"top_k": {"k": 3, "metric": "sharpe"}, "selection": {"thresholds": _min("sharpe", 0.5)},
               "governance": {"live_promotion": {}}}
    assert _hash(spelled) == _hash(_BASE)
    assert select(Policy(thresholds={"sharpe": Threshold(metric="sharpe", min=1)}), {}, [], {}).ruleset_hash \
        == select(Policy(thresholds={"sharpe": Threshold(metric="sharpe", min=1.0)}), {}, [], {}).ruleset_hash


# --- properties ----------------------------------------------------------------------------------------

IDS = [f"s{i}" for i in range(6)]
_value = st.one_of(st.none(), st.just(math.nan), st.floats(-2, 3, allow_nan=False))


@st.composite
def _metrics(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=6))
    metrics: dict[str, Any] = {}
    for sid in chosen:
        sharpe, dd = draw(_value), draw(_value)
        values: dict[str, Any] = {} if dd is None else {"max_drawdown": dd}
        if sharpe is not None:
            # the same metric arrives either flat or nested; both must behave the same
            values.update({"sharpe": sharpe} if draw(st.booleans()) else {"returns": {"sharpe": sharpe}})
        metrics[sid] = values
    return metrics


@st.composite
def _documents(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = {"thresholds": {}, "validation": {
        "on_missing_metric": draw(st.sampled_from(["fail", "warn", "ignore"]))}}
    if draw(st.booleans()):
        document["thresholds"]["sharpe"] = {"metric": "sharpe", "min": draw(st.floats(-1, 2))}
    if draw(st.booleans()):
        document["thresholds"]["dd"] = {"metric": "max_drawdown", "max": draw(st.floats(-1, 2))}
    if draw(st.booleans()):
        document["top_k"] = {"metric": "sharpe", "k": draw(st.integers(1, 4))}
    if draw(st.booleans()):
        document["correlation"] = {"max": draw(st.floats(-1, 1))}
    if draw(st.booleans()):
        enter = draw(st.floats(-1, 2))
        document["hysteresis"] = {"metric": "sharpe", "enter": enter, "exit": enter - draw(st.floats(0, 1))}
    return document


_correlations = st.dictionaries(st.sampled_from(IDS), st.dictionaries(st.sampled_from(IDS), st.floats(-1, 1)))
_previous = st.lists(st.sampled_from([*IDS, "gone"]), unique=True)
_cases = st.tuples(_documents(), _metrics(), _previous, _correlations)


def _reordered(value: Any, order: Any) -> Any:
    """The same content with every dict and list rearranged by ``order`` (a list -> list function)."""
    if isinstance(value, dict):
        return {k: _reordered(v, order) for k, v in order(list(value.items()))}
    if isinstance(value, list):
        return [_reordered(v, order) for v in order(value)]
    return value


@settings(max_examples=300, deadline=None)
@given(_cases, st.data())
def test_result_does_not_depend_on_input_order(case: tuple[Any, ...], data: st.DataObject) -> None:
    document, metrics, previous, correlations = case
    first = msgspec.json.encode(select(_policy(**document), metrics, previous, correlations))
    # reversal always moves something; a drawn permutation explores the rest
    for order in (lambda items: items[::-1], lambda items: data.draw(st.permutations(items))):
        again = select(_policy(**_reordered(document, order)), _reordered(metrics, order),
                       _reordered(previous, order), _reordered(correlations, order))
        assert msgspec.json.encode(again) == first   # same content and the same key order


def _passes_blocking_thresholds(flat: dict[str, float], rules: Selection, missing_mode: str) -> bool:
    for threshold in rules.thresholds.values():
        value = flat.get(threshold.metric)
        if value is None:
            if missing_mode == "fail":
                return False
            continue
        below = threshold.min is not None and value < threshold.min
        if below or (threshold.max is not None and value > threshold.max):
            return False
    return True


def _clears_hysteresis(flat: dict[str, float], rules: Selection, was_active: bool) -> bool:
    if rules.hysteresis is None:
        return True
    floor = rules.hysteresis.exit if was_active else rules.hysteresis.enter
    return "sharpe" in flat and flat["sharpe"] >= floor


def _pairs_within(active: list[str], correlations: dict[str, dict[str, float]], rules: Selection) -> bool:
    if rules.correlation is None:
        return True
    limit = rules.correlation.max
    return all(abs(correlation(correlations, a, b)) <= limit for a, b in itertools.combinations(active, 2))


@settings(max_examples=300, deadline=None)
@given(_cases)
def test_selection_invariants(case: tuple[Any, ...]) -> None:
    document, metrics, previous, correlations = case
    policy = _policy(**document)
    result = select(policy, metrics, previous, correlations)
    rules = effective_rules(policy)
    assert set(result.active) <= set(metrics)
    assert result.active == sorted(set(result.active))
    assert rules.top_k is None or len(result.active) <= rules.top_k.k
    mode = policy.validation.on_missing_metric
    for sid in result.active:
        flat = flatten_metrics(metrics[sid])
        assert _passes_blocking_thresholds(flat, rules, mode)
        assert _clears_hysteresis(flat, rules, sid in previous)
    assert _pairs_within(result.active, correlations, rules)
    assert set(result.rules) == set(metrics)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(IDS), st.sampled_from(IDS), st.floats(-1, 1)), max_size=12),
       st.data())
def test_both_correlation_forms_parse_to_the_same_table(pairs: list[tuple[str, str, float]],
                                                        data: st.DataObject) -> None:
    unique = {(min(a, b), max(a, b)): v for a, b, v in pairs}                 # one value per pair
    listed = [{"a": a, "b": b, "value": v} if data.draw(st.booleans()) else {"a": b, "b": a, "value": v}
              for (a, b), v in unique.items()]
    nested: dict[str, dict[str, float]] = {}
    for item in listed:
        nested.setdefault(item["a"], {})[item["b"]] = item["value"]
    assert parse_correlations(listed) == parse_correlations(nested)
