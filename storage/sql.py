"""The SQL system of record: load a world's state, apply a group of command effects, read the audit log."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from domain.effects import (
    AuditRecord, Effect, OutboxEvent, PolicyVersion, RecordDecision, RememberCommand, RemoveActivation,
    RemoveEdge, RemoveWorld, SaveAck, SaveActivation, SaveAllocationRun, SaveApplyRun, SaveDecision,
    SaveEdge, SaveHistory, SavePolicy, SaveStrategies, SaveWorld, SaveWorldAllocation,
)
from domain.effects import RemoveNode, RemoveValidations, SaveEvaluationRun, SaveNode, SaveValidation
from domain.idempotency import StoredReply
from domain.state import WorldState
from domain.timefmt import iso_z
from messages.activation import ActivationEntry
from messages.apply import ApplyRun, EdgeOverride
from messages.audit import AuditEntry, AuditPage
from messages.decisions import DecisionRecord, DecisionState, HistoryEntry
from messages.worlds import WorldRecord
from messages.wvg import ValidationEntry, WorldNodeRef
from storage import schema as t
from storage.evaluation_rows import evaluation_row, load_evaluations


class StorageUnavailable(Exception):
    """The database could not be reached or failed the transaction; nothing of the batch was written."""


class StaleWriter(Exception):
    """The world's row version moved under this writer: another instance (or a stale actor) wrote it."""


@dataclass(frozen=True)
class WriteItem:
    """One command's effects, to be applied atomically if the world is still at ``expected_version``."""

    world_id: str
    expected_version: int
    activation_counter: int
    effects: Sequence[Effect]
    actor: str | None = None
    correlation_id: str | None = None
    created_at: str = field(default_factory=lambda: iso_z(datetime.now(timezone.utc)))


def _policy_row(world_id: str, pv: PolicyVersion) -> dict[str, Any]:
    preset = {"preset": pv.preset, "preset_mode": pv.preset_mode, "preset_version": pv.preset_version,
              "preset_overrides": pv.preset_overrides}
    return {"world_id": world_id, "version": pv.version, "text": pv.text, "document": pv.document,
            "checksum": pv.checksum, "status": pv.status, "created_by": pv.created_by,
            "created_at": pv.created_at, "preset": preset}


class _Statements:
    """Statements built once per dialect and executed with parameters only: constructing SQLAlchemy
    expressions per write cost more than the commit itself. Upserts are ``INSERT .. ON CONFLICT``, which
    SQLite and PostgreSQL both speak."""

    def __init__(self, dialect: str) -> None:
        insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        v = t.world_versions
        self.fence_insert = v.insert()
        self.fence_update = v.update().where(
            v.c.world_id == sa.bindparam("w"), v.c.row_version == sa.bindparam("expected")
        ).values(row_version=sa.bindparam("next_version"), activation_counter=sa.bindparam("counter"))
        self.upsert = {table: self._upsert(insert, table) for table in
                       (t.worlds, t.policies, t.decisions, t.activations, t.history, t.apply_runs,
                                     t.apply_acks, t.edge_overrides, t.allocation_runs, t.world_allocations,
                                     t.world_decisions)}
        a, e = t.activations, t.edge_overrides
        self.delete_activation = a.delete().where(a.c.world_id == sa.bindparam("w"),
                                                  a.c.strategy_id == sa.bindparam("sid"), a.c.side == sa.bindparam("side"))
        self.delete_edge = e.delete().where(e.c.world_id == sa.bindparam("w"), e.c.src == sa.bindparam("src"),
                                            e.c.dst == sa.bindparam("dst"))
        self.insert_command = t.processed_commands.insert()
        self.delete_bindings = t.bindings.delete().where(t.bindings.c.world_id == sa.bindparam("w"))
        self.insert_bindings = t.bindings.insert()
        self.insert_audit = t.audit_log.insert()
        self.insert_outbox = t.outbox.insert()
        self.insert_decision = t.decision_history.insert()
        self.upsert_node = self._upsert(insert, t.world_nodes)
        self.upsert_validation = self._upsert(insert, t.validation_cache)
        n, v = t.world_nodes, t.validation_cache
        self.delete_node = n.delete().where(n.c.world_id == sa.bindparam("w"), n.c.node_id == sa.bindparam("node"),
                                            n.c.execution_domain == sa.bindparam("domain"))
        # Keyed by which scope is given: (node, domain), node only, or the whole world.
        self.delete_validations = {
            (True, True): v.delete().where(v.c.world_id == sa.bindparam("w"), v.c.node_id == sa.bindparam("node"),
                                           v.c.execution_domain == sa.bindparam("domain")),
            (True, False): v.delete().where(v.c.world_id == sa.bindparam("w"), v.c.node_id == sa.bindparam("node")),
            (False, False): v.delete().where(v.c.world_id == sa.bindparam("w")),
        }
        self.remove_world = [table.delete().where(column == sa.bindparam("w"))
                             for table, column in t.WORLD_STATE_TABLES.items()]

    @staticmethod
    def _upsert(insert: Any, table: sa.Table) -> Any:
        stmt = insert(table)
        keys = [c.name for c in table.primary_key.columns]
        update = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        return stmt.on_conflict_do_update(index_elements=keys, set_=update)


class SqlStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._sql = _Statements(engine.dialect.name)
        self._effect_writers: dict[type, Callable[[sa.Connection, WriteItem, Any], None]] = {
            SaveWorld: self._save_world, RemoveWorld: self._remove_world, SavePolicy: self._save_policy,
            SaveStrategies: self._save_strategies, SaveHistory: self._save_history,
            RemoveActivation: self._remove_activation, SaveApplyRun: self._save_run, SaveEdge: self._save_edge,
            RemoveEdge: self._remove_edge, RememberCommand: self._remember_command, SaveAck: self._save_ack,
            SaveWorldAllocation: self._save_world_allocation, SaveAllocationRun: self._save_allocation_run,
            SaveDecision: self._save_decision, RecordDecision: self._record_decision,
            SaveNode: self._save_node, RemoveNode: self._remove_node, SaveValidation: self._save_validation,
            RemoveValidations: self._remove_validations,
        }
        self._batched_params: dict[type, Callable[[WriteItem, Any], dict[str, Any]]] = {
            SaveActivation: self._activation_row, AuditRecord: self._audit_row, OutboxEvent: self._outbox_row,
            SaveEvaluationRun: lambda item, effect: evaluation_row(item.world_id, effect),
        }
        self._batched_statements = {SaveActivation: self._sql.upsert[t.activations],
                                    AuditRecord: self._sql.insert_audit, OutboxEvent: self._sql.insert_outbox,
                                    SaveEvaluationRun: t.evaluation_runs.insert()}

    # --- writes ----------------------------------------------------------------------------------

    def apply_batch(self, items: Sequence[WriteItem], sent: Sequence[int] = (),
                    sent_at: str | None = None) -> list[Exception | None]:
        """Group commit: every item in one transaction, each inside its own savepoint so a refused item
        does not take the others down. Returns, per item, ``None`` or the exception that refused it."""
        try:
            return self._apply_batch(items, sent, sent_at)
        except sa.exc.DBAPIError as exc:
            raise StorageUnavailable(f"{type(exc.orig).__name__}: {exc.orig}") from exc

    def _apply_batch(self, items: Sequence[WriteItem], sent: Sequence[int],
                     sent_at: str | None) -> list[Exception | None]:
        """Relayed outbox rows are marked in the same transaction: no commit (and fsync) of their own."""
        results: list[Exception | None] = []
        with self.engine.begin() as conn:
            if sent:
                conn.execute(t.outbox.update().where(t.outbox.c.id.in_(sent)).values(sent_at=sent_at))
            for item in items:
                savepoint = conn.begin_nested()
                try:
                    self._apply_item(conn, item)
                    savepoint.commit()
                    results.append(None)
                except Exception as exc:  # noqa: BLE001 - reported to that item's waiter only
                    savepoint.rollback()
                    results.append(exc)
        return results

    def _apply_item(self, conn: sa.Connection, item: WriteItem) -> None:
        """Activation rows, audit entries and outbox events go out as one ``executemany`` each (an apply
        writes dozens of each; per-statement overhead dominated). Every other effect runs in order; the
        batched tables are only ever appended to or upserted per key, so their relative order is kept."""
        self._fence(conn, item)
        batches: dict[type, list[dict[str, Any]]] = {}
        for effect in item.effects:
            params = self._batched_params.get(type(effect))
            if params is None:
                self._apply_effect(conn, item, effect)
            else:
                batches.setdefault(type(effect), []).append(params(item, effect))
        for effect_type, rows in batches.items():
            conn.execute(self._batched_statements[effect_type], rows)

    def _fence(self, conn: sa.Connection, item: WriteItem) -> None:
        if item.expected_version == 0:
            try:
                with conn.begin_nested():
                    conn.execute(self._sql.fence_insert, {"world_id": item.world_id, "row_version": 1,
                                                          "activation_counter": item.activation_counter})
            except sa.exc.IntegrityError:
                raise StaleWriter(item.world_id) from None
            return
        updated = conn.execute(self._sql.fence_update, {
            "w": item.world_id, "expected": item.expected_version, "next_version": item.expected_version + 1,
            "counter": item.activation_counter}).rowcount
        if updated != 1:
            raise StaleWriter(item.world_id)

    def _apply_effect(self, conn: sa.Connection, item: WriteItem, effect: Effect) -> None:
        self._effect_writers[type(effect)](conn, item, effect)

    def _save_world(self, conn: sa.Connection, item: WriteItem, effect: SaveWorld) -> None:
        r = effect.record
        conn.execute(self._sql.upsert[t.worlds], {
            "id": item.world_id, "record": msgspec.to_builtins(r), "state": r.state, "allow_live": r.allow_live,
            "default_policy_version": r.default_policy_version,
            "created_at": r.created_at or item.created_at, "updated_at": r.updated_at or item.created_at})

    def _remove_world(self, conn: sa.Connection, item: WriteItem, effect: RemoveWorld) -> None:
        for statement in self._sql.remove_world:
            conn.execute(statement, {"w": item.world_id})

    def _save_policy(self, conn: sa.Connection, item: WriteItem, effect: SavePolicy) -> None:
        conn.execute(self._sql.upsert[t.policies], _policy_row(item.world_id, effect.policy))

    def _save_strategies(self, conn: sa.Connection, item: WriteItem, effect: SaveStrategies) -> None:
        wid, strategies = item.world_id, effect.strategies
        if effect.table == "decisions":
            conn.execute(self._sql.upsert[t.decisions], {"world_id": wid, "strategies": strategies})
            return
        conn.execute(self._sql.delete_bindings, {"w": wid})
        if strategies:
            conn.execute(self._sql.insert_bindings, [{"world_id": wid, "strategy_id": x} for x in strategies])

    @staticmethod
    def _activation_row(item: WriteItem, effect: SaveActivation) -> dict[str, Any]:
        return {"world_id": item.world_id, "strategy_id": effect.strategy_id, "side": effect.side,
                "entry": msgspec.to_builtins(effect.entry)}

    def _remove_activation(self, conn: sa.Connection, item: WriteItem, effect: RemoveActivation) -> None:
        conn.execute(self._sql.delete_activation, {"w": item.world_id, "sid": effect.strategy_id, "side": effect.side})

    def _save_run(self, conn: sa.Connection, item: WriteItem, effect: SaveApplyRun) -> None:
        run = effect.run
        conn.execute(self._sql.upsert[t.apply_runs], {
            "world_id": item.world_id, "run_id": run.run_id, "plan_hash": run.plan_hash, "phase": run.phase,
            "record": msgspec.to_builtins(run), "started_at": run.started_at, "updated_at": run.updated_at})

    def _save_ack(self, conn: sa.Connection, item: WriteItem, effect: SaveAck) -> None:
        conn.execute(self._sql.upsert[t.apply_acks], {
            "world_id": item.world_id, "run_id": effect.run_id, "sequence": effect.sequence, "phase": effect.phase,
            "acked_at": effect.acked_at})

    def _save_world_allocation(self, conn: sa.Connection, item: WriteItem, effect: SaveWorldAllocation) -> None:
        conn.execute(self._sql.upsert[t.world_allocations], {"world_id": item.world_id, "record": effect.record})

    def _save_allocation_run(self, conn: sa.Connection, item: WriteItem, effect: SaveAllocationRun) -> None:
        conn.execute(self._sql.upsert[t.allocation_runs], {
            "run_id": effect.run_id, "etag": effect.etag, "record": effect.record, "executed": effect.executed,
            "execution_response": effect.execution_response, "created_at": item.created_at})

    def apply_atomic(self, items: Sequence[WriteItem]) -> None:
        """Several worlds' items in one transaction, all or none (a cross-world allocation run)."""
        try:
            with self.engine.begin() as conn:
                for item in items:
                    self._apply_item(conn, item)
        except sa.exc.DBAPIError as exc:
            raise StorageUnavailable(f"{type(exc.orig).__name__}: {exc.orig}") from exc

    def allocation_run(self, run_id: str) -> dict[str, Any] | None:
        r = t.allocation_runs
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(r).where(r.c.run_id == run_id)).mappings().first()
        return dict(row) if row else None

    def mark_allocation_executed(self, run_id: str, response: Any) -> None:
        r = t.allocation_runs
        with self.engine.begin() as conn:
            conn.execute(r.update().where(r.c.run_id == run_id).values(executed=True, execution_response=response))

    def world_allocations(self, world_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        w = t.world_allocations
        query = sa.select(w.c.world_id, w.c.record)
        if world_ids is not None:
            query = query.where(w.c.world_id.in_(list(world_ids)))
        with self.engine.connect() as conn:
            return {row.world_id: row.record for row in conn.execute(query)}

    def _save_edge(self, conn: sa.Connection, item: WriteItem, effect: SaveEdge) -> None:
        edge = effect.edge
        conn.execute(self._sql.upsert[t.edge_overrides], {"world_id": item.world_id, "src": edge.src,
                                                          "dst": edge.dst, "record": msgspec.to_builtins(edge)})

    def _remove_edge(self, conn: sa.Connection, item: WriteItem, effect: RemoveEdge) -> None:
        conn.execute(self._sql.delete_edge, {"w": item.world_id, "src": effect.src, "dst": effect.dst})

    def _save_node(self, conn: sa.Connection, item: WriteItem, effect: SaveNode) -> None:
        node = effect.node
        conn.execute(self._sql.upsert_node, {"world_id": item.world_id, "node_id": node.node_id,
                                             "execution_domain": node.execution_domain,
                                             "record": msgspec.to_builtins(node)})

    def _remove_node(self, conn: sa.Connection, item: WriteItem, effect: RemoveNode) -> None:
        conn.execute(self._sql.delete_node, {"w": item.world_id, "node": effect.node_id,
                                             "domain": effect.execution_domain})

    def _save_validation(self, conn: sa.Connection, item: WriteItem, effect: SaveValidation) -> None:
        entry = effect.entry
        conn.execute(self._sql.upsert_validation, {
            "world_id": item.world_id, "node_id": entry.node_id, "execution_domain": entry.execution_domain,
            "eval_key": entry.eval_key, "record": msgspec.to_builtins(entry)})

    def _remove_validations(self, conn: sa.Connection, item: WriteItem, effect: RemoveValidations) -> None:
        scope = (effect.node_id is not None, effect.node_id is not None and effect.execution_domain is not None)
        conn.execute(self._sql.delete_validations[scope], {"w": item.world_id, "node": effect.node_id,
                                                            "domain": effect.execution_domain})

    def _remember_command(self, conn: sa.Connection, item: WriteItem, effect: RememberCommand) -> None:
        """A second insert of the same id fails the item: the command was applied concurrently elsewhere."""
        conn.execute(self._sql.insert_command, {
            "world_id": item.world_id, "command_id": effect.command_id, "status": effect.status,
            "reply": msgspec.to_builtins(effect.reply), "created_at": item.created_at,
            "content_hash": effect.content_hash})

    def _save_history(self, conn: sa.Connection, item: WriteItem, effect: SaveHistory) -> None:
        conn.execute(self._sql.upsert[t.history], {
            "world_id": item.world_id, "strategy_id": effect.entry.strategy_id,
            "entry": msgspec.to_builtins(effect.entry)})

    def _save_decision(self, conn: sa.Connection, item: WriteItem, effect: SaveDecision) -> None:
        conn.execute(self._sql.upsert[t.world_decisions], {"world_id": item.world_id,
                                                           "record": msgspec.to_builtins(effect.record)})

    def _record_decision(self, conn: sa.Connection, item: WriteItem, effect: RecordDecision) -> None:
        d = effect.state
        conn.execute(self._sql.insert_decision, {"world_id": item.world_id, "evaluated_at": d.evaluated_at,
                                                 "mode": d.mode, "record": msgspec.to_builtins(d)})

    def decision_history(self, world_id: str, limit: int = 100) -> list[DecisionState]:
        """The newest evaluations first."""
        h = t.decision_history
        query = sa.select(h.c.record).where(h.c.world_id == world_id).order_by(h.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [msgspec.convert(r, DecisionState) for r in conn.execute(query).scalars()]

    @staticmethod
    def _audit_row(item: WriteItem, effect: AuditRecord) -> dict[str, Any]:
        return {"world_id": item.world_id, "event": effect.event, "actor": item.actor,
                "correlation_id": item.correlation_id, "request": effect.request, "result": effect.result,
                "created_at": item.created_at}

    @staticmethod
    def _outbox_row(item: WriteItem, effect: OutboxEvent) -> dict[str, Any]:
        return {"world_id": item.world_id, "topic": effect.topic, "payload": effect.cloudevent,
                "created_at": item.created_at}

    # --- reads -----------------------------------------------------------------------------------

    def load_world(self, world_id: str) -> WorldState:
        try:
            with self.engine.connect() as conn:
                return _load(conn, world_id)
        except sa.exc.DBAPIError as exc:
            raise StorageUnavailable(f"{type(exc.orig).__name__}: {exc.orig}") from exc

    def list_worlds(self) -> list[WorldRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.worlds.c.record).order_by(t.worlds.c.id)).scalars()
            return [msgspec.convert(r, WorldRecord) for r in rows]

    def audit_page(self, world_id: str, after: int, limit: int) -> AuditPage:
        a = t.audit_log
        query = sa.select(a).where(a.c.world_id == world_id, a.c.id > after).order_by(a.c.id).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        entries = [AuditEntry(**dict(r)) for r in rows[:limit]]
        next_after = entries[-1].id if len(rows) > limit else None
        return AuditPage(entries=entries, next_after=next_after)

    def audit_events(self, world_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        a = t.audit_log
        with self.engine.connect() as conn:
            query = sa.select(a.c.event, a.c.result).where(a.c.world_id == world_id).order_by(a.c.id)
            yield from ((row.event, row.result) for row in conn.execute(query))

    def world_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(t.worlds.c.id).order_by(t.worlds.c.id)).scalars())

    def command_reply(self, world_id: str, command_id: str) -> StoredReply | None:
        """The stored outcome of an already applied command id, if any."""
        p = t.processed_commands
        query = sa.select(p.c.status, p.c.reply, p.c.content_hash).where(p.c.world_id == world_id, p.c.command_id == command_id)
        try:
            with self.engine.connect() as conn:
                row = conn.execute(query).first()
        except sa.exc.DBAPIError as exc:
            raise StorageUnavailable(f"{type(exc.orig).__name__}: {exc.orig}") from exc
        return StoredReply(row.status, row.reply, row.content_hash) if row else None

    def worlds_with_open_runs(self) -> list[str]:
        r = t.apply_runs
        query = sa.select(r.c.world_id).where(r.c.phase.not_in(("completed", "rolled_back"))).distinct()
        with self.engine.connect() as conn:
            return sorted(conn.execute(query).scalars())

    def pending_outbox(self, after: int = 0, limit: int = 500) -> list[tuple[int, str, str, dict[str, Any]]]:
        o = t.outbox
        query = sa.select(o.c.id, o.c.world_id, o.c.topic, o.c.payload) \
            .where(o.c.sent_at.is_(None), o.c.id > after).order_by(o.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(query)]  # type: ignore[misc]


def _load(conn: sa.Connection, world_id: str) -> WorldState:
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
