"""``/decide``: the reference's rule set for a world whose policy has no decision section.

Differences from the reference, on purpose: the etag is derived from the decision's content (it changes
only when the decision does), and ``Cache-Control: max-age`` is taken from the same ``ttl``.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from domain.hashing import blake3_hex, canonical_json
from domain.policies import default_policy
from domain.state import LastDecision, WorldState, require_world
from domain.timefmt import iso_z, parse_iso
from messages.decisions import DecisionEnvelope, HistoryEntry
from messages.errors import unprocessable

DEFAULT_TTL_S = 300
HYSTERESIS_TTL_S = 120


def _history_at(state: WorldState, as_of: datetime | None) -> HistoryEntry | None:
    """Latest metadata, or the best entry not after ``as_of`` (no look-ahead); undated entries qualify."""
    def rank(e: HistoryEntry) -> tuple[str, str]:
        return (e.as_of or "", e.updated_at)

    candidates = [e for e in state.history.values()
                  if as_of is None or e.as_of is None or parse_iso(e.as_of) <= as_of]
    return max(candidates, key=rank, default=None)


def _metrics_ok(meta: HistoryEntry | None) -> bool:
    return bool(meta and (meta.coverage_bounds or meta.conformance_flags or meta.rows))


def _holds_live(state: WorldState, fp: str | None) -> bool:
    """The reference's hysteresis: stay live while the last decision was live on the same fingerprint."""
    last = state.last_decision
    return last is not None and last.effective_mode == "live" and last.dataset_fingerprint == fp


def _mode(state: WorldState, allow_live: bool, meta: HistoryEntry | None) -> tuple[str, list[str], int]:
    if not state.bindings or not state.decisions:
        return "validate", ["no_bindings" if not state.bindings else "no_active_strategies"], DEFAULT_TTL_S
    return _mode_with_strategies(state, allow_live, meta)


def _mode_with_strategies(state: WorldState, allow_live: bool,
                          meta: HistoryEntry | None) -> tuple[str, list[str], int]:
    tokens = ["bindings_present", "decisions_present"]
    fp = meta.dataset_fingerprint if meta else None
    metrics_ok = _metrics_ok(meta)
    if allow_live and fp and metrics_ok:
        return "live", tokens + ["allow_live", "dataset_fingerprint_ok", "metrics_ok"], DEFAULT_TTL_S
    if allow_live and _holds_live(state, fp):
        return "live", tokens + ["allow_live", "hysteresis_hold"], HYSTERESIS_TTL_S
    missing = [("allow_live_disabled", allow_live), ("dataset_fingerprint_missing", fp),
               ("required_metrics_missing", metrics_ok)]
    return "compute-only", tokens + [token for token, present in missing if not present], DEFAULT_TTL_S


_HISTORY_FIELDS = ("dataset_fingerprint", "coverage_bounds", "conformance_flags", "conformance_warnings", "rows",
                   "artifact")


def _history_fields(meta: HistoryEntry | None) -> dict[str, object]:
    fields: dict[str, object] = {name: getattr(meta, name) if meta else None for name in _HISTORY_FIELDS}
    fields["history_updated_at"] = meta.updated_at if meta else None
    return fields


def _parse_as_of(as_of: str | None) -> datetime | None:
    if as_of is None:
        return None
    try:
        return parse_iso(as_of)
    except ValueError:
        raise unprocessable("invalid as_of; expected ISO-8601 timestamp") from None


def decide(state: WorldState, as_of: str | None, now: datetime) -> tuple[DecisionEnvelope, LastDecision, int]:
    """Returns the envelope, the decision to remember for hysteresis, and its TTL in seconds."""
    world = require_world(state)
    requested = _parse_as_of(as_of)
    meta = _history_at(state, requested)
    mode, tokens, ttl = _mode(state, world.allow_live, meta)
    pv = default_policy(state)
    policy_version = pv.version if pv else 0
    anchored_as_of = iso_z(requested) if requested else (meta.as_of if meta else None)
    fields = _history_fields(meta)
    reason = " & ".join(tokens)
    content = {"mode": mode, "reason": reason, "ttl": ttl, "as_of": anchored_as_of, "pv": policy_version,
               **msgspec.to_builtins(fields)}
    digest = blake3_hex(canonical_json(content)).removeprefix("blake3:")[:16]
    envelope = DecisionEnvelope(
        world_id=state.world_id, policy_version=policy_version, effective_mode=mode, reason=reason,
        as_of=anchored_as_of or iso_z(now), ttl=f"{ttl}s", etag=f"w:{state.world_id}:v{policy_version}:{digest}",
        **fields,  # type: ignore[arg-type]
    )
    return envelope, LastDecision(effective_mode=mode, dataset_fingerprint=meta.dataset_fingerprint if meta else None), ttl
