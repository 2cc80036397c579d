"""The apply body's gating policy (reference §4.6): parsed, validated (422 with the reason) and reduced to
what Switch acts on: edges to disable and enable, the pinned dataset fingerprint, the target domain."""

from __future__ import annotations

from typing import Any

import msgspec
import yaml

from messages.errors import unprocessable

DOMAINS = ("backtest", "dryrun", "live", "shadow")
_STAGE_DOMAIN = {"backtest": "backtest", "validate": "backtest", "compute-only": "backtest", "paper": "dryrun",
                 "dryrun": "dryrun", "live": "live", "shadow": "shadow"}
SHARE_POLICY = "feature-artifacts-only"


class _Snapshot(msgspec.Struct):
    strategy_plane: str
    feature_plane: str


class _EdgeDirective(msgspec.Struct):
    disable_edges_to: str | list[str] | None = None
    enable_edges_to: str | list[str] | None = None


class _Edges(msgspec.Struct):
    pre_promotion: _EdgeDirective
    post_promotion: _EdgeDirective


class _Slo(msgspec.Struct):
    cross_context_cache_hit: int = 0


class _Observability(msgspec.Struct):
    slo: _Slo = msgspec.field(default_factory=_Slo)


class _GatingPolicy(msgspec.Struct):
    """Keys the reference also leaves unchecked (promotion_point, apply, risk_limits, ...) pass through."""

    dataset_fingerprint: str
    share_policy: str
    snapshot: _Snapshot
    edges: _Edges
    observability: _Observability | None = None
    execution_domain: str | None = None


class GatingPlan(msgspec.Struct, frozen=True, kw_only=True):
    document: dict[str, Any]
    dataset_fingerprint: str
    disable_to: list[str]
    enable_to: list[str]
    execution_domain: str | None


def _document(raw: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise unprocessable(f"invalid gating_policy: not YAML/JSON ({exc.__class__.__name__})") from None
    if isinstance(raw, dict) and set(raw) == {"gating_policy"}:
        raw = raw["gating_policy"]
    if not isinstance(raw, dict):
        raise unprocessable("invalid gating_policy: must be a mapping")
    return raw


def _domains(targets: str | list[str] | None) -> list[str]:
    names = [targets] if isinstance(targets, str) else list(targets or [])
    unknown = sorted({n for n in names if n not in DOMAINS})
    if unknown:
        raise unprocessable(f"invalid gating_policy: unknown edge domain {unknown}; expected one of {list(DOMAINS)}")
    return sorted(set(names))


def _checked(policy: _GatingPolicy) -> None:
    if policy.share_policy != SHARE_POLICY:
        raise unprocessable(f"invalid gating_policy: share_policy must be {SHARE_POLICY!r}")
    hits = policy.observability.slo.cross_context_cache_hit if policy.observability else 0
    if hits != 0:
        raise unprocessable("invalid gating_policy: observability.slo.cross_context_cache_hit must be 0")


def _target_domain(policy: _GatingPolicy, enable_to: list[str], stage: str | None) -> str | None:
    """Explicit ``execution_domain`` wins, then the request's stage, then a single promotion target."""
    if policy.execution_domain is not None:
        return _domains(policy.execution_domain)[0]
    if stage is not None and stage.lower() in _STAGE_DOMAIN:
        return _STAGE_DOMAIN[stage.lower()]
    return enable_to[0] if len(enable_to) == 1 else None


def parse_gating(raw: dict[str, Any] | str | None, stage: str | None = None) -> GatingPlan | None:
    if raw is None:
        return None
    document = _document(raw)
    try:
        policy = msgspec.convert(document, _GatingPolicy)
    except msgspec.ValidationError as exc:
        raise unprocessable(f"invalid gating_policy: {exc}") from None
    _checked(policy)
    enable_to = _domains(policy.edges.post_promotion.enable_edges_to)
    return GatingPlan(
        document=document, dataset_fingerprint=policy.dataset_fingerprint,
        disable_to=_domains(policy.edges.pre_promotion.disable_edges_to), enable_to=enable_to,
        execution_domain=_target_domain(policy, enable_to, stage),
    )
