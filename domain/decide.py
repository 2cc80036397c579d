"""``/decide``: the decision envelope of a world, and its re-evaluation when evidence arrives.

A world whose default policy has a ``decision`` section is decided by the engine (``domain.decision``).
Any other world keeps the reference's fixed rules, so existing clients see the same answers; the one
difference is that the reference's "stay live" memory is persisted instead of held in process memory.

For both, the etag is derived from the decision itself (policy version, mode, reason, fingerprint), so it
changes exactly when the decision does, and ``Cache-Control: max-age`` is taken from the same ``ttl``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from domain import decision
from domain.decision_rules import DecisionRules, rules_for_text
from domain.default_safe import live_refusals
from domain.effects import AuditRecord, Effect, PolicyVersion, RecordDecision, SaveDecision
from domain.hashing import blake3_hex, canonical_json
from domain.policies import default_policy
from domain.state import WorldState, require_world
from domain.timefmt import iso_z, parse_iso
from messages.decisions import (
    DecisionEnvelope, DecisionRecord, DecisionState, HistoryEntry, HysteresisOut, LastDecision,
    PolicyDecisionEnvelope,
)
from messages.errors import unprocessable
from messages.worlds import WorldRecord

DEFAULT_TTL_S = 300
HYSTERESIS_TTL_S = 120


def _history_at(state: WorldState, as_of: datetime | None) -> HistoryEntry | None:
    """Latest metadata, or the best entry not after ``as_of`` (no look-ahead); undated entries qualify."""
    def rank(e: HistoryEntry) -> tuple[str, str]:
        return (e.as_of or "", e.updated_at)

    candidates = [e for e in state.history.values() if decision.visible_at(e, as_of)]
    return max(candidates, key=rank, default=None)


def _rules(pv: PolicyVersion | None) -> DecisionRules | None:
    return rules_for_text(pv.text) if pv is not None else None


def _without_strategies(state: WorldState) -> list[str] | None:
    """Both paths start here: nothing bound, or nothing decided, is ``validate`` (seed §4-A)."""
    if not state.bindings:
        return ["no_bindings"]
    if not state.decisions:
        return ["no_active_strategies"]
    return None


# --- the reference's rules (a world without a decision section) ------------------------------------


def _metrics_ok(meta: HistoryEntry | None) -> bool:
    return bool(meta and (meta.coverage_bounds or meta.conformance_flags or meta.rows))


def _holds_live(last: LastDecision | None, fp: str | None) -> bool:
    """The reference's hysteresis: stay live while the last decision was live on the same fingerprint."""
    return last is not None and last.effective_mode == "live" and last.dataset_fingerprint == fp


def _reference_mode(state: WorldState, world: WorldRecord, meta: HistoryEntry | None) -> tuple[str, list[str], int]:
    """The reference's §5.1 rules, with its allow_live/fingerprint/metrics checks asked of the one
    default-safe rule (which also refuses a tripped breaker or a suspended world)."""
    tokens = ["bindings_present", "decisions_present"]
    fp = meta.dataset_fingerprint if meta else None
    refusals = live_refusals(world, fp, None if _metrics_ok(meta) else "required_metrics_missing")
    if not refusals:
        return "live", tokens + ["allow_live", "dataset_fingerprint_ok", "metrics_ok"], DEFAULT_TTL_S
    if _holds_live(state.decision.last, fp) and not live_refusals(world, fp):
        return "live", tokens + ["allow_live", "hysteresis_hold"], HYSTERESIS_TTL_S
    return "compute-only", tokens + refusals, DEFAULT_TTL_S


# --- the envelope ----------------------------------------------------------------------------------


_HISTORY_FIELDS = ("dataset_fingerprint", "coverage_bounds", "conformance_flags", "conformance_warnings", "rows",
                   "artifact")


def _history_fields(meta: HistoryEntry | None) -> dict[str, Any]:
    fields: dict[str, Any] = {name: getattr(meta, name) if meta else None for name in _HISTORY_FIELDS}
    fields["history_updated_at"] = meta.updated_at if meta else None
    return fields


def decision_etag(world_id: str, policy_version: int, mode: str, reason: str, fingerprint: str | None) -> str:
    content = {"pv": policy_version, "mode": mode, "reason": reason, "fp": fingerprint}
    digest = blake3_hex(canonical_json(content)).removeprefix("blake3:")[:16]
    return f"w:{world_id}:v{policy_version}:{digest}"


def _parse_as_of(as_of: str | None) -> datetime | None:
    if as_of is None:
        return None
    try:
        return parse_iso(as_of)
    except ValueError:
        raise unprocessable("invalid as_of; expected ISO-8601 timestamp") from None


