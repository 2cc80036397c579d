"""The apply body's gating policy (seed §4-C; reference §4.6): parsed, validated section by section and
reduced to the ``GatingPlan`` Switch acts on.

Verdicts, in order:
1. Malformed (not a mapping, unknown key anywhere, wrong type, negative number, bad timestamp) or a wrong
   value (share_policy, snapshot planes, cache-hit SLO, apply mode, clocks, domains, edge rules): **422**
   with the reason, before anything is written. A typo in a safety policy must never pass silently.
2. Missing ``dataset_fingerprint``/``share_policy``/``snapshot``/``edges``: **422** when the policy promotes
   (its target domain is not ``backtest``, or it enables any edge post-promotion); otherwise the apply is
   **downgraded** to compute-only: domain ``backtest``, entries reopen ``effective_mode: compute-only``,
   every cross-domain edge from backtest is disabled and none enabled.
3. Evidence in the request's ``metrics`` that breaks ``risk_limits``/``divergence_guards``/
   ``execution_model``/``can_short`` (``pre_promotion_failure``): the run freezes, fails at Switch and rolls
   back, leaving the world frozen (seed: "Failures reject the Apply and leave the world frozen").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import yaml

from domain.domains import DOMAINS, resolve_domain
from messages.errors import unprocessable

SHARE_POLICY = "feature-artifacts-only"
COMPUTE_ONLY = "compute-only"
REQUIRED = ("dataset_fingerprint", "share_policy", "snapshot", "edges")
_CROSS_DOMAIN = ("dryrun", "live", "shadow")

NonNegative = Annotated[float, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Every section refuses unknown keys: ``max_pos_usd_lnog`` must not mean "no limit"."""


class _Snapshot(_Section):
    strategy_plane: str
    feature_plane: str


class _EdgeDirective(_Section):
    disable_edges_to: str | list[str] | None = None
    enable_edges_to: str | list[str] | None = None


class _Edges(_Section):
    pre_promotion: _EdgeDirective | None = None
    post_promotion: _EdgeDirective | None = None


class _Slo(_Section):
    cross_context_cache_hit: int = 0


class _Observability(_Section):
    slo: _Slo = msgspec.field(default_factory=_Slo)
    audit_topic: str | None = None


class _ApplyMode(_Section):
    mode: str = "two_phase"
    freeze_timeout_ms: PositiveInt | None = None


class _Domains(_Section):
    from_: str | None = msgspec.field(default=None, name="from")
    to: str | None = None


class _Clock(_Section):
    type: Literal["virtual", "wall"]
    epoch0: datetime | None = None


class RiskLimits(_Section):
    max_pos_usd_long: NonNegative | None = None
    max_pos_usd_short: NonNegative | None = None


class DivergenceGuards(_Section):
    feature_drift_bp_long: NonNegative | None = None
    feature_drift_bp_short: NonNegative | None = None
    slippage_bp_long: NonNegative | None = None
    slippage_bp_short: NonNegative | None = None


class ExecutionModel(_Section):
    fill: Annotated[str, msgspec.Meta(min_length=1)]
    fee_bp: NonNegative


class _GatingPolicy(_Section):
    """The seed's schema; every key optional here so that missing ones can downgrade instead of failing.
    ``execution_domain`` is ours (an explicit target domain, older than ``domains.to``)."""

    dataset_fingerprint: str | None = None
    share_policy: str | None = None
    snapshot: _Snapshot | None = None
    edges: _Edges | None = None
    observability: _Observability | None = None
    promotion_point: datetime | None = None
    apply: _ApplyMode | None = None
    domains: _Domains | None = None
    clocks: dict[str, Any] | None = None  # each clock converted on its own, so errors name its domain
    risk_limits: RiskLimits | None = None
    divergence_guards: DivergenceGuards | None = None
    execution_model: ExecutionModel | None = None
    can_short: bool | None = None
    execution_domain: str | None = None


class GatingPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What Switch acts on. ``downgraded`` is the reason when the apply was reduced to compute-only."""

    document: dict[str, Any]
    dataset_fingerprint: str | None
    disable_to: list[str]
    enable_to: list[str]
    execution_domain: str | None
    downgraded: str | None = None
    freeze_timeout_ms: int | None = None
    risk_limits: RiskLimits | None = None
    divergence_guards: DivergenceGuards | None = None
    execution_model: ExecutionModel | None = None
    can_short: bool | None = None


def _invalid(reason: str) -> Exception:
    return unprocessable(f"invalid gating_policy: {reason}")


# --- parsing -----------------------------------------------------------------------------------------


def _document(raw: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise _invalid(f"not YAML/JSON ({exc.__class__.__name__})") from None
    if isinstance(raw, dict) and set(raw) == {"gating_policy"}:
        raw = raw["gating_policy"]
    if not isinstance(raw, dict):
        raise _invalid("must be a mapping")
    return raw


def _converted(document: dict[str, Any]) -> _GatingPolicy:
    try:
        return msgspec.convert(document, _GatingPolicy)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from None


def _domain(name: str, where: str) -> str:
    domain = resolve_domain(name) if isinstance(name, str) else None
    if domain is None:
        raise _invalid(f"unknown execution domain {name!r} at {where}; expected one of {', '.join(DOMAINS)}")
    return domain


def _domains(targets: str | list[str] | None, where: str) -> list[str]:
    names = [targets] if isinstance(targets, str) else list(targets or [])
    return sorted({_domain(n, where) for n in names})


# --- value rules ---------------------------------------------------------------------------------------


def _check_planes(policy: _GatingPolicy) -> None:
    """Feature Artifact Plane rules: strategies copy-on-write, features shared only as read-only replicas."""
    if policy.share_policy is not None and policy.share_policy != SHARE_POLICY:
        raise _invalid(f"share_policy must be {SHARE_POLICY!r} (runtime cache sharing is forbidden)")
    if policy.snapshot is not None and policy.snapshot.strategy_plane != "cow":
        raise _invalid("snapshot.strategy_plane must be 'cow'")
    if policy.snapshot is not None and policy.snapshot.feature_plane != "readonly":
        raise _invalid("snapshot.feature_plane must be 'readonly'")


def _check_operation(policy: _GatingPolicy) -> None:
    hits = policy.observability.slo.cross_context_cache_hit if policy.observability else 0
    if hits != 0:
        raise _invalid("observability.slo.cross_context_cache_hit must be 0")
    if policy.apply is not None and policy.apply.mode != "two_phase":
        raise _invalid("apply.mode must be 'two_phase'")


def _clock(name: str, raw: Any) -> _Clock:
    try:
        return msgspec.convert(raw, _Clock)
    except msgspec.ValidationError as exc:
        where = f"`$.clocks.{name}"
        text = str(exc)
        raise _invalid(text.replace("`$", where, 1) if " - at `$" in text else f"{text} - at {where}`") from None


def _check_clocks(clocks: dict[str, Any] | None) -> None:
    seen: set[str] = set()
    for name, raw in (clocks or {}).items():
        domain, clock = _domain(name, "clocks"), _clock(name, raw)
        if domain in seen:
            raise _invalid(f"clocks names {domain!r} twice")
        seen.add(domain)
        if clock.type == "virtual" and clock.epoch0 is None:
            raise _invalid(f"clocks.{name}: a virtual clock needs epoch0")
        if domain == "live" and clock.type != "wall":
            raise _invalid(f"clocks.{name}: live must run on a wall clock")


# --- domains and edges ---------------------------------------------------------------------------------


def _edge_lists(edges: _Edges | None) -> tuple[list[str], list[str]]:
    """(disable, enable): pre-promotion may only disable; post-promotion may enable and disable."""
    pre = edges.pre_promotion if edges and edges.pre_promotion else _EdgeDirective()
    post = edges.post_promotion if edges and edges.post_promotion else _EdgeDirective()
    if pre.enable_edges_to:
        raise _invalid("edges.pre_promotion.enable_edges_to is not allowed: edges open only after promotion")
    enable = _domains(post.enable_edges_to, "edges.post_promotion.enable_edges_to")
    late_disable = _domains(post.disable_edges_to, "edges.post_promotion.disable_edges_to")
    both = sorted(set(enable) & set(late_disable))
    if both:
        raise _invalid(f"edges.post_promotion both enables and disables {both}")
    disable = _domains(pre.disable_edges_to, "edges.pre_promotion.disable_edges_to")
    return sorted(set(disable) | set(late_disable)), enable


def _explicit_domain(policy: _GatingPolicy) -> str | None:
    to = _domain(policy.domains.to, "domains.to") if policy.domains and policy.domains.to is not None else None
    if policy.domains and policy.domains.from_ is not None:
        _domain(policy.domains.from_, "domains.from")
    named = _domain(policy.execution_domain, "execution_domain") if policy.execution_domain is not None else None
    if to is not None and named is not None and to != named:
        raise _invalid(f"execution_domain {named!r} contradicts domains.to {to!r}")
    return to or named


def _target_domain(policy: _GatingPolicy, enable_to: list[str], stage: str | None) -> str | None:
    """``domains.to``/``execution_domain`` win, then the request's stage, then a single promotion target."""
    explicit = _explicit_domain(policy)
    if explicit is not None:
        return explicit
    if stage is not None and stage.strip() and resolve_domain(stage) is not None:
        return resolve_domain(stage)
    return enable_to[0] if len(enable_to) == 1 else None


