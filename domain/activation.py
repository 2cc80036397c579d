"""Activation rules: manual overrides, etags, the state hash, and rebuilding the set from the audit log."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import msgspec
from msgspec import UNSET

from domain.default_safe import LIVE, refused, world_refusals
from domain.effects import AuditRecord, Effect, OutboxEvent, SaveActivation
from domain.events import cloudevent
from domain.hashing import blake3_hex, reference_json
from domain.state import Outcome, WorldState, require_world
from domain.timefmt import iso_z, parse_iso
from messages.activation import ActivationEntry, ActivationEnvelope, ActivationRequest, ActivationSetOut
from messages.commands import PutActivation
from messages.errors import CommandRejected, Refusal, not_found, unprocessable

ACTIVATION_TOPIC = "activation"
_NEW_ENTRY = ActivationEntry(active=False, ts="", etag="")


def activation_etag(world_id: str, strategy_id: str, side: str, counter: int) -> str:
    return f"act:{world_id}:{strategy_id}:{side}:{counter}"


def state_document(counter: int, entries: Mapping[str, Mapping[str, ActivationEntry]]) -> dict[str, Any]:
    """The reference's activation document ``{"version": N, "state": {sid: {side: entry}}}``."""
    return {
        "version": counter,
        "state": {sid: {side: msgspec.to_builtins(e) for side, e in sides.items()} for sid, sides in entries.items()},
    }


def state_hash(counter: int, entries: Mapping[str, Mapping[str, ActivationEntry]]) -> str:
    return blake3_hex(reference_json(state_document(counter, entries)))


def envelope(world_id: str, strategy_id: str, side: str, entry: ActivationEntry, **extra: Any) -> ActivationEnvelope:
    return ActivationEnvelope(
        world_id=world_id, strategy_id=strategy_id, side=side, active=entry.active, weight=entry.weight,
        freeze=entry.freeze, drain=entry.drain, effective_mode=entry.effective_mode, etag=entry.etag,
        run_id=entry.run_id, ts=entry.ts, **extra,
    )


def _checked_ts(ts: str | None, now: datetime) -> str:
    if ts is None:
        return iso_z(now)
    try:
        parse_iso(ts)
    except ValueError:
        raise unprocessable("invalid ts; expected ISO-8601 timestamp") from None
    return ts


def _merged_entry(body: ActivationRequest, prev: ActivationEntry, ts: str, etag: str) -> ActivationEntry:
    """Fields the request leaves out keep their stored value, so an override never drops a freeze."""
    return ActivationEntry(
        active=body.active,
        weight=prev.weight if body.weight is UNSET else body.weight,
        freeze=prev.freeze if body.freeze is UNSET else body.freeze,
        drain=prev.drain if body.drain is UNSET else body.drain,
        effective_mode=prev.effective_mode if body.effective_mode is UNSET else body.effective_mode,
        run_id=body.run_id, ts=ts, etag=etag,
    )


def put_activation(state: WorldState, cmd: PutActivation, now: datetime) -> Outcome:
    world = require_world(state)
    body = cmd.body
    counter = state.activation_counter + 1
    prev = state.activation.get(body.strategy_id, {}).get(body.side, _NEW_ENTRY)
    if cmd.if_match is not None and cmd.if_match not in (prev.etag, "*"):
        raise CommandRejected(Refusal.PRECONDITION_FAILED, "activation etag does not match If-Match")
    etag = activation_etag(state.world_id, body.strategy_id, body.side, counter)
    entry = _merged_entry(body, prev, _checked_ts(body.ts, now), etag)
    refusals = world_refusals(world) if entry.effective_mode == LIVE else []
    if refusals:  # an override may keep a world live, never make it live: only a validated Switch does
        return refused(state, "live activation", refusals, msgspec.to_builtins(body))
    entries = {sid: dict(sides) for sid, sides in state.activation.items()}
    entries.setdefault(body.strategy_id, {})[body.side] = entry
    digest = state_hash(counter, entries)
    new_state = msgspec.structs.replace(state, activation=entries, activation_counter=counter)
    event = _activation_event(state.world_id, body.strategy_id, body.side, entry, digest, counter, cmd, now)
    effects = entry_written(body.strategy_id, body.side, entry, counter, event, msgspec.to_builtins(body))
    reply = envelope(state.world_id, body.strategy_id, body.side, entry, state_hash=digest)
    return Outcome(state=new_state, effects=effects, reply=reply)