def _hysteresis_out(rules: DecisionRules, d: DecisionState | None) -> HysteresisOut | None:
    if d is None:
        return None
    return HysteresisOut(status=d.hysteresis, decided_mode=d.mode, since=d.since, pass_streak=d.pass_streak,
                         fail_streak=d.fail_streak, promote_after=rules.promote_after,
                         demote_after=rules.demote_after, min_dwell_s=rules.min_dwell_s,
                         evaluated_at=d.evaluated_at, verdict=d.verdict)


def _engine_mode(state: WorldState, world: WorldRecord, rules: DecisionRules, fingerprint: str | None,
                 requested: datetime | None, now: datetime) -> tuple[str, list[str], int]:
    stored = state.decision.engine
    at = requested or now
    historical = stored is not None and requested is not None and requested < parse_iso(stored.evaluated_at)
    evidence = decision.evidence_at(state.history, state.decisions, requested)
    # The engine's verdict and hysteresis are the policy's validation; the rest is the default-safe rule.
    refusals = live_refusals(world, fingerprint)
    reading = decision.read(rules, stored, state.decisions, evidence, at, refusals, historical)
    return reading.mode, reading.tokens, reading.ttl_s


def _mode(state: WorldState, world: WorldRecord, rules: DecisionRules | None, meta: HistoryEntry | None,
          requested: datetime | None, now: datetime) -> tuple[str, list[str], int]:
    early = _without_strategies(state)
    if early is not None:
        return "validate", early, rules.ttl_s if rules else DEFAULT_TTL_S
    if rules is None:
        return _reference_mode(state, world, meta)
    return _engine_mode(state, world, rules, meta.dataset_fingerprint if meta else None, requested, now)


def _entry_as_of(meta: HistoryEntry | None) -> str | None:
    """The picked entry's ``as_of``, else its artifact's (the reference reads the artifact as a fallback)."""
    if meta is None:
        return None
    return meta.as_of or (meta.artifact.as_of if meta.artifact else None)


def decide(state: WorldState, as_of: str | None, now: datetime) -> tuple[DecisionEnvelope, DecisionRecord, int]:
    """The envelope, the decision record to keep (changed only by the reference path's memory), its TTL.

    As in the reference, the envelope's ``as_of`` is that of the history entry the decision read, then the
    requested ``as_of``, then now."""
    world = require_world(state)
    requested = _parse_as_of(as_of)
    pv = default_policy(state)
    policy_version = pv.version if pv else 0
    rules = _rules(pv)
    meta = _history_at(state, requested)
    mode, tokens, ttl = _mode(state, world, rules, meta, requested, now)
    reason = " & ".join(tokens)
    fields = _history_fields(meta)
    anchored_as_of = _entry_as_of(meta) or (iso_z(requested) if requested else None)
    common: dict[str, Any] = dict(
        world_id=state.world_id, policy_version=policy_version, effective_mode=mode, reason=reason,
        as_of=anchored_as_of or iso_z(now), ttl=f"{ttl}s", **fields,
        etag=decision_etag(state.world_id, policy_version, mode, reason, fields["dataset_fingerprint"]))
    if rules is None:
        last = LastDecision(effective_mode=mode, dataset_fingerprint=fields["dataset_fingerprint"])
        return DecisionEnvelope(**common), msgspec.structs.replace(state.decision, last=last), ttl
    stored = state.decision.engine
    envelope = PolicyDecisionEnvelope(**common, score=stored.score if stored else None,
                                      hysteresis=_hysteresis_out(rules, stored))
    return envelope, state.decision, ttl


# --- re-evaluation on new evidence -----------------------------------------------------------------


def reevaluate(state: WorldState, now: datetime) -> tuple[WorldState, list[Effect]]:
    """One evaluation of the world's evidence under its default policy's decision rules (if it has any),
    persisted with the evidence that caused it. A world with nothing decided is not evaluated."""
    pv = default_policy(state)
    rules = _rules(pv)
    if rules is None or pv is None or _without_strategies(state) is not None:
        return state, []
    evidence = decision.evidence_at(state.history, state.decisions, None)
    verdict = decision.evaluate(rules, state.decisions, evidence, now)
    previous = state.decision.engine
    new = decision.advance(previous, rules, verdict, pv.version, now)
    record = msgspec.structs.replace(state.decision, engine=new)
    effects: list[Effect] = [SaveDecision(record=record), RecordDecision(state=new)]
    if previous is None or new.mode != previous.mode:
        effects.append(AuditRecord(event="decision_changed", request=None, result={
            "from": previous.mode if previous else None, "to": new.mode, "verdict": new.verdict,
            "tokens": new.tokens, "policy_version": pv.version, "at": new.evaluated_at}))
    return msgspec.structs.replace(state, decision=record), effects