def _missing(policy: _GatingPolicy) -> list[str]:
    present = {"dataset_fingerprint": bool((policy.dataset_fingerprint or "").strip()),
               "share_policy": policy.share_policy is not None, "snapshot": policy.snapshot is not None,
               "edges": bool(policy.edges and policy.edges.pre_promotion and policy.edges.post_promotion)}
    return [name for name in REQUIRED if not present[name]]


def _check_promotion(target: str | None, disable: list[str], enable: list[str], missing: list[str]) -> None:
    """A promotion must be complete, and keep its target's edges disabled until it has happened."""
    label = target if target not in (None, "backtest") else enable
    if missing:
        raise _invalid(f"promoting to {label!r} requires {', '.join(missing)}")
    promoted = {target} if target not in (None, "backtest") else set()
    needed = sorted((promoted | set(enable)) - set(disable))
    if needed:
        raise _invalid(f"edges.pre_promotion.disable_edges_to must include {needed}: a promotion keeps its "
                       "target's edges disabled until it completes")


# --- the plan ------------------------------------------------------------------------------------------


def parse_gating(raw: dict[str, Any] | str | None, stage: str | None = None) -> GatingPlan | None:
    if raw is None:
        return None
    document = _document(raw)
    policy = _converted(document)
    _check_planes(policy)
    _check_operation(policy)
    _check_clocks(policy.clocks)
    disable, enable = _edge_lists(policy.edges)
    target, missing = _target_domain(policy, enable, stage), _missing(policy)
    promotes = target not in (None, "backtest") or bool(enable)
    if promotes:
        _check_promotion(target, disable, enable, missing)
    elif missing:
        return _downgraded(document, policy, disable, missing)
    return _plan(document, policy, disable=disable, enable_to=enable, execution_domain=target)


def _downgraded(document: dict[str, Any], policy: _GatingPolicy, disable: list[str],
                missing: list[str]) -> GatingPlan:
    """Compute-only: no orders anywhere, so every cross-domain edge from backtest stays disabled."""
    return _plan(document, policy, disable=sorted(set(disable) | set(_CROSS_DOMAIN)), enable_to=[],
                 execution_domain="backtest", downgraded=f"{COMPUTE_ONLY}: gating_policy lacks {', '.join(missing)}")


def _plan(document: dict[str, Any], policy: _GatingPolicy, *, disable: list[str], **fields: Any) -> GatingPlan:
    fingerprint = (policy.dataset_fingerprint or "").strip() or None
    return GatingPlan(
        document=document, dataset_fingerprint=fingerprint, disable_to=disable,
        freeze_timeout_ms=policy.apply.freeze_timeout_ms if policy.apply else None,
        risk_limits=policy.risk_limits, divergence_guards=policy.divergence_guards,
        execution_model=policy.execution_model, can_short=policy.can_short, **fields,
    )


