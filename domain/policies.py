"""Policy registry rules: parsing, presets, normalisation, checksums, versions and the default."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import msgspec
import yaml

from domain.decision_rules import parse_rules
from domain.governance import parse_governance
from domain.effects import AuditRecord, OutboxEvent, PolicyVersion, SavePolicy, SaveWorld
from domain.events import cloudevent
from domain.hashing import blake3_hex, canonical_json
from domain.state import Outcome, WorldState, require_world
from domain.timefmt import iso_z
from domain.wvg import invalidate_all
from messages.commands import AddPolicy, SetDefaultPolicy
from messages.errors import not_found, unprocessable
from messages.policies import Policy, PolicyInfo, PolicyRequest, PolicyVersionRef, Selection

POLICY_TOPIC = "policy"


def _thresholds(**bounds: tuple[float | None, float | None]) -> dict[str, dict[str, Any]]:
    return {metric: {"metric": metric, "min": lo, "max": hi} for metric, (lo, hi) in bounds.items()}


PRESETS: dict[str, dict[str, Any]] = {
    "sandbox": {"top_k": {"metric": "sharpe", "k": 10}},
    "conservative": {
        "thresholds": _thresholds(sharpe=(1.0, None), max_drawdown=(None, 0.15), win_rate=(0.55, None),
                                  profit_factor=(1.5, None)),
        "top_k": {"metric": "sharpe", "k": 3}, "correlation": {"max": 0.5},
        "hysteresis": {"metric": "sharpe", "enter": 1.0, "exit": 0.8},
    },
    "moderate": {
        "thresholds": _thresholds(sharpe=(0.7, None), max_drawdown=(None, 0.25), win_rate=(0.50, None),
                                  profit_factor=(1.2, None)),
        "top_k": {"metric": "sharpe", "k": 5}, "correlation": {"max": 0.7},
        "hysteresis": {"metric": "sharpe", "enter": 0.7, "exit": 0.5},
    },
    "aggressive": {
        "thresholds": _thresholds(sharpe=(0.5, None), max_drawdown=(None, 0.40), profit_factor=(1.0, None)),
        "top_k": {"metric": "sharpe", "k": 8}, "correlation": {"max": 0.85},
        "hysteresis": {"metric": "sharpe", "enter": 0.5, "exit": 0.3},
    },
}


def _apply_overrides(document: dict[str, Any], overrides: dict[str, float]) -> dict[str, Any]:
    """``{"metric.min": v}`` / ``{"metric.max": v}``; unlike the reference, an unknown key is an error."""
    thresholds = document.setdefault("thresholds", {})
    for key, value in overrides.items():
        metric, _, bound = key.rpartition(".")
        if bound not in ("min", "max") or metric not in thresholds:
            raise unprocessable(f"preset override {key!r} does not name an existing threshold (metric.min|max)")
        thresholds[metric][bound] = value
    return document


def _preset_document(request: PolicyRequest) -> dict[str, Any]:
    name = (request.preset or "").lower()
    if name not in PRESETS:
        raise unprocessable(f"unknown preset {request.preset!r}; expected one of {sorted(PRESETS)}")
    document = json.loads(json.dumps(PRESETS[name]))
    return _apply_overrides(document, request.preset_overrides or {})


def _explicit_document(raw: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise unprocessable(f"policy text is not valid YAML/JSON: {exc.__class__.__name__}") from None
    if not isinstance(parsed, dict):
        raise unprocessable("policy text must be a mapping")
    return parsed


def normalise(request: PolicyRequest) -> Policy:
    """An explicit policy wins over a preset (reference rule); one of the two is required."""
    if request.policy is None and request.preset is None:
        raise unprocessable("policy is required")
    document = _explicit_document(request.policy) if request.policy is not None else _preset_document(request)
    try:
        policy = msgspec.convert(document, Policy)
    except msgspec.ValidationError as exc:
        raise unprocessable(f"invalid policy: {exc}") from None
    if policy.decision is not None:
        parse_rules(policy.decision)  # refused at upload, never at evaluation
    parse_governance(policy.governance)  # likewise: a typo in a promotion control is a 422 now
    return _merge_selection(policy)


def _merge_selection(policy: Policy) -> Policy:
    """Top-level thresholds win over ``selection``'s; for the other rules the selection block wins."""
    sel = policy.selection or Selection()
    merged = Selection(
        thresholds={**sel.thresholds, **policy.thresholds},
        top_k=sel.top_k or policy.top_k,
        correlation=sel.correlation or policy.correlation,
        hysteresis=sel.hysteresis or policy.hysteresis,
    )
    return msgspec.structs.replace(
        policy, thresholds=merged.thresholds, top_k=merged.top_k, correlation=merged.correlation,
        hysteresis=merged.hysteresis, selection=merged,
    )


