"""Gating-policy rules as tables: one row per rule, each a valid policy with one thing changed, and the verdict
(accepted / rejected with the reason / downgraded with the reason). Pure functions, no threads."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from domain.gating import GatingPlan, parse_gating, pre_promotion_failure
from messages.errors import CommandRejected, Refusal

# The seed's example (§4-C), verbatim.
SEED_YAML = """
gating_policy:
  promotion_point: "2025-10-01T00:00:00Z"
  apply: { mode: two_phase, freeze_timeout_ms: 30000 }
  domains: { from: backtest, to: live }
  clocks:
    backtest: { type: virtual, epoch0: "2020-01-01T00:00:00Z" }
    live:     { type: wall }
  dataset_fingerprint: "ohlcv:ASOF=2025-09-30T23:59:59Z"
  share_policy: "feature-artifacts-only"   # runtime cache sharing forbidden
  snapshot:
    strategy_plane: "cow"
    feature_plane: "readonly"
  risk_limits:
    max_pos_usd_long:  500000
    max_pos_usd_short: 500000
  divergence_guards:
    feature_drift_bp_long: 5
    feature_drift_bp_short: 5
    slippage_bp_long: 10
    slippage_bp_short: 12
  execution_model:
    fill: "bar-mid+slippage"
    fee_bp: 2
  can_short: true
  edges:
    pre_promotion:  { disable_edges_to: "live" }
    post_promotion: { enable_edges_to:  "live" }
  observability:
    slo: { cross_context_cache_hit: 0 }
    audit_topic: "gating.alerts"
"""
SEED: dict[str, Any] = yaml.safe_load(SEED_YAML)["gating_policy"]
DROP = object()


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``base`` with one change per keyword; ``a__b`` is the path ``a.b``; ``DROP`` removes the key."""
    policy = copy.deepcopy(base)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = policy
        for key in parents:
            node = node.setdefault(key, {})
        if value is DROP:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return policy


# A complete policy that promotes nothing: the apply stays in backtest.
COMPUTE = _with(SEED, domains__to="backtest", edges__post_promotion={})


def _verdict(policy: Any, stage: str | None = None) -> tuple[str, str]:
    try:
        plan = parse_gating(policy, stage)
    except CommandRejected as exc:
        assert exc.refusal == Refusal.UNPROCESSABLE
        return "rejected", exc.detail
    assert plan is not None
    return ("downgraded", plan.downgraded) if plan.downgraded else ("accepted", plan.execution_domain or "")


ACCEPTED = [  # (rule, policy, stage, the execution domain it resolves to)
    ("seed example as-is", SEED, None, "live"),
    ("wrapped in a gating_policy key", {"gating_policy": SEED}, None, "live"),
    ("complete, no promotion", COMPUTE, None, "backtest"),
    ("domains are case-insensitive", _with(SEED, domains__to="LIVE", domains__from="BackTest"), None, "live"),
    ("alias prod -> live", _with(SEED, domains__to="prod"), None, "live"),
    ("alias paper/sim -> dryrun", _with(SEED, domains__to="paper", edges__pre_promotion__disable_edges_to="Sim",
                                        edges__post_promotion__enable_edges_to="paper"), None, "dryrun"),
    ("alias validate/compute-only -> backtest", _with(COMPUTE, domains__from="validate",
                                                      domains__to="compute-only"), None, "backtest"),
    ("clock keys take aliases", _with(SEED, clocks={"compute-only": {"type": "virtual", "epoch0": "2020-01-01T00:00:00Z"},
                                                    "prod": {"type": "wall"}}), None, "live"),
    ("a wall clock needs no epoch0", _with(SEED, clocks__backtest={"type": "wall"}), None, "live"),
    ("promotion_point is optional", _with(SEED, promotion_point=DROP), None, "live"),
    ("apply is optional", _with(SEED, apply=DROP), None, "live"),
    ("apply.freeze_timeout_ms is optional", _with(SEED, apply__freeze_timeout_ms=DROP), None, "live"),
    ("clocks are optional", _with(SEED, clocks=DROP), None, "live"),
    ("observability is optional", _with(SEED, observability=DROP), None, "live"),
    ("audit_topic is optional", _with(SEED, observability__audit_topic=DROP), None, "live"),
    ("risk sections are optional", _with(SEED, risk_limits=DROP, divergence_guards=DROP, execution_model=DROP,
                                         can_short=DROP), None, "live"),
    ("a single limit is enough", _with(SEED, risk_limits={"max_pos_usd_long": 0}), None, "live"),
    ("can_short may be false", _with(SEED, can_short=False), None, "live"),
    ("edge targets may be lists", _with(SEED, edges__pre_promotion__disable_edges_to=["live", "shadow"],
                                        edges__post_promotion__enable_edges_to=["live", "shadow"]), None, "live"),
    ("post-promotion may disable too", _with(SEED, edges__post_promotion__disable_edges_to="shadow"), None, "live"),
    ("execution_domain agreeing with domains.to", _with(SEED, execution_domain="live"), None, "live"),
    ("without domains: the single enabled edge", _with(SEED, domains=DROP), None, "live"),
    ("without domains: the request's stage", _with(SEED, domains=DROP, edges__pre_promotion__disable_edges_to=[
        "live", "shadow"]), "shadow", "shadow"),
    ("domains.to wins over the stage", SEED, "paper", "live"),
]

