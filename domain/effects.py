"""What a handled command asks storage to do, as plain data.

A handler returns these in order; the SQL writer applies all of one command's effects in one
transaction (a savepoint inside the group commit), guarded by the world's row version.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from messages.activation import ActivationEntry
from messages.apply import ApplyRun, EdgeOverride
from messages.evaluation import EvaluationRun
from messages.decisions import DecisionRecord, DecisionState, HistoryEntry
from messages.errors import Answer
from messages.policies import PolicyInfo
from messages.risk_hub import RiskSnapshot
from messages.worlds import WorldRecord
from messages.wvg import ValidationEntry, WorldNodeRef


class PolicyVersion(PolicyInfo, kw_only=True):
    """One stored policy version: its registry metadata plus the normalised document and its text."""

    document: dict[str, Any]
    text: str


class SaveWorld(msgspec.Struct, tag=True):
    record: WorldRecord


class RemoveWorld(msgspec.Struct, tag=True):
    """Cascade-delete the world's current state; the audit log and etag counters stay."""


class SavePolicy(msgspec.Struct, tag=True):
    policy: PolicyVersion


class SaveStrategies(msgspec.Struct, tag=True):
    table: Literal["bindings", "decisions"]
    strategies: list[str]


class SaveActivation(msgspec.Struct, tag=True):
    strategy_id: str
    side: str
    entry: ActivationEntry


class RemoveActivation(msgspec.Struct, tag=True):
    """Drop one entry (a rollback removing a strategy the run had added)."""

    strategy_id: str
    side: str


class SaveApplyRun(msgspec.Struct, tag=True):
    run: ApplyRun


class SaveAck(msgspec.Struct, tag=True):
    """One Gateway ACK of a run's sequenced event (its own row; the run record is not rewritten)."""

    run_id: str
    sequence: int
    phase: str
    acked_at: str


class SaveEdge(msgspec.Struct, tag=True):
    edge: EdgeOverride


class RemoveEdge(msgspec.Struct, tag=True):
    src: str
    dst: str


class SaveNode(msgspec.Struct, tag=True):
    node: WorldNodeRef


class RemoveNode(msgspec.Struct, tag=True):
    node_id: str
    execution_domain: str


class SaveValidation(msgspec.Struct, tag=True):
    """Replaces the (node, domain) entry: one cached validation per context bucket."""

    entry: ValidationEntry


class RemoveValidations(msgspec.Struct, tag=True):
    """Drop cached validations: one (node, domain), a whole node (no domain) or the whole world (neither)."""

    node_id: str | None = None
    execution_domain: str | None = None


class SaveDecision(msgspec.Struct, tag=True):
    """The world's current decision record (hysteresis state, the reference path's last answer)."""

    record: DecisionRecord


class RecordDecision(msgspec.Struct, tag=True):
    """One evaluation, appended to ``decision_history``."""

    state: DecisionState


class SaveWorldAllocation(msgspec.Struct, tag=True):
    """This world's latest allocation (``GET /allocations``)."""

    record: dict[str, Any]


class SaveAllocationRun(msgspec.Struct, tag=True):
    run_id: str
    etag: str
    record: dict[str, Any]
    executed: bool = False
    execution_response: Any = None


class RememberCommand(msgspec.Struct, tag=True):
    """A command id applied with this outcome: a redelivered command gets the stored reply instead."""

    command_id: str
    result: Answer  # what the first application answered (Result or Refusal)
    reply: Any
    content_hash: str | None = None  # a reuse of the id with other content is refused, not replayed


class SaveEvaluationRun(msgspec.Struct, tag=True):
    """One revision of an evaluation run: appended, never rewritten (the revisions are its history)."""

    run: EvaluationRun


class SaveRiskSnapshot(msgspec.Struct, tag=True):
    """One accepted Risk Hub snapshot (large parts by blob reference): written once, never rewritten."""

    snapshot: RiskSnapshot


class SaveHistory(msgspec.Struct, tag=True):
    entry: HistoryEntry


class AuditRecord(msgspec.Struct, tag=True):
    event: str
    request: dict[str, Any] | None
    result: dict[str, Any]


class OutboxEvent(msgspec.Struct, tag=True):
    """A ControlBus event to relay after commit: a full CloudEvent, keyed by world id."""

    topic: str
    key: str
    cloudevent: dict[str, Any]


Effect = (SaveWorld | RemoveWorld | SavePolicy | SaveStrategies | SaveActivation | RemoveActivation | SaveHistory
          | SaveApplyRun | SaveAck | SaveEdge | SaveWorldAllocation | SaveAllocationRun | RemoveEdge | RememberCommand | AuditRecord | OutboxEvent
          | SaveNode | RemoveNode | SaveValidation | RemoveValidations | SaveDecision | RecordDecision
          | SaveEvaluationRun | SaveRiskSnapshot)
