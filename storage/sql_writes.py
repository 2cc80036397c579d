"""The write half of the SQL system of record: a group of command effects in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from domain.effects import (
    AuditRecord, Effect, OutboxEvent, RecordDecision, RememberCommand, RemoveActivation,
    RemoveEdge, RemoveWorld, SaveAck, SaveActivation, SaveAllocationRun, SaveApplyRun, SaveDecision,
    SaveEdge, SaveHistory, SavePolicy, SaveStrategies, SaveWorldAllocation, SaveWorld,
)
from domain.effects import RemoveNode, RemoveValidations, SaveEvaluationRun, SaveNode, SaveValidation
from storage import schema as t
from storage.evaluation_rows import evaluation_row
from storage.sql_statements import Statements, policy_row
from storage.sql_types import StaleWriter, StorageUnavailable, WriteItem


class SqlWrites:
    """The write half of the SQL store: group commit of world effects."""


    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._sql = Statements(engine.dialect.name)
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
        conn.execute(self._sql.upsert[t.policies], policy_row(item.world_id, effect.policy))

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

    def mark_allocation_executed(self, run_id: str, response: Any) -> None:
        r = t.allocation_runs
        with self.engine.begin() as conn:
            conn.execute(r.update().where(r.c.run_id == run_id).values(executed=True, execution_response=response))

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

    @staticmethod
    def _audit_row(item: WriteItem, effect: AuditRecord) -> dict[str, Any]:
        return {"world_id": item.world_id, "event": effect.event, "actor": item.actor,
                "correlation_id": item.correlation_id, "request": effect.request, "result": effect.result,
                "created_at": item.created_at}

    @staticmethod
    def _outbox_row(item: WriteItem, effect: OutboxEvent) -> dict[str, Any]:
        return {"world_id": item.world_id, "topic": effect.topic, "payload": effect.cloudevent,
                "created_at": item.created_at}