def human_summary(document: dict[str, Any] | None) -> str:
    if not document:
        return "no policy"
    parts = []
    for t in document.get("thresholds", {}).values():
        if t.get("min") is not None:
            parts.append(f"{t['metric']} >= {t['min']}")
        if t.get("max") is not None:
            parts.append(f"{t['metric']} <= {t['max']}")
    lines = [f"thresholds: {'; '.join(parts)}"] if parts else []
    if document.get("top_k"):
        lines.append(f"top_k: {document['top_k']['metric']} k={document['top_k']['k']}")
    if document.get("correlation"):
        lines.append(f"correlation: max {document['correlation']['max']}")
    if document.get("hysteresis"):
        h = document["hysteresis"]
        lines.append(f"hysteresis: {h['metric']} enter {h['enter']} exit {h['exit']}")
    return " | ".join(lines) or "empty policy"


def _policy_event(world_id: str, pv: PolicyVersion, cmd: AddPolicy | SetDefaultPolicy, now: datetime) -> OutboxEvent:
    data = {"world_id": world_id, "policy_version": pv.version, "checksum": pv.checksum, "status": pv.status,
            "ts": iso_z(now), "version": 1}
    key = f"policy_updated:{world_id}:{pv.version}:{pv.checksum}:{pv.status}"
    return cloudevent(POLICY_TOPIC, "policy_updated", world_id, data, key,
                      cmd.correlation_id or f"policy:{world_id}:{pv.version}", now)


def add_policy(state: WorldState, cmd: AddPolicy, now: datetime) -> Outcome:
    world = require_world(state)
    document = msgspec.to_builtins(normalise(cmd.body))
    version = max(state.policies, default=0) + 1
    is_first = not state.policies
    body = cmd.body
    pv = PolicyVersion(
        version=version, document=document, text=canonical_json(document).decode(),
        checksum=blake3_hex(canonical_json(document)), status="ACTIVE" if is_first else "DRAFT",
        created_by=cmd.actor, created_at=iso_z(now), preset=body.preset.lower() if body.preset else None,
        preset_mode=body.preset_mode, preset_version=body.preset_version, preset_overrides=body.preset_overrides,
    )
    policies = {**state.policies, version: pv}
    effects: list[Any] = [SavePolicy(policy=pv)]
    new_world = world
    if is_first:  # the first version becomes the default, as in the reference
        new_world = msgspec.structs.replace(world, default_policy_version=version, updated_at=iso_z(now))
        effects.append(SaveWorld(record=new_world))
    effects += [
        AuditRecord(event="policy_added", request=msgspec.to_builtins(body),
                    result={"version": version, "checksum": pv.checksum}),
        _policy_event(state.world_id, pv, cmd, now),
        *invalidate_all(state, "policy_added", version=version),
    ]
    new_state = msgspec.structs.replace(state, policies=policies, world=new_world, validations={})
    return Outcome(state=new_state, effects=effects, reply=PolicyVersionRef(version=version))


def set_default(state: WorldState, cmd: SetDefaultPolicy, now: datetime) -> Outcome:
    world = require_world(state)
    version = cmd.body.version
    if version not in state.policies:
        raise not_found("policy")
    policies = dict(state.policies)
    effects: list[Any] = []
    old = world.default_policy_version
    if old is not None and old != version and old in policies:
        policies[old] = msgspec.structs.replace(policies[old], status="DEPRECATED")
        effects.append(SavePolicy(policy=policies[old]))
    policies[version] = msgspec.structs.replace(policies[version], status="ACTIVE")
    new_world = msgspec.structs.replace(world, default_policy_version=version, updated_at=iso_z(now))
    effects += [
        SavePolicy(policy=policies[version]),
        SaveWorld(record=new_world),
        AuditRecord(event="policy_default_set", request={"version": version},
                    result={"version": version, "previous": old}),
        _policy_event(state.world_id, policies[version], cmd, now),
        *invalidate_all(state, "default_policy_set", version=version),
    ]
    new_state = msgspec.structs.replace(state, policies=policies, world=new_world, validations={})
    return Outcome(state=new_state, effects=effects, reply=PolicyVersionRef(version=version))


def get_policy(state: WorldState, version: int) -> dict[str, Any]:
    require_world(state)
    if version not in state.policies:
        raise not_found("policy")
    return state.policies[version].document


def policy_info(state: WorldState, version: int) -> PolicyInfo:
    require_world(state)
    if version not in state.policies:
        raise not_found("policy")
    pv = state.policies[version]
    fields = {f: getattr(pv, f) for f in PolicyInfo.__struct_fields__}
    return PolicyInfo(**fields)


def default_policy(state: WorldState) -> PolicyVersion | None:
    version = state.world.default_policy_version if state.world else None
    return state.policies.get(version) if version is not None else None