REJECTED = [  # (rule, policy, stage, a substring of the 422 detail)
    # a typo in a safety policy never passes
    ("unknown top-level key", _with(SEED, risk_limit={"max_pos_usd_long": 1}), None, "unknown field `risk_limit`"),
    ("unknown key in risk_limits", _with(SEED, risk_limits__max_pos_usd=1), None,
     "unknown field `max_pos_usd` - at `$.risk_limits`"),
    ("unknown key in divergence_guards", _with(SEED, divergence_guards__slippage_bp=1), None,
     "unknown field `slippage_bp` - at `$.divergence_guards`"),
    ("unknown key in execution_model", _with(SEED, execution_model__fees=1), None,
     "unknown field `fees` - at `$.execution_model`"),
    ("unknown key in snapshot", _with(SEED, snapshot__plane="cow"), None, "unknown field `plane` - at `$.snapshot`"),
    ("unknown key in apply", _with(SEED, apply__timeout=1), None, "unknown field `timeout` - at `$.apply`"),
    ("unknown key in domains", _with(SEED, domains__too="live"), None, "unknown field `too` - at `$.domains`"),
    ("unknown key in a clock", _with(SEED, clocks__live__tz="UTC"), None, "unknown field `tz` - at `$.clocks.live`"),
    ("unknown key in edges", _with(SEED, edges__during={}), None, "unknown field `during` - at `$.edges`"),
    ("unknown key in an edge directive", _with(SEED, edges__pre_promotion__disable="live"), None,
     "unknown field `disable` - at `$.edges.pre_promotion`"),
    ("unknown key in observability", _with(SEED, observability__topic="x"), None,
     "unknown field `topic` - at `$.observability`"),
    ("unknown SLO", _with(SEED, observability__slo__cache_hit=0), None,
     "unknown field `cache_hit` - at `$.observability.slo`"),
    # dataset_fingerprint / share_policy / snapshot
    ("dataset_fingerprint not a string", _with(SEED, dataset_fingerprint=42), None, "at `$.dataset_fingerprint`"),
    ("share_policy other than feature-artifacts-only", _with(SEED, share_policy="all"), None,
     "share_policy must be 'feature-artifacts-only'"),
    ("snapshot.strategy_plane other than cow", _with(SEED, snapshot__strategy_plane="shared"), None,
     "snapshot.strategy_plane must be 'cow'"),
    ("snapshot.feature_plane other than readonly", _with(SEED, snapshot__feature_plane="readwrite"), None,
     "snapshot.feature_plane must be 'readonly'"),
    ("snapshot plane missing", _with(SEED, snapshot__feature_plane=DROP), None,
     "missing required field `feature_plane` - at `$.snapshot`"),
    # observability
    ("cross_context_cache_hit above 0", _with(SEED, observability__slo__cross_context_cache_hit=1), None,
     "observability.slo.cross_context_cache_hit must be 0"),
    ("cross_context_cache_hit negative", _with(SEED, observability__slo__cross_context_cache_hit=-1), None,
     "observability.slo.cross_context_cache_hit must be 0"),
    ("cross_context_cache_hit not an int", _with(SEED, observability__slo__cross_context_cache_hit="0"), None,
     "at `$.observability.slo.cross_context_cache_hit`"),
    ("audit_topic not a string", _with(SEED, observability__audit_topic=5), None, "at `$.observability.audit_topic`"),
    # apply
    ("apply.mode other than two_phase", _with(SEED, apply__mode="one_phase"), None, "apply.mode must be 'two_phase'"),
    ("freeze_timeout_ms zero", _with(SEED, apply__freeze_timeout_ms=0), None,
     "Expected `int` >= 1 - at `$.apply.freeze_timeout_ms`"),
    ("freeze_timeout_ms negative", _with(SEED, apply__freeze_timeout_ms=-5), None, "at `$.apply.freeze_timeout_ms`"),
    ("freeze_timeout_ms a string", _with(SEED, apply__freeze_timeout_ms="30s"), None,
     "at `$.apply.freeze_timeout_ms`"),
    ("freeze_timeout_ms a fraction", _with(SEED, apply__freeze_timeout_ms=1.5), None, "at `$.apply.freeze_timeout_ms`"),
    ("freeze_timeout_ms a bool", _with(SEED, apply__freeze_timeout_ms=True), None, "at `$.apply.freeze_timeout_ms`"),
    # domains
    ("domains.to unknown", _with(SEED, domains__to="mars"), None, "unknown execution domain 'mars' at domains.to"),
    ("domains.from unknown", _with(SEED, domains__from="mars"), None, "unknown execution domain 'mars' at domains.from"),
    ("domains.to not a string", _with(SEED, domains__to=3), None, "at `$.domains.to`"),
    ("execution_domain contradicting domains.to", _with(SEED, execution_domain="shadow"), None,
     "execution_domain 'shadow' contradicts domains.to 'live'"),
    ("execution_domain unknown", _with(SEED, execution_domain="moon"), None, "unknown execution domain 'moon'"),
    # clocks
    ("clock for an unknown domain", _with(SEED, clocks__mars={"type": "wall"}), None,
     "unknown execution domain 'mars' at clocks"),
    ("a virtual clock without epoch0", _with(SEED, clocks__backtest__epoch0=DROP), None,
     "clocks.backtest: a virtual clock needs epoch0"),
    ("epoch0 not ISO-8601", _with(SEED, clocks__backtest__epoch0="yesterday"), None,
     "at `$.clocks.backtest.epoch0`"),
    ("live on a virtual clock", _with(SEED, clocks__live={"type": "virtual", "epoch0": "2020-01-01T00:00:00Z"}), None,
     "clocks.live: live must run on a wall clock"),
    ("a clock type other than virtual|wall", _with(SEED, clocks__live__type="sundial"), None,
     "at `$.clocks.live.type`"),
    ("a domain clocked twice through an alias", _with(SEED, clocks__paper={"type": "wall"},
                                                      clocks__dryrun={"type": "wall"}), None,
     "clocks names 'dryrun' twice"),
    # promotion_point
    ("promotion_point not ISO-8601", _with(SEED, promotion_point="next week"), None, "at `$.promotion_point`"),
    # risk_limits, divergence_guards, execution_model, can_short
    ("max_pos_usd_long negative", _with(SEED, risk_limits__max_pos_usd_long=-1), None,
     "Expected `float` >= 0.0 - at `$.risk_limits.max_pos_usd_long`"),
    ("max_pos_usd_short not a number", _with(SEED, risk_limits__max_pos_usd_short="lots"), None,
     "at `$.risk_limits.max_pos_usd_short`"),
    ("risk limit a bool", _with(SEED, risk_limits__max_pos_usd_long=True), None, "at `$.risk_limits.max_pos_usd_long`"),
    ("feature_drift_bp_long negative", _with(SEED, divergence_guards__feature_drift_bp_long=-1), None,
     "at `$.divergence_guards.feature_drift_bp_long`"),
    ("feature_drift_bp_short negative", _with(SEED, divergence_guards__feature_drift_bp_short=-0.1), None,
     "at `$.divergence_guards.feature_drift_bp_short`"),
    ("slippage_bp_long negative", _with(SEED, divergence_guards__slippage_bp_long=-1), None,
     "at `$.divergence_guards.slippage_bp_long`"),
    ("slippage_bp_short NaN", _with(SEED, divergence_guards__slippage_bp_short=float("nan")), None,
     "at `$.divergence_guards.slippage_bp_short`"),
    ("execution_model.fill empty", _with(SEED, execution_model__fill=""), None, "at `$.execution_model.fill`"),
    ("execution_model.fill missing", _with(SEED, execution_model__fill=DROP), None,
     "missing required field `fill` - at `$.execution_model`"),
    ("execution_model.fee_bp negative", _with(SEED, execution_model__fee_bp=-0.5), None,
     "at `$.execution_model.fee_bp`"),
    ("can_short not a bool", _with(SEED, can_short="yes"), None, "at `$.can_short`"),
    # edges
    ("edges enabled before promotion", _with(SEED, edges__pre_promotion__enable_edges_to="live"), None,
     "edges.pre_promotion.enable_edges_to is not allowed"),
    ("an edge to an unknown domain", _with(SEED, edges__pre_promotion__disable_edges_to="mars"), None,
     "unknown execution domain 'mars' at edges.pre_promotion.disable_edges_to"),
    ("post-promotion enables and disables one domain", _with(SEED, edges__post_promotion__disable_edges_to="live"),
     None, "edges.post_promotion both enables and disables ['live']"),
    ("promotion target not disabled pre-promotion", _with(SEED, edges__pre_promotion__disable_edges_to="shadow"),
     None, "edges.pre_promotion.disable_edges_to must include ['live']"),
    ("an enabled edge not disabled pre-promotion", _with(SEED, edges__post_promotion__enable_edges_to=["live", "shadow"]),
     None, "edges.pre_promotion.disable_edges_to must include ['shadow']"),
    # missing essentials on a promotion: rejected outright
    ("promotion without dataset_fingerprint", _with(SEED, dataset_fingerprint=DROP), None,
     "promoting to 'live' requires dataset_fingerprint"),
    ("promotion with a blank dataset_fingerprint", _with(SEED, dataset_fingerprint="  "), None,
     "promoting to 'live' requires dataset_fingerprint"),
    ("promotion without share_policy", _with(SEED, share_policy=DROP), None, "promoting to 'live' requires share_policy"),
    ("promotion without snapshot", _with(SEED, snapshot=DROP), None, "promoting to 'live' requires snapshot"),
    ("promotion without edges", _with(SEED, edges=DROP), None, "promoting to 'live' requires edges"),
    ("promotion without post-promotion edges", _with(SEED, edges__post_promotion=DROP), None,
     "promoting to 'live' requires edges"),
    ("promotion without pre-promotion edges", _with(SEED, edges__pre_promotion=DROP), None,
     "promoting to 'live' requires edges"),
    ("promotion by the request's stage, incomplete", _with(COMPUTE, domains=DROP, dataset_fingerprint=DROP), "live",
     "promoting to 'live' requires dataset_fingerprint"),
    ("promotion by enabled edges alone, incomplete", _with(SEED, domains=DROP, share_policy=DROP,
                                                           edges__pre_promotion__disable_edges_to=["live", "shadow"],
                                                           edges__post_promotion__enable_edges_to=["live", "shadow"]),
     None, "promoting to ['live', 'shadow'] requires share_policy"),
    ("missing essentials never excuse a wrong value", _with(COMPUTE, dataset_fingerprint=DROP, share_policy="all"),
     None, "share_policy must be 'feature-artifacts-only'"),
    # the document itself
    ("not a mapping", [1, 2], None, "must be a mapping"),
    ("not YAML", "a: [", None, "not YAML/JSON"),
]

