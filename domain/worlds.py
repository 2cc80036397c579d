"""World registry rules: create, update (only the fields sent), delete, bindings, decisions, history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from msgspec import UNSET

from domain.decide import reevaluate
from domain.default_safe import must_demote
from domain.domains import normalise_domain
from domain.effects import AuditRecord, Effect, RemoveWorld, SaveHistory, SaveStrategies, SaveWorld
from domain.policies import default_policy, human_summary
from domain.promotion import demote
from domain.state import Outcome, WorldState, require_world
from domain.timefmt import iso_z, parse_iso, refuse_future
from domain.wvg import context_changes, default_edges, ensure_roots, invalidate_all
from messages.bindings import StrategiesOut
from messages.commands import AddBindings, CreateWorld, DeleteWorld, PutHistory, SetDecisions, UpdateWorld
from messages.decisions import HistoryEntry, HistoryOut
from messages.errors import CommandRejected, Refusal, Result, conflict, unprocessable
from messages.worlds import MUTABLE_WORLD_FIELDS, WorldDescription, WorldRecord


def _world_audit(event: str, request: Any, record: WorldRecord) -> AuditRecord:
    return AuditRecord(event=event, request=msgspec.to_builtins(request), result={"world": msgspec.to_builtins(record)})


def _check_default_version(state: WorldState, version: int | None) -> None:
    if version is not None and version not in state.policies:
        raise unprocessable(f"default_policy_version {version} does not name a stored policy")


def create_world(state: WorldState, cmd: CreateWorld, now: datetime) -> Outcome:
    if state.world is not None:
        raise conflict("world already exists")
    body = cmd.body
    if body.id != cmd.world_id:
        raise unprocessable("world id in body does not match the path")
    _check_default_version(state, body.default_policy_version)
    fields = {f: getattr(body, f) for f in MUTABLE_WORLD_FIELDS}
    stamp = iso_z(now)
    record = WorldRecord(id=body.id, created_at=stamp, updated_at=stamp, **fields)
    edges, edge_effects = default_edges(state, cmd.correlation_id, now)
    effects = [SaveWorld(record=record), _world_audit("world_created", body, record), *edge_effects]
    new_state = msgspec.structs.replace(state, world=record, edges=edges)
    return Outcome(state=new_state, effects=effects, reply=record, result=Result.CREATED)


def update_world(state: WorldState, cmd: UpdateWorld, now: datetime) -> Outcome:
    world = require_world(state)
    body = cmd.body
    if body.id is not UNSET and body.id != cmd.world_id:
        raise unprocessable("world id is immutable")
    changes = {f: getattr(body, f) for f in MUTABLE_WORLD_FIELDS if getattr(body, f) is not UNSET}
    if "default_policy_version" in changes:
        _check_default_version(state, changes["default_policy_version"])
    record = msgspec.structs.replace(world, updated_at=iso_z(now), **changes)
    changed = context_changes(world, changes)
    invalidation = invalidate_all(state, "world_context_changed", fields=changed) if changed else []
    effects: list[Effect] = [SaveWorld(record=record), _world_audit("world_updated", body, record), *invalidation]
    validations = {} if changed else state.validations
    new_state = msgspec.structs.replace(state, world=record, validations=validations)
    refusals = must_demote(world, record)
    if refusals:  # allow_live off, breaker on, suspended or re-pinned: out of live in this same commit
        new_state, demotion = demote(new_state, record, refusals, cmd.correlation_id, now)
        effects += demotion
    return Outcome(state=new_state, effects=effects, reply=new_state.world)


def _active_strategies(state: WorldState) -> list[str]:
    return sorted(sid for sid, sides in state.activation.items() if any(e.active for e in sides.values()))


def delete_world(state: WorldState, cmd: DeleteWorld, now: datetime) -> Outcome:
    """Refuses while any strategy is active unless forced: deleting a trading world is never implicit."""
    require_world(state)
    active = _active_strategies(state)
    if active and not cmd.force:
        raise CommandRejected(Refusal.CONFLICT,
                              f"world has active strategies: {', '.join(active)}; deactivate them or force")
    # The cascade below clears the cache in SQL; the audit still says so, before the deletion itself.
    invalidation = [e for e in invalidate_all(state, "world_deleted") if isinstance(e, AuditRecord)]
    effects = [*invalidation, RemoveWorld(),
               AuditRecord(event="world_deleted", request={"force": cmd.force},
                           result={"deleted_at": iso_z(now), "active_strategies": active})]
    new_state = WorldState(world_id=state.world_id, row_version=state.row_version,
                           activation_counter=state.activation_counter)
    return Outcome(state=new_state, effects=effects, reply=None, result=Result.NO_CONTENT)


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(s.strip() for s in items))


def add_bindings(state: WorldState, cmd: AddBindings, now: datetime) -> Outcome:
    """A WSB upsert: the union of bindings, and every bound strategy's root node in the World View Graph
    (created in the same transaction when it has none; spec §2, §9)."""
    require_world(state)
    added = _dedupe(cmd.body.strategies)
    merged = sorted(set(state.bindings) | set(added))
    nodes, root_effects = ensure_roots(state, added)
    effects: list[Effect] = [SaveStrategies(table="bindings", strategies=merged),
                             AuditRecord(event="bindings_added", request=None, result={"strategies": added}),
                             *root_effects]
    new_state = msgspec.structs.replace(state, bindings=merged, nodes=nodes)
    return Outcome(state=new_state, effects=effects, reply=StrategiesOut(strategies=merged))


def bindings_out(state: WorldState, strategy_id: str | None) -> StrategiesOut:
    """The bound set, or just ``strategy_id`` when it is bound (a Gateway asking "is this one bound?")."""
    require_world(state)
    bound = [s for s in state.bindings if strategy_id is None or s == strategy_id]
    return StrategiesOut(strategies=bound)


def set_decisions(state: WorldState, cmd: SetDecisions, now: datetime) -> Outcome:
    require_world(state)
    strategies = _dedupe(cmd.body.strategies)
    effects = [SaveStrategies(table="decisions", strategies=strategies),
               AuditRecord(event="decisions_set", request=None, result={"strategies": strategies})]
    new_state = msgspec.structs.replace(state, decisions=strategies)
    return Outcome(state=new_state, effects=effects, reply=StrategiesOut(strategies=strategies))


def _check_timestamp(name: str, value: str | None, now: datetime) -> None:
    if value is None:
        return
    try:
        parse_iso(value)
    except ValueError:
        raise unprocessable(f"invalid {name}; expected ISO-8601 timestamp") from None
    refuse_future(name, value, now)  # evidence from the future would decide ahead of its time


def _history_fields(cmd: PutHistory, now: datetime) -> dict[str, Any]:
    """The record's fields from the request: the Gateway's forwarding fields are checked, then ``world_id``
    and the sender's ``updated_at`` are dropped (the receive time is stored instead)."""
    body = cmd.body
    if body.world_id is not None and body.world_id != cmd.world_id:
        raise unprocessable(f"world_id {body.world_id!r} in the body does not match the world "
                            f"{cmd.world_id!r} of the path")
    for name in ("as_of", "data_end"):
        _check_timestamp(name, getattr(body, name), now)
    if body.updated_at is not None:
        try:
            parse_iso(body.updated_at)
        except ValueError:
            raise unprocessable("invalid updated_at; expected ISO-8601 timestamp") from None
    fields = msgspec.structs.asdict(body)
    del fields["world_id"], fields["updated_at"]
    if body.execution_domain is not None:
        fields["execution_domain"] = normalise_domain(body.execution_domain)
    return fields


