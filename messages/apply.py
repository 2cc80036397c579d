"""Evaluate and apply: request bodies, the apply acknowledgement, the stored run record and Gateway ACKs."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from messages.activation import ActivationEntry, ActivationEnvelope
from messages.decisions import DecisionEnvelope
from messages.evaluation import EvaluationOverride
from messages.types import Finite, Identifier, Weight


class ApplyPlan(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An explicit plan: the new active set is ``(previous - deactivate) | activate``. ``weights`` gives
    strategies activated for the first time a weight other than 1.0."""

    activate: list[Identifier] = []
    deactivate: list[Identifier] = []
    weights: dict[str, Weight] = {}


class StrategySeries(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """One strategy's performance series (reference ``StrategySeries``): a cumulative ``equity`` or ``pnl``
    curve, or per-period ``returns``. Evaluate and apply derive linearity and alpha metrics from it
    (``domain.series_metrics``). Unset fields are omitted when encoded, so an apply's plan hash is the one
    it had while ``series`` was an untyped mapping."""

    equity: list[Finite] | None = None
    pnl: list[Finite] | None = None
    returns: list[Finite] | None = None


class EvaluateRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /worlds/{id}/evaluate`` (reference ``EvaluateRequest``).

    ``correlations`` is a nested mapping ``{"s1": {"s2": 0.9}}`` or a list of ``{"a", "b", "value"}``
    objects: the reference's tuple-keyed form could not be sent as JSON at all. ``series`` maps strategy ids
    to ``StrategySeries``; the metrics derived from them are merged over ``metrics`` before selection.
    """

    metrics: dict[str, dict[str, Any]] = {}
    previous: list[Identifier] | None = None
    correlations: dict[str, dict[str, float]] | list[dict[str, Any]] | None = None
    policy: dict[str, Any] | str | None = None
    series: dict[str, StrategySeries] | None = None
    run_id: Identifier | None = None
    stage: str | None = None
    risk_tier: str | None = None
    strategy_id: str | None = None
    model_card_version: str | None = None
    override: EvaluationOverride | None = None


class CohortEvaluateRequest(EvaluateRequest, kw_only=True):
    """``POST /worlds/{id}/evaluate-cohort``: one evaluation of many strategies under one campaign id.
    ``candidates`` defaults to the sorted keys of ``metrics``; every candidate needs metrics."""

    campaign_id: Identifier
    candidates: list[Identifier] | None = None


class CohortEvaluateResponse(msgspec.Struct, kw_only=True):
    campaign_id: str
    run_id: str
    candidates: list[str]
    active: list[str]
    evaluation_runs: dict[str, str]


class ApplyRequest(EvaluateRequest, kw_only=True):
    """Body of ``POST /worlds/{id}/apply``: an explicit ``plan`` or a policy selection over ``metrics``;
    ``gating_policy`` is a mapping or YAML/JSON text, optionally wrapped in a ``gating_policy`` key."""

    run_id: Identifier
    plan: ApplyPlan | None = None
    gating_policy: dict[str, Any] | str | None = None


class EvaluateResponse(msgspec.Struct, kw_only=True):
    active: list[str]
    evaluation_run_id: str | None = None
    evaluation_run_url: str | None = None
    ruleset_hash: str | None = None
    notes: list[str] = []
    # ``SubmitResult.ws``: the world's decision and the strategy's activation as they stand.
    decision: DecisionEnvelope | None = None
    activation: ActivationEnvelope | None = None


class ApplyAck(msgspec.Struct, kw_only=True):
    """The reference's apply answer. ``phase`` is ``completed``, ``rolled_back``, a running phase, or
    ``awaiting_ack`` when Gateways have not acknowledged within the gap timeout. ``downgraded`` (only
    present when set, so the reference's shape is unchanged) says why the run went compute-only."""

    ok: bool = True
    run_id: str
    active: list[str]
    phase: str
    downgraded: str | msgspec.UnsetType = msgspec.UNSET


RunPhase = Literal["freezing", "switching", "unfreezing", "completed", "rolled_back"]
AckPhase = Literal["freeze", "unfreeze"]
TERMINAL_PHASES = ("completed", "rolled_back")


class RunEvent(msgspec.Struct, kw_only=True):
    """One sequenced ``activation_updated`` event of a run: kept whole so it can be re-sent verbatim."""

    sequence: int
    phase: AckPhase
    strategy_id: str
    side: str
    etag: str
    acked: bool = False
    acked_at: str | None = None
    topic: str
    cloudevent: dict[str, Any]


class EdgeOverride(msgspec.Struct, kw_only=True):
    src: str
    dst: str
    active: bool
    reason: str | None = None
    updated_at: str


class ApplyRun(msgspec.Struct, kw_only=True):
    """One apply run, persisted after every transition (table ``apply_runs``)."""

    world_id: str
    run_id: str
    plan_hash: str
    phase: RunPhase
    target: list[str]
    previous: list[str]
    snapshot: dict[str, dict[str, ActivationEntry]]
    weights: dict[str, float] = {}
    policy_version: int | None = None
    gating: dict[str, Any] | None = None
    execution_domain: str | None = None
    dataset_fingerprint: str | None = None
    downgraded: str | None = None  # why the gating policy reduced the run to compute-only
    pre_promotion_failure: str | None = None  # evidence broke the policy's limits: Switch rolls back
    freeze_timeout_ms: int | None = None  # the gating policy's bound on the time spent in freezing
    edges_before: dict[str, EdgeOverride | None] = {}
    # The world's domain and pinned fingerprint before Switch (None: not switched yet), for the rollback.
    domain_before: str | None = None
    fingerprint_before: str | None = None
    sequence: int = 0
    events: list[RunEvent] = []
    started_at: str
    updated_at: str
    deadline: str
    waiting_since: str | None = None
    held: bool = False
    next_resend_at: str | None = None
    resends: int = 0
    error: str | None = None

    @property
    def is_open(self) -> bool:
        return self.phase not in TERMINAL_PHASES


class RunEventOut(msgspec.Struct, kw_only=True):
    sequence: int
    phase: str
    strategy_id: str
    side: str
    etag: str
    acked: bool
    acked_at: str | None


class ApplyRunOut(msgspec.Struct, kw_only=True):
    """``GET /worlds/{id}/apply/{run_id}``: a run's phase, its sequenced events and their ACK state."""

    world_id: str
    run_id: str
    phase: str
    state: str
    active: list[str]
    previous: list[str]
    plan_hash: str
    sequence: int
    awaiting: str | None
    events: list[RunEventOut]
    execution_domain: str | None
    dataset_fingerprint: str | None
    started_at: str
    updated_at: str
    deadline: str
    resends: int
    error: str | None
    downgraded: str | None = None


class ActivationAckData(msgspec.Struct, kw_only=True):
    """``data`` of a Gateway's ``activation_ack`` CloudEvent (reference §3.5); extra fields are ignored."""

    world_id: str
    run_id: str
    sequence: int
    phase: str
    etag: str | None = None
    ts: str | None = None
    ack_ts: str | None = None
    idempotency_key: str | None = None
    version: int = 1
    type: str = "ActivationAck"


class ActivationAckEvent(msgspec.Struct, kw_only=True):
    type: str = "activation_ack"
    data: ActivationAckData


activation_ack_decoder = msgspec.json.Decoder(ActivationAckEvent)