DOWNGRADED = [  # (rule, policy, stage, a substring of the reason)
    ("compute-only without dataset_fingerprint", _with(COMPUTE, dataset_fingerprint=DROP), None,
     "compute-only: gating_policy lacks dataset_fingerprint"),
    ("compute-only with a blank dataset_fingerprint", _with(COMPUTE, dataset_fingerprint=""), None,
     "lacks dataset_fingerprint"),
    ("compute-only without share_policy", _with(COMPUTE, share_policy=DROP), None, "lacks share_policy"),
    ("compute-only without snapshot", _with(COMPUTE, snapshot=DROP), None, "lacks snapshot"),
    ("compute-only without edges", _with(COMPUTE, edges=DROP), None, "lacks edges"),
    ("compute-only without post-promotion edges", _with(COMPUTE, edges__post_promotion=DROP), None, "lacks edges"),
    ("no promotion target at all", _with(SEED, domains=DROP, edges=DROP), None, "lacks edges"),
    ("an empty policy", {}, None, "lacks dataset_fingerprint, share_policy, snapshot, edges"),
    ("a backtest stage", _with(COMPUTE, domains=DROP, edges=DROP), "backtest", "lacks edges"),
]


def _ids(rows: list[tuple[Any, ...]]) -> list[str]:
    return [row[0] for row in rows]


