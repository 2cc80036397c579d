"""A world's in-memory state and the result of handling one command against it."""

from __future__ import annotations

from typing import Any

import msgspec

from domain.effects import Effect, PolicyVersion
from domain.governance import RiskSnapshotStamp
from messages.activation import ActivationEntry
from messages.apply import ApplyRun, EdgeOverride
from messages.decisions import DecisionRecord, HistoryEntry
from messages.errors import Answer, Refusal, Result, not_found
from messages.evaluation import EvaluationRun
from messages.worlds import WorldRecord
from messages.wvg import ValidationEntry, WorldNodeRef


class WorldState(msgspec.Struct, kw_only=True):
    """Everything a WorldActor answers reads from. ``row_version`` fences every durable write;
    ``activation_counter`` only grows (it survives deletion), so activation etags are never reused."""

    world_id: str
    world: WorldRecord | None = None
    row_version: int = 0
    activation_counter: int = 0
    policies: dict[int, PolicyVersion] = {}
    bindings: list[str] = []
    decisions: list[str] = []
    activation: dict[str, dict[str, ActivationEntry]] = {}
    history: dict[str, HistoryEntry] = {}
    decision: DecisionRecord = DecisionRecord()  # the decision engine's state (persisted)
    runs: dict[str, ApplyRun] = {}
    edges: dict[str, EdgeOverride] = {}
    # World View Graph, both keyed node_id -> execution domain -> record (a node's domains are one bucket).
    nodes: dict[str, dict[str, WorldNodeRef]] = {}
    validations: dict[str, dict[str, ValidationEntry]] = {}
    # Evaluation runs: strategy_id -> run_id -> revisions, oldest first (the last is the run).
    evaluations: dict[str, dict[str, list[EvaluationRun]]] = {}
    risk_snapshot: RiskSnapshotStamp | None = None  # the newest accepted Risk Hub snapshot (the live gate)

    def open_run(self) -> ApplyRun | None:
        """At most one run per world is not terminal."""
        return next((run for run in self.runs.values() if run.is_open), None)


class Outcome(msgspec.Struct, kw_only=True):
    """What a handler decided: the next state, what to persist (in order), the caller's reply, and what
    happened (``result``): a ``Result``, or a ``Refusal`` that is still audited (its effects are written)."""

    state: WorldState
    effects: list[Effect]
    reply: Any
    result: Answer = Result.OK

    @property
    def refused(self) -> bool:
        return isinstance(self.result, Refusal)


def require_world(state: WorldState) -> WorldRecord:
    if state.world is None:
        raise not_found("world")
    return state.world
