"""Each effect kind as the statements and parameters that write it: ``(statement, params)`` pairs, in order.

Nothing here touches a connection; ``storage.sql_writes`` runs the pairs of a whole batch as few
``executemany`` calls as their order allows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from domain.effects import (
    AuditRecord, Effect, OutboxEvent, RecordDecision, RememberCommand, RemoveActivation, RemoveEdge,
    RemoveNode, RemoveValidations, RemoveWorld, SaveAck, SaveActivation, SaveAllocationRun, SaveApplyRun,
    SaveDecision, SaveEdge, SaveEvaluationRun, SaveHistory, SaveNode, SavePolicy, SaveRiskSnapshot, SaveStrategies,
    SaveValidation, SaveWorld, SaveWorldAllocation,
)
from storage import schema as t
from storage.evaluation_rows import evaluation_row
from storage.risk_rows import snapshot_row
from storage.sql_statements import Statements, policy_row
from storage.sql_types import WriteItem

Pair = tuple[Any, dict[str, Any]]
_to = msgspec.to_builtins


class EffectRows:
    """``rows(item, effect)``: the pairs one effect writes."""

    def __init__(self, sql: Statements) -> None:
        self.sql = sql
        u = sql.upsert
        one: dict[type, tuple[Any, Callable[[WriteItem, Any], dict[str, Any]]]] = {
            SaveActivation: (u[t.activations], _activation), AuditRecord: (sql.insert_audit, _audit),
            OutboxEvent: (sql.insert_outbox_returning, _outbox), SaveWorld: (u[t.worlds], _world),
            SavePolicy: (u[t.policies], lambda item, e: policy_row(item.world_id, e.policy)),
            SaveHistory: (u[t.history], _history), SaveApplyRun: (u[t.apply_runs], _run),
            SaveAck: (u[t.apply_acks], _ack), RememberCommand: (sql.insert_command, _command),
            SaveWorldAllocation: (u[t.world_allocations], _world_allocation),
            SaveAllocationRun: (u[t.allocation_runs], _allocation_run),
            SaveDecision: (u[t.world_decisions], lambda item, e: {"world_id": item.world_id,
                                                                 "record": _to(e.record)}),
            RecordDecision: (sql.insert_decision, _decision), SaveEdge: (u[t.edge_overrides], _edge),
            RemoveEdge: (sql.delete_edge, lambda item, e: {"w": item.world_id, "src": e.src, "dst": e.dst}),
            RemoveActivation: (sql.delete_activation, lambda item, e: {"w": item.world_id, "sid": e.strategy_id,
                                                                       "side": e.side}),
            SaveNode: (sql.upsert_node, _node), SaveValidation: (sql.upsert_validation, _validation),
            RemoveNode: (sql.delete_node, lambda item, e: {"w": item.world_id, "node": e.node_id,
                                                           "domain": e.execution_domain}),
            SaveEvaluationRun: (t.evaluation_runs.insert(), lambda item, e: evaluation_row(item.world_id, e)),
            SaveRiskSnapshot: (t.risk_snapshots.insert(), lambda item, e: snapshot_row(item.world_id, e)),
        }
        self._one = one
        self._many: dict[type, Callable[[WriteItem, Any], list[Pair]]] = {
            RemoveWorld: self._remove_world, SaveStrategies: self._strategies,
            RemoveValidations: self._remove_validations,
        }

    def rows(self, item: WriteItem, effect: Effect) -> list[Pair]:
        found = self._one.get(type(effect))
        if found is not None:
            statement, params = found
            return [(statement, params(item, effect))]
        return self._many[type(effect)](item, effect)

    def _remove_world(self, item: WriteItem, effect: RemoveWorld) -> list[Pair]:
        return [(statement, {"w": item.world_id}) for statement in self.sql.remove_world]

    def _strategies(self, item: WriteItem, effect: SaveStrategies) -> list[Pair]:
        wid, strategies = item.world_id, effect.strategies
        if effect.table == "decisions":
            return [(self.sql.upsert[t.decisions], {"world_id": wid, "strategies": strategies})]
        return [(self.sql.delete_bindings, {"w": wid}),
                *((self.sql.insert_bindings, {"world_id": wid, "strategy_id": x}) for x in strategies)]

    def _remove_validations(self, item: WriteItem, effect: RemoveValidations) -> list[Pair]:
        scope = (effect.node_id is not None, effect.node_id is not None and effect.execution_domain is not None)
        return [(self.sql.delete_validations[scope], {"w": item.world_id, "node": effect.node_id,
                                                      "domain": effect.execution_domain})]


def _activation(item: WriteItem, e: SaveActivation) -> dict[str, Any]:
    return {"world_id": item.world_id, "strategy_id": e.strategy_id, "side": e.side, "entry": _to(e.entry)}


def _audit(item: WriteItem, e: AuditRecord) -> dict[str, Any]:
    return {"world_id": item.world_id, "event": e.event, "actor": item.actor, "correlation_id": item.correlation_id,
            "request": e.request, "result": e.result, "created_at": item.created_at}


def _outbox(item: WriteItem, e: OutboxEvent) -> dict[str, Any]:
    return {"world_id": item.world_id, "topic": e.topic, "payload": e.cloudevent, "created_at": item.created_at}


def _world(item: WriteItem, e: SaveWorld) -> dict[str, Any]:
    r = e.record
    return {"id": item.world_id, "record": _to(r), "state": r.state, "allow_live": r.allow_live,
            "default_policy_version": r.default_policy_version,
            "created_at": r.created_at or item.created_at, "updated_at": r.updated_at or item.created_at}


def _history(item: WriteItem, e: SaveHistory) -> dict[str, Any]:
    return {"world_id": item.world_id, "strategy_id": e.entry.strategy_id, "entry": _to(e.entry)}


def _run(item: WriteItem, e: SaveApplyRun) -> dict[str, Any]:
    run = e.run
    return {"world_id": item.world_id, "run_id": run.run_id, "plan_hash": run.plan_hash, "phase": run.phase,
            "record": _to(run), "started_at": run.started_at, "updated_at": run.updated_at}


def _ack(item: WriteItem, e: SaveAck) -> dict[str, Any]:
    return {"world_id": item.world_id, "run_id": e.run_id, "sequence": e.sequence, "phase": e.phase,
            "acked_at": e.acked_at}


def _command(item: WriteItem, e: RememberCommand) -> dict[str, Any]:
    """A second insert of the same id fails the item: the command was applied concurrently elsewhere."""
    return {"world_id": item.world_id, "command_id": e.command_id, "outcome": e.result.value, "reply": _to(e.reply),
            "created_at": item.created_at, "content_hash": e.content_hash}


def _world_allocation(item: WriteItem, e: SaveWorldAllocation) -> dict[str, Any]:
    return {"world_id": item.world_id, "record": e.record}


def _allocation_run(item: WriteItem, e: SaveAllocationRun) -> dict[str, Any]:
    return {"run_id": e.run_id, "etag": e.etag, "record": e.record, "executed": e.executed,
            "execution_response": e.execution_response, "created_at": item.created_at}


def _decision(item: WriteItem, e: RecordDecision) -> dict[str, Any]:
    d = e.state
    return {"world_id": item.world_id, "evaluated_at": d.evaluated_at, "mode": d.mode, "record": _to(d)}


def _edge(item: WriteItem, e: SaveEdge) -> dict[str, Any]:
    edge = e.edge
    return {"world_id": item.world_id, "src": edge.src, "dst": edge.dst, "record": _to(edge)}


def _node(item: WriteItem, e: SaveNode) -> dict[str, Any]:
    node = e.node
    return {"world_id": item.world_id, "node_id": node.node_id, "execution_domain": node.execution_domain,
            "record": _to(node)}


def _validation(item: WriteItem, e: SaveValidation) -> dict[str, Any]:
    entry = e.entry
    return {"world_id": item.world_id, "node_id": entry.node_id, "execution_domain": entry.execution_domain,
            "eval_key": entry.eval_key, "record": _to(entry)}
