"""Multi-world rebalancing as pure functions (reference §1.5, §1.6, §6): the worked example and the
reference's test cases, overlay mode, the v1/v2 contract, alpha metrics, the allocation etag, properties."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.rebalancing import (
    EMPTY_ALLOCATIONS_DETAIL,
    ETAG_MISMATCH_DETAIL,
    HYBRID_DETAIL,
    OVERFLOW_DETAIL,
    OVERLAY_REQUIRED_DETAIL,
    RUN_CONFLICT_DETAIL,
    V2_REQUIRED_DETAIL,
    allocation_etag,
    allocation_response,
    allocation_snapshot,
    alpha_metrics,
    check_replay,
    compute_plan,
    negotiate,
    net_globally,
    performance_metrics,
    plan_allocation,
    plan_overlay,
    plan_rebalance,
    plan_scaling,
    round_to_lot,
    touched_worlds,
    validate_allocations,
)
from domain.rebalancing.scaling import strategy_targets
from messages.errors import CommandRejected, Refusal
from messages.rebalancing import (
    ALPHA_METRIC_KEYS,
    AllocationUpsertRequest,
    MultiWorldRebalanceRequest,
    MultiWorldRebalanceResponse,
    SymbolDelta,
    WorldPlan,
)

BTC_AT_60000 = {"symbol": "BTC", "mark": 60000.0, "venue": "x"}


def _request(**fields: Any) -> MultiWorldRebalanceRequest:
    return msgspec.convert(fields, MultiWorldRebalanceRequest)


def _upsert(**fields: Any) -> AllocationUpsertRequest:
    document = {"run_id": "r1", "total_equity": 1000.0, "positions": [], **fields}
    return msgspec.convert(document, AllocationUpsertRequest)


def _slice(world: str, strategy: str, symbol: str, qty: float, mark: float, venue: str | None = "binance",
           ) -> dict[str, Any]:
    return {"world_id": world, "strategy_id": strategy, "symbol": symbol, "qty": qty, "mark": mark,
            "venue": venue}


def _one_world(before: float, after: float, positions: list[dict[str, Any]], *, strategies_before: Any = None,
               strategies_after: Any = None, equity: float = 1_000_000.0, min_trade: float = 0.0,
               lots: dict[str, float] | None = None) -> WorldPlan:
    world = positions[0]["world_id"]
    per_world, _ = plan_scaling(_request(
        total_equity=equity, world_alloc_before={world: before}, world_alloc_after={world: after},
        positions=positions, min_trade_notional=min_trade, lot_size_by_symbol=lots,
        strategy_alloc_before_total=None if strategies_before is None else {world: strategies_before},
        strategy_alloc_after_total=None if strategies_after is None else {world: strategies_after}))
    return per_world[world]


def _raises(refusal: Refusal, detail: str, call: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(CommandRejected) as caught:
        call(*args, **kwargs)
    assert (caught.value.refusal, caught.value.detail) == (refusal, detail)


# --- the reference's worked example (§6.2) -------------------------------------------------------------

def _worked_example(**extra: Any) -> MultiWorldRebalanceRequest:
    return _request(total_equity=1000.0, world_alloc_before={"w1": 0.3, "w2": 0.2},
                    world_alloc_after={"w1": 0.2, "w2": 0.25},
                    positions=[{"world_id": "w1", "strategy_id": "s1", "qty": 1.0, **BTC_AT_60000},
                               {"world_id": "w2", "strategy_id": "s9", "qty": -0.5, **BTC_AT_60000}],
                    lot_size_by_symbol={"BTC": 0.001}, **extra)


def test_worked_example_gives_the_reference_numbers_exactly() -> None:
    per_world, global_deltas = plan_scaling(_worked_example())
    assert per_world["w1"].scale_world == pytest.approx(2 / 3)
    assert per_world["w2"].scale_world == 1.25
    # w2's net notional is negative, so its inferred strategy share is 0 and s9 follows the world's scale.
    assert per_world["w2"].scale_by_strategy == {"s9": 1.25}
    assert per_world["w1"].deltas == [SymbolDelta(symbol="BTC", delta_qty=-0.333, venue="x")]
    assert per_world["w2"].deltas == [SymbolDelta(symbol="BTC", delta_qty=-0.125, venue="x")]
    assert global_deltas == [SymbolDelta(symbol="BTC", delta_qty=-0.458, venue="x")]


def test_worked_example_as_a_v1_answer() -> None:
    answer = json.loads(msgspec.json.encode(plan_rebalance(_worked_example())))
    assert answer == {
        "schema_version": 1,
        "per_world": {
            "w1": {"world_id": "w1", "scale_world": 0.2 / 0.3, "scale_by_strategy": {"s1": 0.2 / 0.3},
                   "deltas": [{"symbol": "BTC", "delta_qty": -0.333, "venue": "x"}]},
            "w2": {"world_id": "w2", "scale_world": 1.25, "scale_by_strategy": {"s9": 1.25},
                   "deltas": [{"symbol": "BTC", "delta_qty": -0.125, "venue": "x"}]},
        },
        "global_deltas": [{"symbol": "BTC", "delta_qty": -0.458, "venue": "x"}],
    }


# --- the reference's rebalancing test cases (§6.2) -----------------------------------------------------

def test_downscale_with_given_strategy_targets_rounds_toward_zero() -> None:
    plan = _one_world(0.3, 0.2, [_slice("a", "b", "BTCUSDT", 1.0, 60000.0)], strategies_before={"b": 0.1},
                      strategies_after={"b": 0.2 / 3}, lots={"BTCUSDT": 0.001})
    assert plan.scale_world == pytest.approx(0.2 / 0.3)
    assert plan.deltas == [SymbolDelta(symbol="BTCUSDT", delta_qty=-0.333, venue="binance")]


def test_upscale_raw_point_one_rounds_toward_zero_to_one_lot_of_0_07() -> None:
    plan = _one_world(0.1, 0.11, [_slice("x", "s", "ETHUSDT", 1.0, 2000.0)], strategies_before={"s": 0.1},
                      strategies_after={"s": 0.11}, lots={"ETHUSDT": 0.07})
    assert plan.deltas == [SymbolDelta(symbol="ETHUSDT", delta_qty=0.07, venue="binance")]


def test_two_slices_summing_exactly_to_minus_one_land_on_the_0_25_lot_boundary() -> None:
    slices = [_slice("w", "s1", "ETHUSDT", 1.0, 100.0), _slice("w", "s2", "ETHUSDT", 1.0, 100.0)]
    plan = _one_world(0.2, 0.1, slices,
                      strategies_before={"s1": 0.1, "s2": 0.1}, strategies_after={"s1": 0.05, "s2": 0.05},
                      lots={"ETHUSDT": 0.25})
    assert plan.deltas == [SymbolDelta(symbol="ETHUSDT", delta_qty=-1.0, venue="binance")]


def test_min_trade_notional_suppresses_a_half_unit_notional_change() -> None:
    plan = _one_world(0.2, 0.199, [_slice("m", "s", "BTCUSDT", 1.0, 100.0)], strategies_before={"s": 0.2},
                      strategies_after={"s": 0.199}, min_trade=1.0, lots={"BTCUSDT": 0.001})
    assert plan.deltas == []
    # the same change without the threshold is traded
    plan = _one_world(0.2, 0.199, [_slice("m", "s", "BTCUSDT", 1.0, 100.0)], strategies_before={"s": 0.2},
                      strategies_after={"s": 0.199}, lots={"BTCUSDT": 0.001})
    assert plan.deltas == [SymbolDelta(symbol="BTCUSDT", delta_qty=-0.005, venue="binance")]


def test_a_symbol_with_no_positive_mark_is_skipped() -> None:
    plan = _one_world(0.1, 0.0, [_slice("z", "s", "DOGEUSDT", 1.0, -100.0)], strategies_before={"s": 0.1},
                      strategies_after={"s": 0.0}, lots={"DOGEUSDT": 1.0})
    assert plan.deltas == []


def test_zero_total_equity_gives_scale_one_and_no_deltas() -> None:
    request = _request(total_equity=0.0, world_alloc_before={"z": 0.4}, world_alloc_after={"z": 0.4},
                       positions=[_slice("z", "s", "BTCUSDT", 1.0, 10_000.0)],
                       lot_size_by_symbol={"BTCUSDT": 0.001})
    per_world, global_deltas = plan_scaling(request)
    assert per_world["z"].scale_world == 1.0
    assert per_world["z"].deltas == []
    assert global_deltas == []


def test_strategy_scale_is_applied_directly_not_capped_by_the_world_scale() -> None:
    """The reference's code (followed here) uses gs; its docs' min(gw, gs) would shrink b by 2/3."""
    plan = _one_world(0.3, 0.2, [_slice("a", "b", "BTCUSDT", 1.0, 60000.0)], strategies_before={"b": 0.1},
                      strategies_after={"b": 0.1}, lots={"BTCUSDT": 0.001})
    assert plan.scale_by_strategy == {"b": 1.0}
    assert plan.deltas == []


def test_strategy_targets_are_inferred_from_exposure_and_cascade_from_the_world() -> None:
    positions = [_slice("w", "s1", "BTCUSDT", 1.0, 200_000.0), _slice("w", "s2", "ETHUSDT", 10.0, 2_000.0)]
    request = _request(total_equity=1_000_000.0, world_alloc_before={"w": 0.2}, world_alloc_after={"w": 0.3},
                       positions=positions)
    before, after = strategy_targets(request, "w", request.positions)
    assert before == pytest.approx({"s1": 0.2, "s2": 0.02})
    assert after == pytest.approx({"s1": 0.2 * 1.5, "s2": 0.02 * 1.5})


def test_global_netting_averages_world_marks_and_applies_the_threshold() -> None:
    plan = WorldPlan(world_id="w", scale_world=1.0, scale_by_strategy={"s": 1.0},
                     deltas=[SymbolDelta(symbol="BTCUSDT", delta_qty=-0.75, venue="binance")])
    marks = {"w": {("binance", "BTCUSDT"): 30_000.0}}
    assert net_globally({"w": plan}, marks, 100.0, {}) == [
        SymbolDelta(symbol="BTCUSDT", delta_qty=-0.75, venue="binance")]
    assert net_globally({"w": plan}, marks, 30_000.0, {}) == []  # |net notional| 22500 < 30000


def test_global_netting_across_worlds_rounds_to_the_lot() -> None:
    """Marks differ per world: notionals 0.01 x 100 + 0.01 x 110 = 2.1 at the mean mark 105 -> 0.02 lots."""
    plans = {w: WorldPlan(world_id=w, scale_world=1.0, scale_by_strategy={},
                          deltas=[SymbolDelta(symbol="S", delta_qty=0.01, venue=None)]) for w in ("a", "b")}
    marks = {"a": {(None, "S"): 100.0}, "b": {(None, "S"): 110.0}}
    assert net_globally(plans, marks, 0.0, {}) == [SymbolDelta(symbol="S", delta_qty=2.1 / 105, venue=None)]
    assert net_globally(plans, marks, 0.0, {"S": 0.01}) == [
        SymbolDelta(symbol="S", delta_qty=0.02, venue=None)]
    assert net_globally(plans, marks, 0.0, {"S": 0.03}) == []  # rounds to zero lots


def test_offsetting_worlds_net_to_nothing() -> None:
    request = _request(total_equity=1000.0, world_alloc_before={"a": 0.2, "b": 0.2},
                       world_alloc_after={"a": 0.1, "b": 0.1},
                       positions=[_slice("a", "s", "BTC", 1.0, 100.0), _slice("b", "s", "BTC", -1.0, 100.0)])
    per_world, global_deltas = plan_scaling(request)
    assert [d.delta_qty for d in per_world["a"].deltas] == [-0.5]
    assert [d.delta_qty for d in per_world["b"].deltas] == [0.5]
    assert global_deltas == []


def test_only_worlds_with_positions_get_a_plan_and_deltas_are_sorted() -> None:
    request = _request(total_equity=1000.0, world_alloc_before={"a": 0.5, "ghost": 0.5},
                       world_alloc_after={"a": 0.25, "ghost": 0.0},
                       positions=[_slice("a", "s", "ETH", 2.0, 10.0, venue="y"),
                                  _slice("a", "s", "BTC", 2.0, 10.0),
                                  _slice("a", "s", "ADA", 2.0, 10.0, venue=None)])
    per_world, _ = plan_scaling(request)
    assert list(per_world) == ["a"]
    assert [(d.venue, d.symbol) for d in per_world["a"].deltas] == [
        (None, "ADA"), ("binance", "BTC"), ("y", "ETH")]


def test_a_world_losing_its_whole_allocation_is_liquidated() -> None:
    plan = _one_world(0.4, 0.0, [_slice("w", "s", "BTC", 0.3, 100.0), _slice("w", "t", "BTC", -0.1, 90.0)])
    assert plan.scale_world == 0.0
    assert plan.scale_by_strategy == {"s": 0.0, "t": 0.0}
    # net notional 30 - 9 = 21 is closed at the mean mark (100 + 90) / 2
    assert plan.deltas == [SymbolDelta(symbol="BTC", delta_qty=pytest.approx(-21.0 / 95.0), venue="binance")]


def test_a_plan_that_overflows_is_refused_not_answered_with_inf() -> None:
    request = _request(total_equity=1.0, world_alloc_before={"w": 1e-300}, world_alloc_after={"w": 1.0},
                       positions=[_slice("w", "s", "BTC", 1e300, 1e10)])
    _raises(Refusal.UNPROCESSABLE, OVERFLOW_DETAIL, plan_scaling, request)


# --- lot rounding ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("qty", "lot", "expected"), [
    (0.1, 0.07, 0.07),
    (-0.3333333333, 0.001, -0.333),
    (0.1 + 0.2, 0.1, 0.3),                          # 0.30000000000000004: float noise above 3 lots
    (0.3 - 0.1, 0.1, 0.2),                          # 0.19999999999999998: float noise below 2 lots
    (2.9999999999999996, 1.0, 3.0),
    (0.069, 0.07, 0.0),
    (5.0, None, 5.0),
    (5.0, 0.0, 5.0),                                # no rounding for a lot <= 0, as in the reference
    (5.0, -1.0, 5.0),
    (-1.0, 0.25, -1.0),
])
def test_round_to_lot(qty: float, lot: float | None, expected: float) -> None:
    assert round_to_lot(qty, lot) == expected


# --- overlay mode (§6.4) --------------------------------------------------------------------------------

def _overlay_request(overlay: Any = "default", **extra: Any) -> MultiWorldRebalanceRequest:
    if overlay == "default":
        overlay = {"instrument_by_world": {"a": "ES", "b": "NQ"},
                   "price_by_symbol": {"ES": 5000.0, "NQ": 20000.0}}
    document = {"total_equity": 1_000_000.0, "world_alloc_before": {"a": 0.2, "b": 0.5},
                "world_alloc_after": {"a": 0.1, "b": 0.6}, "mode": "overlay", "overlay": overlay,
                "positions": [_slice("a", "s", "AAPL", 100.0, 200.0), _slice("b", "t", "MSFT", 10.0, 400.0)],
                **extra}
    return _request(**document)


def test_overlay_deltas_hedge_each_worlds_notional_change() -> None:
    deltas = plan_overlay(_overlay_request())
    # a: (0.5 - 1) x 20000 / 5000 = -2 ES; b: (1.2 - 1) x 4000 / 20000 = 0.04 NQ
    assert deltas == [SymbolDelta(symbol="ES", delta_qty=-2.0, venue=None),
                      SymbolDelta(symbol="NQ", delta_qty=pytest.approx(0.04), venue=None)]


def test_overlay_mode_answer_carries_the_scaling_plan_and_the_overlay_deltas() -> None:
    answer = json.loads(msgspec.json.encode(plan_rebalance(_overlay_request())))
    assert set(answer["per_world"]) == {"a", "b"}
    assert answer["overlay_deltas"][0] == {"symbol": "ES", "delta_qty": -2.0}  # null venue omitted
    assert len(answer["global_deltas"]) == 2


def test_overlay_uses_the_given_world_scale_and_skips_unknowable_or_small_changes() -> None:
    request = _overlay_request(world_alloc_before={"a": 0.0, "b": 0.5})
    assert [d.symbol for d in plan_overlay(request)] == ["NQ"]          # a: no prior allocation
    # a's scale given: (2 - 1) x 20000 / 5000
    assert next(d.delta_qty for d in plan_overlay(request, {"a": 2.0})) == 4.0
    small = _overlay_request({"instrument_by_world": {"a": "ES", "b": "NQ"},
                              "price_by_symbol": {"ES": 5000.0, "NQ": 20000.0}, "min_order_notional": 1000.0})
    assert [d.symbol for d in plan_overlay(small)] == ["ES"]            # b's change is 800 < 1000
    flat = _overlay_request(positions=[_slice("a", "s", "AAPL", 1.0, 1.0),
                                       _slice("a", "s", "AAPL", -1.0, 1.0)])
    assert plan_overlay(flat) == []                                     # zero notional, b holds nothing


@pytest.mark.parametrize(("overlay", "detail"), [
    (None, OVERLAY_REQUIRED_DETAIL),
    ({"price_by_symbol": {"ES": 1.0}}, "overlay.instrument_by_world is required for overlay mode"),
    ({"instrument_by_world": {}, "price_by_symbol": {"ES": 1.0}},
     "overlay.instrument_by_world is required for overlay mode"),
    ({"instrument_by_world": {"a": "ES", "b": "NQ"}}, "overlay.price_by_symbol is required for overlay mode"),
    ({"instrument_by_world": {"a": "ES"}, "price_by_symbol": {"ES": 1.0}},
     "overlay.instrument_by_world missing world 'b'"),
    ({"instrument_by_world": {"a": "ES", "b": "NQ"}, "price_by_symbol": {"ES": 1.0}},
     "overlay.price_by_symbol missing or zero for instrument 'NQ'"),
    ({"instrument_by_world": {"a": "ES", "b": "NQ"}, "price_by_symbol": {"ES": 1.0, "NQ": 0.0}},
     "overlay.price_by_symbol missing or zero for instrument 'NQ'"),
    ({"instrument_by_world": {"a": "ES", "b": "NQ"}, "price_by_symbol": {"ES": -1.0, "NQ": 1.0}},
     "overlay.price_by_symbol must be positive for instrument 'ES'"),
])
def test_overlay_config_errors_are_422_with_the_reference_messages(overlay: Any, detail: str) -> None:
    _raises(Refusal.UNPROCESSABLE, detail, plan_overlay, _overlay_request(overlay))
    _raises(Refusal.UNPROCESSABLE, detail, plan_rebalance, _overlay_request(overlay))


# --- hybrid, negotiation, the v1/v2 answer (§6.5) --------------------------------------------------------

def test_hybrid_is_501_everywhere() -> None:
    _raises(Refusal.NOT_IMPLEMENTED, HYBRID_DETAIL, plan_rebalance, _worked_example(mode="hybrid"))
    _raises(Refusal.NOT_IMPLEMENTED, HYBRID_DETAIL, compute_plan, _worked_example(mode="hybrid"))
    _raises(Refusal.NOT_IMPLEMENTED, HYBRID_DETAIL, validate_allocations, _upsert(world_allocations={"a": 0.5}, mode="hybrid"))


@pytest.mark.parametrize(("requested", "compat", "required", "expected"), [
    (None, False, False, 1),
    (1, False, False, 1),
    (2, False, False, 1),       # silent downgrade
    (None, True, False, 1),
    (1, True, False, 1),
    (2, True, False, 2),
    (7, True, False, 2),
    (2, True, True, 2),
    (3, True, True, 2),
    (2, False, True, 1),        # the reference's quirk: required but not supported -> answered as v1
    (None, True, True, 400),
    (1, True, True, 400),
    (None, False, True, 400),
    (1, False, True, 400),
])
def test_negotiation_table(requested: int | None, compat: bool, required: bool, expected: int) -> None:
    if expected == 400:
        _raises(Refusal.INVALID, V2_REQUIRED_DETAIL, negotiate, requested, compat, required)
    else:
        assert negotiate(requested, compat, required) == expected


def test_the_v2_requirement_is_checked_before_planning_but_after_the_hybrid_check() -> None:
    broken = _overlay_request(None)  # planning it would be a 422
    _raises(Refusal.INVALID, V2_REQUIRED_DETAIL, plan_rebalance, broken, alpha_metrics_required=True)
    _raises(Refusal.NOT_IMPLEMENTED, HYBRID_DETAIL, plan_rebalance, _worked_example(mode="hybrid"), alpha_metrics_required=True)


def test_v1_answers_carry_no_v2_fields_and_v2_answers_always_do() -> None:
    v1 = json.loads(msgspec.json.encode(plan_rebalance(_worked_example(schema_version=2))))
    assert v1["schema_version"] == 1
    assert set(v1) == {"schema_version", "per_world", "global_deltas"}
    v2 = json.loads(msgspec.json.encode(plan_rebalance(_worked_example(schema_version=2),
                                                       compat_rebalance_v2=True)))
    assert v2["schema_version"] == 2
    assert v2["rebalance_intent"] == {"meta": {}}
    assert set(v2["alpha_metrics"]["per_world"]) == {"w1", "w2"}
    assert v2["alpha_metrics"]["per_strategy"] == {"s1": {"w1": dict.fromkeys(ALPHA_METRIC_KEYS, 0.0)},
                                                   "s9": {"w2": dict.fromkeys(ALPHA_METRIC_KEYS, 0.0)}}
    echoed = plan_rebalance(_worked_example(schema_version=2, rebalance_intent={"meta": {"reason": "drift"}}),
                            compat_rebalance_v2=True)
    assert echoed.rebalance_intent is not None and echoed.rebalance_intent.meta == {"reason": "drift"}


def test_a_v2_answer_without_positions_still_carries_an_empty_envelope() -> None:
    request = _request(total_equity=1.0, world_alloc_before={}, world_alloc_after={}, positions=[],
                       schema_version=2)
    answer = json.loads(msgspec.json.encode(plan_rebalance(request, compat_rebalance_v2=True)))
    assert answer["alpha_metrics"] == {"per_world": {}, "per_strategy": {}}


# --- alpha metrics -----------------------------------------------------------------------------------------

SERIES = [0.1, -0.1, 0.2, -0.05]


def test_alpha_metrics_of_a_known_series() -> None:
    metrics = performance_metrics(SERIES)
    # mean 0.0375; deviations 0.0625, -0.1375, 0.1625, -0.0875 -> squares sum to 0.056875 (n - 1 = 3)
    assert metrics["alpha_performance.sharpe"] == pytest.approx(
        0.0375 / math.sqrt(0.056875 / 3) * math.sqrt(252))
    # equity 1.1, 0.99, 1.188, 1.1286: the worst fall is 1.1 -> 0.99, i.e. 10% of the peak
    assert metrics["alpha_performance.max_drawdown"] == pytest.approx(0.1)
    assert metrics["alpha_performance.win_ratio"] == 0.5
    assert metrics["alpha_performance.profit_factor"] == pytest.approx(0.3 / 0.15)
    # CAGR over 4 of 252 periods a year: 1.1286 ** 63 - 1
    assert metrics["alpha_performance.car_mdd"] == pytest.approx((1.1286 ** 63 - 1) / 0.1)
    assert metrics["alpha_performance.rar_mdd"] == pytest.approx(0.0375 * 252 / 0.1)
    assert list(metrics) == list(ALPHA_METRIC_KEYS)


@pytest.mark.parametrize(("series", "expected"), [
    ([], dict.fromkeys(ALPHA_METRIC_KEYS, 0.0)),
    ([0.0, 0.0], dict.fromkeys(ALPHA_METRIC_KEYS, 0.0)),             # no variation, no trades, no drawdown
    ([0.01, 0.02], {"alpha_performance.win_ratio": 1.0, "alpha_performance.max_drawdown": 0.0,
                    "alpha_performance.profit_factor": 0.0, "alpha_performance.car_mdd": 0.0,
                    "alpha_performance.rar_mdd": 0.0}),               # no loss, no drawdown: undefined ratios
    ([0.5, -1.5, 0.5], {"alpha_performance.max_drawdown": 1.0}),      # ruin: the curve stays at 0
    ([-0.5], {"alpha_performance.max_drawdown": 0.5, "alpha_performance.sharpe": 0.0,
              "alpha_performance.win_ratio": 0.0, "alpha_performance.profit_factor": 0.0,
              "alpha_performance.car_mdd": pytest.approx((0.5 ** 252 - 1) / 0.5),
              "alpha_performance.rar_mdd": pytest.approx(-0.5 * 252 / 0.5)}),
])
def test_alpha_metric_edge_cases(series: list[float], expected: dict[str, float]) -> None:
    metrics = performance_metrics(series)
    assert {key: metrics[key] for key in expected} == expected


def test_alpha_metrics_envelope_uses_series_when_given_and_defaults_otherwise() -> None:
    per_world, _ = plan_scaling(_worked_example())
    envelope = alpha_metrics(per_world, {"w1": SERIES, "w2": {"risk_hub": "shape"}, "w3": [0.01, -0.02]},
                             {"s1": {"w1": SERIES}, "s7": {"w9": [0.02]}})
    assert envelope.per_world["w1"] == performance_metrics(SERIES)
    assert envelope.per_world["w2"] == dict.fromkeys(ALPHA_METRIC_KEYS, 0.0)   # not a series: no data
    assert envelope.per_world["w3"] == performance_metrics([0.01, -0.02])       # data given, not planned
    assert envelope.per_strategy["s1"]["w1"] == performance_metrics(SERIES)
    assert envelope.per_strategy["s9"]["w2"] == dict.fromkeys(ALPHA_METRIC_KEYS, 0.0)
    assert envelope.per_strategy["s7"]["w9"] == performance_metrics([0.02])


def test_v2_answer_computes_metrics_from_the_request_series() -> None:
    request = _worked_example(schema_version=2, realized_returns_by_world={"w1": SERIES},
                              realized_returns_by_strategy={"s9": {"w2": SERIES}})
    answer = plan_rebalance(request, compat_rebalance_v2=True)
    assert answer.alpha_metrics is not None
    assert answer.alpha_metrics.per_world["w1"]["alpha_performance.win_ratio"] == 0.5
    assert answer.alpha_metrics.per_strategy["s9"]["w2"]["alpha_performance.win_ratio"] == 0.5


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=-1e300, max_value=1e300, allow_nan=False), max_size=40))
def test_alpha_metrics_are_always_finite(series: list[float]) -> None:
    metrics = performance_metrics(series)
    assert list(metrics) == list(ALPHA_METRIC_KEYS)
    assert all(math.isfinite(value) for value in metrics.values())
    assert 0.0 <= metrics["alpha_performance.max_drawdown"] <= 1.0
    assert 0.0 <= metrics["alpha_performance.win_ratio"] <= 1.0


# --- allocations (§1.5, §6.7) ---------------------------------------------------------------------------

def test_allocation_validation() -> None:
    _raises(Refusal.UNPROCESSABLE, EMPTY_ALLOCATIONS_DETAIL, validate_allocations, _upsert(world_allocations={}))
    _raises(Refusal.UNPROCESSABLE, "Allocation ratios must be between 0 and 1: a, c", validate_allocations,
            _upsert(world_allocations={"c": 1.5, "b": 1.0, "a": -0.1, "d": 0.0}))
    validate_allocations(_upsert(world_allocations={"a": 0.0, "b": 1.0}))
    _raises(Refusal.UNPROCESSABLE, OVERLAY_REQUIRED_DETAIL, validate_allocations,
            _upsert(world_allocations={"a": 1.0}, mode="overlay"))
    _raises(Refusal.UNPROCESSABLE, "overlay.instrument_by_world missing world 'a'", validate_allocations,
            _upsert(world_allocations={"a": 1.0}, mode="overlay",
                    overlay={"instrument_by_world": {"b": "ES"}, "price_by_symbol": {"ES": 1.0}}))


def test_allocation_etag_covers_content_only() -> None:
    base = {"world_allocations": {"a": 0.5, "b": 0.25},
            "positions": [_slice("a", "s", "BTC", 1.0, 10.0, None)]}
    etag = allocation_etag(_upsert(**base))
    assert etag.startswith("blake3:") and not etag.startswith("blake3:blake3:")
    assert len(etag) == len("blake3:") + 64
    assert allocation_etag(_upsert(**base, run_id="other", execute=True, etag="blake3:x")) == etag
    reordered = msgspec.json.decode(
        b'{"positions":[{"venue":null,"mark":10,"qty":1,"symbol":"BTC","strategy_id":"s","world_id":"a"}],'
        b'"world_allocations":{"b":0.25,"a":0.5},"total_equity":1000,"run_id":"r2",'
        b'"min_trade_notional":null}',
        type=AllocationUpsertRequest)
    # key order, int vs float spelling and explicit nulls do not count
    assert allocation_etag(reordered) == etag
    assert allocation_etag(_upsert(**base, min_trade_notional=1.0)) != etag
    assert allocation_etag(_upsert(**{**base, "world_allocations": {"a": 0.5, "b": 0.26}})) != etag


def test_replay_rules() -> None:
    request = _upsert(world_allocations={"a": 0.5})
    etag = allocation_etag(request)
    check_replay(request, etag, etag)
    _raises(Refusal.CONFLICT, RUN_CONFLICT_DETAIL, check_replay, request, etag, "blake3:other")
    _raises(Refusal.CONFLICT, ETAG_MISMATCH_DETAIL, check_replay, _upsert(world_allocations={"a": 0.5}, etag="blake3:x"),
            etag, etag)
    check_replay(_upsert(world_allocations={"a": 0.5}, etag=etag), etag, etag)


def test_allocation_plan_uses_stored_state_and_only_the_touched_worlds() -> None:
    request = _upsert(world_allocations={"w2": 0.25, "w1": 0.2}, lot_size_by_symbol={"BTC": 0.001},
                      strategy_alloc_before_total={"w2": {"s9": 0.1}},
                      positions=[{"world_id": "w1", "strategy_id": "s1", "qty": 1.0, **BTC_AT_60000},
                                 {"world_id": "w2", "strategy_id": "s9", "qty": -0.5, **BTC_AT_60000},
                                 {"world_id": "w3", "strategy_id": "s3", "qty": 2.0, **BTC_AT_60000}])
    assert touched_worlds(request) == ["w1", "w2"]
    stored = {"w1": 0.3, "w3": 0.9}
    stored_strategies = {"w1": {"s1": 0.06}, "w2": {"s9": 0.5}, "w3": {"s3": 0.9}}
    normalized, plan = plan_allocation(request, stored, stored_strategies)
    assert normalized.world_alloc_before == {"w1": 0.3, "w2": 0.0}
    assert normalized.world_alloc_after == {"w1": 0.2, "w2": 0.25}
    # stored totals of touched worlds, replaced world by world by the request's
    assert normalized.strategy_alloc_before_total == {"w1": {"s1": 0.06}, "w2": {"s9": 0.1}}
    assert {p.world_id for p in normalized.positions} == {"w1", "w2"}
    assert normalized.schema_version == 1
    assert plan.schema_version == 1 and plan.alpha_metrics is None and plan.rebalance_intent is None
    assert set(plan.per_world) == {"w1", "w2"}
    # w2 had no allocation: scale 1 for the world, s9 (0.1 -> 0.1 cascaded) unchanged
    assert plan.per_world["w2"].scale_world == 1.0
    # w1: s1's stored share 0.06 cascades by 2/3 -> 0.04
    assert plan.per_world["w1"].scale_by_strategy == {"s1": pytest.approx(2 / 3)}
    assert plan.per_world["w1"].deltas == [SymbolDelta(symbol="BTC", delta_qty=-0.333, venue="x")]


def test_allocation_plan_in_overlay_mode_takes_scales_from_the_plan() -> None:
    request = _upsert(world_allocations={"a": 0.1}, mode="overlay",
                      positions=[_slice("a", "s", "AAPL", 100.0, 200.0)],
                      overlay={"instrument_by_world": {"a": "ES"}, "price_by_symbol": {"ES": 5000.0}})
    _, plan = plan_allocation(request, {"a": 0.2}, {})
    assert plan.overlay_deltas == [SymbolDelta(symbol="ES", delta_qty=-2.0, venue=None)]


def test_allocation_response_always_encodes_execution_response() -> None:
    request = _upsert(world_allocations={"a": 0.5})
    _, plan = plan_allocation(request, {}, {})
    response = allocation_response(plan, run_id="r1", etag="blake3:e", executed=False)
    answer = json.loads(msgspec.json.encode(response))
    assert answer == {"schema_version": 1, "per_world": {}, "global_deltas": [], "overlay_deltas": None,
                      "alpha_metrics": None, "rebalance_intent": None, "run_id": "r1",
                      "etag": "blake3:e", "executed": False, "execution_response": None}


def test_allocation_snapshot_staleness() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    fresh = allocation_snapshot("a", 0.5, now=now, updated_at="2025-01-01T11:56:00Z")
    assert (fresh.ttl, fresh.stale) == ("300s", False)
    assert allocation_snapshot("a", 0.5, now=now, updated_at="2025-01-01T11:54:59Z").stale
    assert allocation_snapshot("a", 0.5, now=now).stale
    assert allocation_snapshot("a", 0.5, now=now, updated_at="yesterday").stale
    earlier = now - timedelta(seconds=60)
    assert not allocation_snapshot("a", 0.5, now=earlier, updated_at="2025-01-01T11:56:00Z").stale


# --- message decoding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("document", [
    {"total_equity": float("nan")},
    {"total_equity": float("inf")},
    {"positions": [_slice("a", "s", "BTC", float("nan"), 1.0)]},
    {"lot_size_by_symbol": {"BTC": float("-inf")}},
    {"schema_version": 0},
    {"mode": "HYBRID"},
    {"unexpected": 1},
    {"world_alloc_after": {"not a slug": 0.5}},
    {"realized_returns_by_strategy": {"s": {"a": [float("nan")]}}},
])
def test_requests_with_unusable_fields_do_not_decode(document: dict[str, Any]) -> None:
    base = {"total_equity": 1.0, "world_alloc_before": {}, "world_alloc_after": {}, "positions": []}
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**base, **document}, MultiWorldRebalanceRequest)


def test_json_refuses_out_of_range_numbers() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"total_equity":1e400,"world_alloc_before":{},"world_alloc_after":{},'
                            b'"positions":[]}', type=MultiWorldRebalanceRequest)


def test_response_round_trips() -> None:
    answer = plan_rebalance(_worked_example(schema_version=2), compat_rebalance_v2=True)
    assert msgspec.json.decode(msgspec.json.encode(answer), type=MultiWorldRebalanceResponse) == answer


# --- properties --------------------------------------------------------------------------------------------

WORLDS = ["w1", "w2", "w3"]
LOTS = [0.001, 0.01, 0.07, 0.25, 0.5, 1.0, 5.0]
_qty = st.integers(-10_000, 10_000).map(lambda n: n / 100)
_mark = st.one_of(st.integers(1, 100_000).map(float), st.sampled_from([0.0, -5.0, 0.5, 123.45]))
_position = st.builds(lambda w, s, sym, venue, qty, mark: _slice(w, s, sym, qty, mark, venue),
                      st.sampled_from(WORLDS), st.sampled_from(["s1", "s2", "s3"]),
                      st.sampled_from(["BTC", "ETH"]), st.sampled_from([None, "x"]), _qty, _mark)
_ratio = st.integers(0, 100).map(lambda n: n / 100)
_ratios = st.fixed_dictionaries({w: _ratio for w in WORLDS})
_lots = st.fixed_dictionaries({}, optional={"BTC": st.sampled_from(LOTS), "ETH": st.sampled_from(LOTS)})
_strategy_maps = st.one_of(st.none(), st.dictionaries(st.sampled_from(WORLDS), st.dictionaries(
    st.sampled_from(["s1", "s2", "s3"]), _ratio, max_size=3), max_size=3))


@st.composite
def _requests(draw: st.DrawFn) -> dict[str, Any]:
    return {"total_equity": draw(st.sampled_from([0.0, 1000.0, 1_000_000.0])),
            "world_alloc_before": draw(_ratios), "world_alloc_after": draw(_ratios),
            "positions": draw(st.lists(_position, max_size=12)), "lot_size_by_symbol": draw(_lots),
            "strategy_alloc_before_total": draw(_strategy_maps),
            "strategy_alloc_after_total": draw(_strategy_maps)}


def _all_deltas(per_world: dict[str, WorldPlan], global_deltas: list[SymbolDelta]) -> list[SymbolDelta]:
    return [d for plan in per_world.values() for d in plan.deltas] + global_deltas


def _mean_positive_mark(positions: list[dict[str, Any]], world: str, venue: str | None, symbol: str) -> float:
    marks = [p["mark"] for p in positions
             if (p["world_id"], p["venue"], p["symbol"]) == (world, venue, symbol) and p["mark"] > 0]
    return math.fsum(marks) / len(marks)


@settings(max_examples=300, deadline=None)
@given(st.lists(_position, max_size=12), st.fixed_dictionaries({w: _ratio.filter(bool) for w in WORLDS}),
       _lots, st.booleans())
def test_scaling_by_one_yields_no_deltas(positions: list[dict[str, Any]], ratios: dict[str, float],
                                         lots: dict[str, float], given_strategies: bool) -> None:
    strategies = {w: {"s1": 0.1, "s2": 0.0} for w in WORLDS} if given_strategies else None
    per_world, global_deltas = plan_scaling(_request(
        total_equity=1000.0, world_alloc_before=ratios, world_alloc_after=ratios, positions=positions,
        lot_size_by_symbol=lots, strategy_alloc_before_total=strategies,
        strategy_alloc_after_total=strategies))
    assert _all_deltas(per_world, global_deltas) == []
    assert all(plan.scale_world == 1.0 for plan in per_world.values())


@settings(max_examples=300, deadline=None)
@given(_requests())
def test_every_delta_is_an_exact_multiple_of_its_lot(document: dict[str, Any]) -> None:
    per_world, global_deltas = plan_scaling(_request(**document))
    for delta in _all_deltas(per_world, global_deltas):
        lot = document["lot_size_by_symbol"].get(delta.symbol)
        assert delta.delta_qty != 0 and math.isfinite(delta.delta_qty)
        if lot is not None:
            assert Decimal(repr(delta.delta_qty)) % Decimal(repr(lot)) == 0, (delta, lot)


def _qty(plan: WorldPlan, key: tuple[str | None, str]) -> float | None:
    return next((d.delta_qty for d in plan.deltas if (d.venue, d.symbol) == key), None)


@settings(max_examples=300, deadline=None)
@given(_requests())
def test_rounding_never_increases_size_and_keeps_the_sign(document: dict[str, Any]) -> None:
    rounded, _ = plan_scaling(_request(**document))
    raw, _ = plan_scaling(_request(**{**document, "lot_size_by_symbol": None}))
    for world, plan in rounded.items():
        for delta in plan.deltas:
            exact = _qty(raw[world], (delta.venue, delta.symbol))
            assert exact is not None
            lot = document["lot_size_by_symbol"].get(delta.symbol)
            if lot is None:
                assert delta.delta_qty == exact
                continue
            assert math.copysign(1.0, delta.delta_qty) == math.copysign(1.0, exact)
            # never larger, except by the documented snap tolerance; never smaller by a whole lot
            assert abs(delta.delta_qty) <= abs(exact) + (1e-9 * lot + 1e-12 * abs(exact)) * 1.000001
            assert abs(exact) - abs(delta.delta_qty) < lot * (1 + 1e-9)


@settings(max_examples=300, deadline=None)
@given(_requests())
def test_netted_global_notional_matches_the_worlds_up_to_rounding(document: dict[str, Any]) -> None:
    rounded, global_deltas = plan_scaling(_request(**document))
    raw, _ = plan_scaling(_request(**{**document, "lot_size_by_symbol": None}))
    netted_qty = {(d.venue, d.symbol): d.delta_qty for d in global_deltas}
    for key in {(d.venue, d.symbol) for plan in raw.values() for d in plan.deltas}:
        lot = document["lot_size_by_symbol"].get(key[1], 0.0)
        exact_qty = {w: q for w, plan in raw.items() if (q := _qty(plan, key)) is not None}
        rounded_qty = {w: q for w, plan in rounded.items() if (q := _qty(plan, key)) is not None}
        marks = {w: _mean_positive_mark(document["positions"], w, *key) for w in exact_qty}
        exact = math.fsum(q * marks[w] for w, q in exact_qty.items())
        per_world = math.fsum(q * marks[w] for w, q in rounded_qty.items())
        average = math.fsum(marks[w] for w in rounded_qty) / len(rounded_qty) if rounded_qty else 0.0
        netted = netted_qty.get(key, 0.0) * average
        size = math.fsum(abs(q) * marks[w] for w, q in exact_qty.items())
        noise = 1e-9 * (1.0 + size + sum(marks.values()))
        # the netted order is within one lot of the worlds' rounded orders ...
        assert abs(netted - per_world) <= lot * average * (1 + 1e-9) + noise
        # ... and within one lot per world (plus that one) of the unrounded changes
        assert abs(netted - exact) <= lot * (sum(marks.values()) + average) * (1 + 1e-9) + noise


@settings(max_examples=200, deadline=None)
@given(_requests(), st.randoms(use_true_random=False))
def test_results_do_not_depend_on_position_order(document: dict[str, Any], rng: Any) -> None:
    shuffled = list(document["positions"])
    rng.shuffle(shuffled)
    first = msgspec.json.encode(plan_scaling(_request(**document)))
    second = msgspec.json.encode(plan_scaling(_request(**{**document, "positions": shuffled})))
    assert first == second


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.sampled_from(LOTS + [1e-8, 0.3]))
def test_round_to_lot_property(qty: float, lot: float) -> None:
    rounded = round_to_lot(qty, lot)
    quotient = abs(qty) / lot
    assert Decimal(repr(rounded)) % Decimal(repr(lot)) == 0
    assert abs(rounded) <= abs(qty) + (1e-9 + quotient * 1e-12) * lot * 1.000001
    assert abs(qty) - abs(rounded) < lot * (1 + 1e-9)
    assert rounded == 0 or math.copysign(1.0, rounded) == math.copysign(1.0, qty)