def entry_written(sid: str, side: str, entry: ActivationEntry, counter: int, event: OutboxEvent,
                  request: dict[str, Any] | None = None) -> list[Effect]:
    """One activation write: stored, audited (the audit log is what rebuilds the projection) and announced.
    Every writer (PUT, apply's phases, a demotion) goes through here, so the three never drift apart."""
    result = {"version": counter, "strategy_id": sid, "side": side, **msgspec.to_builtins(entry)}
    return [SaveActivation(strategy_id=sid, side=side, entry=entry),
            AuditRecord(event="activation_updated", request=request, result=result), event]


def activation_event(world_id: str, sid: str, side: str, entry: ActivationEntry, digest: str, counter: int,
                     correlation_id: str, now: datetime, **extra: Any) -> OutboxEvent:
    """The reference's ``activation_updated`` data (nulls dropped); ``extra`` carries apply's ``phase``,
    ``requires_ack`` and ``sequence``. ``version`` is the event schema version, never the counter."""
    data = {k: v for k, v in msgspec.to_builtins(entry).items() if v is not None}
    data.update(world_id=world_id, strategy_id=sid, side=side, run_id=entry.run_id or "", state_hash=digest,
                version=1, **extra)
    key = f"activation_updated:{world_id}:{entry.etag}:{entry.run_id or ''}:{counter}"
    return cloudevent(ACTIVATION_TOPIC, "activation_updated", world_id, data, key, correlation_id, now)


def _activation_event(world_id: str, sid: str, side: str, entry: ActivationEntry, digest: str, counter: int,
                      cmd: PutActivation, now: datetime) -> OutboxEvent:
    return activation_event(world_id, sid, side, entry, digest, counter,
                            cmd.correlation_id or f"activation:{world_id}:{entry.run_id or ''}", now)


def get_activation(state: WorldState, strategy_id: str, side: str) -> ActivationEnvelope:
    require_world(state)
    entry = state.activation.get(strategy_id, {}).get(side)
    if entry is None:
        raise not_found("activation")
    return envelope(state.world_id, strategy_id, side, entry)


def activation_set(state: WorldState) -> ActivationSetOut:
    """The whole set under its state hash. The etag is the hash's digest, which covers the counter too, so
    it changes with every write and is never reused (the counter only grows)."""
    require_world(state)
    digest = state_hash(state.activation_counter, state.activation)
    entries = {sid: dict(sides) for sid, sides in state.activation.items()}
    return ActivationSetOut(world_id=state.world_id, version=state.activation_counter, state=entries,
                            state_hash=digest, etag=f"actset:{state.world_id}:{digest.removeprefix('blake3:')}")


def fold_audit(results: Iterable[tuple[str, Mapping[str, Any]]]) -> tuple[int, dict[str, dict[str, ActivationEntry]]]:
    """Rebuild a world's activation set by replaying its audit log (``(event, result)`` in log order).

    This is how the Redis projection is recovered: SQL's audit log is the record of every change.
    """
    counter, entries = 0, {}
    for event, result in results:
        if event == "activation_updated":
            counter = max(counter, int(result["version"]))
            fields = {k: result[k] for k in ActivationEntry.__struct_fields__ if k in result}
            entries.setdefault(result["strategy_id"], {})[result["side"]] = msgspec.convert(fields, ActivationEntry)
        elif event == "activation_removed":
            counter = max(counter, int(result["version"]))
            entries.get(result["strategy_id"], {}).pop(result["side"], None)
            entries = {sid: sides for sid, sides in entries.items() if sides}
        elif event == "world_deleted":
            entries = {}
    return counter, entries