# --- pre-promotion evaluation against the request's evidence ------------------------------------------

# (evidence key in ``metrics[strategy]``, policy section, limit): evidence above the limit fails. A side-less
# drift or slippage figure is held against both sides' guards.
_CEILINGS = (
    ("max_position_usd_long", "risk_limits", "max_pos_usd_long"),
    ("max_position_usd_short", "risk_limits", "max_pos_usd_short"),
    ("feature_drift_bp_long", "divergence_guards", "feature_drift_bp_long"),
    ("feature_drift_bp_short", "divergence_guards", "feature_drift_bp_short"),
    ("feature_drift_bp", "divergence_guards", "feature_drift_bp_long"),
    ("feature_drift_bp", "divergence_guards", "feature_drift_bp_short"),
    ("slippage_bp_long", "divergence_guards", "slippage_bp_long"),
    ("slippage_bp_short", "divergence_guards", "slippage_bp_short"),
    ("slippage_bp", "divergence_guards", "slippage_bp_long"),
    ("slippage_bp", "divergence_guards", "slippage_bp_short"),
)


def _number(sid: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise unprocessable(f"invalid metrics: {sid}.{key} must be a number, got {value!r}")
    return float(value)


def _ceiling_failures(plan: GatingPlan, sid: str, evidence: Mapping[str, Any]) -> list[str]:
    failures = []
    for key, section, name in _CEILINGS:
        limit = getattr(getattr(plan, section), name, None) if getattr(plan, section) else None
        if limit is None or evidence.get(key) is None:
            continue
        value = _number(sid, key, evidence[key])
        if value > limit:
            failures.append(f"{sid}: {key} {value:g} exceeds {section}.{name} {limit:g}")
    return failures


def _model_failures(model: ExecutionModel | None, sid: str, evidence: Mapping[str, Any]) -> list[str]:
    """Evidence produced under a cheaper or different execution model than the policy's is not evidence."""
    if model is None:
        return []
    failures = []
    if evidence.get("fee_bp") is not None and _number(sid, "fee_bp", evidence["fee_bp"]) < model.fee_bp:
        failures.append(f"{sid}: fee_bp {evidence['fee_bp']:g} is below execution_model.fee_bp {model.fee_bp:g}")
    if evidence.get("fill") is not None and evidence["fill"] != model.fill:
        failures.append(f"{sid}: fill {evidence['fill']!r} is not execution_model.fill {model.fill!r}")
    return failures


def _short_failures(plan: GatingPlan, sid: str, evidence: Mapping[str, Any], has_short_entry: bool) -> list[str]:
    if plan.can_short is not False:
        return []
    short_usd = evidence.get("max_position_usd_short")
    if has_short_entry or (short_usd is not None and _number(sid, "max_position_usd_short", short_usd) > 0):
        return [f"{sid}: trades short but can_short is false"]
    return []


def pre_promotion_failure(plan: GatingPlan, target: Iterable[str], metrics: Mapping[str, Mapping[str, Any]],
                          short_entries: Iterable[str] = ()) -> str | None:
    """Why the targeted strategies' evidence fails the policy, or ``None``. Evidence is
    ``metrics[strategy]``; a figure that is absent is not checked (the Gateway enforces limits at runtime).
    ``short_entries``: strategies with a ``short`` activation entry, which Unfreeze would reopen.
    A compute-only (downgraded) apply places no orders, so nothing is checked."""
    if plan.downgraded is not None:
        return None
    shorts, failures = set(short_entries), []
    for sid in sorted(set(target)):
        evidence = metrics.get(sid) or {}
        failures += _ceiling_failures(plan, sid, evidence)
        failures += _model_failures(plan.execution_model, sid, evidence)
        failures += _short_failures(plan, sid, evidence, sid in shorts)
    return "; ".join(failures) or None