def put_history(state: WorldState, cmd: PutHistory, now: datetime) -> Outcome:
    require_world(state)
    body = cmd.body
    entry = HistoryEntry(updated_at=iso_z(now), **_history_fields(cmd, now))
    history = {**state.history, body.strategy_id: entry}
    result = {"strategy_id": body.strategy_id, "dataset_fingerprint": body.dataset_fingerprint,
              "as_of": body.as_of, "updated_at": entry.updated_at}
    effects: list[Effect] = [SaveHistory(entry=entry),
                             AuditRecord(event="history_metadata_upserted", request=None, result=result)]
    new_state, evaluation = reevaluate(msgspec.structs.replace(state, history=history), now)
    return Outcome(state=new_state, effects=effects + evaluation, reply=None, result=Result.NO_CONTENT)


def history_out(state: WorldState) -> HistoryOut:
    require_world(state)
    entries = sorted(state.history.values(), key=lambda e: e.strategy_id)
    latest = max(entries, key=lambda e: (e.as_of or "", e.updated_at), default=None)
    return HistoryOut(entries=entries, latest=latest)


def describe(state: WorldState) -> WorldDescription:
    world = require_world(state)
    pv = default_policy(state)
    base = msgspec.structs.asdict(world)
    if pv is None:
        return WorldDescription(**base)
    return WorldDescription(
        **base, policy=pv.document, policy_preset=pv.preset, policy_preset_mode=pv.preset_mode,
        policy_preset_version=pv.preset_version, policy_overrides=pv.preset_overrides,
        policy_human=human_summary(pv.document),
    )
