"""Loading one world's state from SQL: every table it owns, folded into a ``WorldState``."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa

from domain.effects import PolicyVersion
from domain.state import WorldState
from messages.activation import ActivationEntry
from messages.apply import ApplyRun, EdgeOverride
from messages.decisions import DecisionRecord, HistoryEntry
from messages.worlds import WorldRecord
from messages.wvg import ValidationEntry, WorldNodeRef
from storage import schema as t
from storage.evaluation_rows import load_evaluations
from storage.risk_rows import load_latest_stamp


def load_world_state(conn: sa.Connection, world_id: str) -> WorldState:
    versions = conn.execute(sa.select(t.world_versions).where(t.world_versions.c.world_id == world_id)).first()
    state = WorldState(world_id=world_id, row_version=versions.row_version if versions else 0,
                       activation_counter=versions.activation_counter if versions else 0)
    state = msgspec.structs.replace(state, runs=_load_runs(conn, world_id))
    record = conn.execute(sa.select(t.worlds.c.record).where(t.worlds.c.id == world_id)).scalar()
    if record is None:
        return state
    return msgspec.structs.replace(
        state, world=msgspec.convert(record, WorldRecord), policies=_load_policies(conn, world_id),
        bindings=list(conn.execute(sa.select(t.bindings.c.strategy_id).where(t.bindings.c.world_id == world_id)
                                   .order_by(t.bindings.c.strategy_id)).scalars()),
        decisions=conn.execute(sa.select(t.decisions.c.strategies)
                               .where(t.decisions.c.world_id == world_id)).scalar() or [],
        activation=_load_activation(conn, world_id),
        history={r.strategy_id: msgspec.convert(r.entry, HistoryEntry) for r in conn.execute(
            sa.select(t.history).where(t.history.c.world_id == world_id))},
        decision=_load_decision(conn, world_id),
        edges={f"{e.src}->{e.dst}": e for e in (msgspec.convert(rec, EdgeOverride) for rec in conn.execute(
            sa.select(t.edge_overrides.c.record).where(t.edge_overrides.c.world_id == world_id)).scalars())},
        nodes=_load_buckets(conn, t.world_nodes, world_id, WorldNodeRef),
        validations=_load_buckets(conn, t.validation_cache, world_id, ValidationEntry),
        evaluations=load_evaluations(conn, world_id),
        risk_snapshot=load_latest_stamp(conn, world_id),
    )


def _load_buckets(conn: sa.Connection, table: sa.Table, world_id: str, record_type: type) -> dict[str, dict[str, Any]]:
    """World View Graph rows as ``node_id -> execution domain -> record``."""
    buckets: dict[str, dict[str, Any]] = {}
    for r in conn.execute(sa.select(table.c.node_id, table.c.execution_domain, table.c.record)
                          .where(table.c.world_id == world_id)):
        buckets.setdefault(r.node_id, {})[r.execution_domain] = msgspec.convert(r.record, record_type)
    return buckets


def _load_decision(conn: sa.Connection, world_id: str) -> DecisionRecord:
    d = t.world_decisions
    record = conn.execute(sa.select(d.c.record).where(d.c.world_id == world_id)).scalar()
    return DecisionRecord() if record is None else msgspec.convert(record, DecisionRecord)


def _load_runs(conn: sa.Connection, world_id: str) -> dict[str, ApplyRun]:
    """Run records with their ACK rows folded in (an ACK is committed without rewriting its record)."""
    runs = {r.run_id: r for r in (msgspec.convert(rec, ApplyRun) for rec in conn.execute(
        sa.select(t.apply_runs.c.record).where(t.apply_runs.c.world_id == world_id)).scalars())}
    open_ids = [run_id for run_id, run in runs.items() if run.is_open]
    if open_ids:
        a = t.apply_acks
        acks = {(r.run_id, r.sequence, r.phase): r.acked_at for r in conn.execute(
            sa.select(a).where(a.c.world_id == world_id, a.c.run_id.in_(open_ids)))}
        runs.update({run_id: _with_acks(runs[run_id], acks) for run_id in open_ids})
    return runs


def _with_acks(run: ApplyRun, acks: dict[tuple[str, int, str], str]) -> ApplyRun:
    events = []
    for event in run.events:
        acked_at = acks.get((run.run_id, event.sequence, event.phase))
        if acked_at is not None and not event.acked:
            event = msgspec.structs.replace(event, acked=True, acked_at=acked_at)
        events.append(event)
    return msgspec.structs.replace(run, events=events)


def _load_policies(conn: sa.Connection, world_id: str) -> dict[int, PolicyVersion]:
    rows = conn.execute(sa.select(t.policies).where(t.policies.c.world_id == world_id)).mappings()
    out = {}
    for r in rows:
        fields = {k: r[k] for k in ("version", "text", "document", "checksum", "status", "created_by", "created_at")}
        out[r["version"]] = PolicyVersion(**fields, **(r["preset"] or {}))
    return out


def _load_activation(conn: sa.Connection, world_id: str) -> dict[str, dict[str, ActivationEntry]]:
    entries: dict[str, dict[str, ActivationEntry]] = {}
    for r in conn.execute(sa.select(t.activations).where(t.activations.c.world_id == world_id)
                          .order_by(t.activations.c.strategy_id, t.activations.c.side)):
        entries.setdefault(r.strategy_id, {})[r.side] = msgspec.convert(r.entry, ActivationEntry)
    return entries