@pytest.mark.parametrize(("rule", "policy", "stage", "domain"), ACCEPTED, ids=_ids(ACCEPTED))
def test_accepted(rule: str, policy: Any, stage: str | None, domain: str) -> None:
    assert _verdict(policy, stage) == ("accepted", domain)


@pytest.mark.parametrize(("rule", "policy", "stage", "reason"), REJECTED, ids=_ids(REJECTED))
def test_rejected(rule: str, policy: Any, stage: str | None, reason: str) -> None:
    verdict, detail = _verdict(policy, stage)
    assert verdict == "rejected" and detail.startswith("invalid gating_policy: ") and reason in detail, detail


@pytest.mark.parametrize(("rule", "policy", "stage", "reason"), DOWNGRADED, ids=_ids(DOWNGRADED))
def test_downgraded(rule: str, policy: Any, stage: str | None, reason: str) -> None:
    verdict, detail = _verdict(policy, stage)
    assert verdict == "downgraded" and reason in detail, detail
    plan = parse_gating(policy, stage)
    assert plan is not None and plan.execution_domain == "backtest" and plan.enable_to == []
    assert {"dryrun", "live", "shadow"} <= set(plan.disable_to)  # no cross-domain edge stays open


def test_the_seed_example_as_yaml_text_and_as_a_mapping_gives_one_plan() -> None:
    from_text, from_dict = parse_gating(SEED_YAML), parse_gating(SEED)
    assert from_text == from_dict
    assert isinstance(from_text, GatingPlan)
    assert (from_text.execution_domain, from_text.disable_to, from_text.enable_to) == ("live", ["live"], ["live"])
    assert from_text.dataset_fingerprint == "ohlcv:ASOF=2025-09-30T23:59:59Z"
    assert from_text.freeze_timeout_ms == 30000 and from_text.can_short is True
    assert from_text.risk_limits is not None and from_text.risk_limits.max_pos_usd_short == 500000
    assert from_text.downgraded is None


def test_unquoted_yaml_timestamps_are_accepted() -> None:
    text = SEED_YAML.replace('"2025-10-01T00:00:00Z"', "2025-10-01T00:00:00Z")
    assert parse_gating(text) is not None


def test_aliases_normalise_everywhere() -> None:
    plan = parse_gating(_with(SEED, domains__to="Paper", domains__from="VALIDATE",
                              edges__pre_promotion__disable_edges_to=["sim", "PROD"],
                              edges__post_promotion__enable_edges_to="dryrun"))
    assert plan is not None
    assert (plan.execution_domain, plan.disable_to, plan.enable_to) == ("dryrun", ["dryrun", "live"], ["dryrun"])


def test_no_policy_means_no_plan() -> None:
    assert parse_gating(None) is None


# --- pre-promotion evaluation -------------------------------------------------------------------------------

PLAN = parse_gating(SEED)
NO_SHORT = parse_gating(_with(SEED, can_short=False))
DOWNGRADE = parse_gating(_with(COMPUTE, dataset_fingerprint=DROP))

EVIDENCE = [  # (rule, plan, metrics of s1, strategies with a short entry, None or a substring of the failure)
    ("no evidence, nothing to fail", PLAN, {}, [], None),
    ("position at the long limit", PLAN, {"max_position_usd_long": 500000}, [], None),
    ("position above the long limit", PLAN, {"max_position_usd_long": 600000}, [],
     "s1: max_position_usd_long 600000 exceeds risk_limits.max_pos_usd_long 500000"),
    ("position above the short limit", PLAN, {"max_position_usd_short": 500001}, [],
     "s1: max_position_usd_short 500001 exceeds risk_limits.max_pos_usd_short 500000"),
    ("long feature drift above its guard", PLAN, {"feature_drift_bp_long": 6}, [],
     "s1: feature_drift_bp_long 6 exceeds divergence_guards.feature_drift_bp_long 5"),
    ("short feature drift above its guard", PLAN, {"feature_drift_bp_short": 5.5}, [],
     "feature_drift_bp_short 5.5 exceeds divergence_guards.feature_drift_bp_short 5"),
    ("side-less drift held against both guards", PLAN, {"feature_drift_bp": 6}, [],
     "feature_drift_bp 6 exceeds divergence_guards.feature_drift_bp_long 5; s1: feature_drift_bp 6 exceeds "
     "divergence_guards.feature_drift_bp_short 5"),
    ("long slippage above its guard", PLAN, {"slippage_bp_long": 11}, [],
     "slippage_bp_long 11 exceeds divergence_guards.slippage_bp_long 10"),
    ("short slippage above its guard", PLAN, {"slippage_bp_short": 13}, [],
     "slippage_bp_short 13 exceeds divergence_guards.slippage_bp_short 12"),
    ("side-less slippage between the guards", PLAN, {"slippage_bp": 11}, [],
     "slippage_bp 11 exceeds divergence_guards.slippage_bp_long 10"),
    ("evidence within every guard", PLAN, {"slippage_bp": 10, "feature_drift_bp": 5, "fee_bp": 2,
                                           "fill": "bar-mid+slippage"}, [], None),
    ("fees below the execution model", PLAN, {"fee_bp": 1}, [], "s1: fee_bp 1 is below execution_model.fee_bp 2"),
    ("another fill model", PLAN, {"fill": "close"}, [], "fill 'close' is not execution_model.fill 'bar-mid+slippage'"),
    ("a short entry with can_short false", NO_SHORT, {}, ["s1"], "s1: trades short but can_short is false"),
    ("a short position with can_short false", NO_SHORT, {"max_position_usd_short": 100}, [],
     "trades short but can_short is false"),
    ("no short exposure with can_short false", NO_SHORT, {"max_position_usd_short": 0}, [], None),
    ("a short entry with can_short true", PLAN, {}, ["s1"], None),
    ("a compute-only apply places no orders", DOWNGRADE, {"max_position_usd_long": 10**9}, [], None),
]


@pytest.mark.parametrize(("rule", "plan", "evidence", "shorts", "failure"), EVIDENCE, ids=_ids(EVIDENCE))
def test_pre_promotion_evidence(rule: str, plan: GatingPlan, evidence: dict[str, Any], shorts: list[str],
                                failure: str | None) -> None:
    found = pre_promotion_failure(plan, ["s1"], {"s1": evidence}, shorts)
    if failure is None:
        assert found is None
    else:
        assert found is not None and failure in found, found


def test_only_targeted_strategies_are_judged() -> None:
    assert PLAN is not None
    assert pre_promotion_failure(PLAN, ["s1"], {"s9": {"max_position_usd_long": 10**9}}, ["s9"]) is None


def test_evidence_that_is_not_a_number_is_refused_before_anything_runs() -> None:
    assert PLAN is not None
    with pytest.raises(CommandRejected) as refused:
        pre_promotion_failure(PLAN, ["s1"], {"s1": {"slippage_bp_long": "low"}})
    assert refused.value.refusal == Refusal.UNPROCESSABLE and "s1.slippage_bp_long must be a number" in refused.value.detail
