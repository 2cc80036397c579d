"""Decision envelope and the history metadata that feeds ``/decide``."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from messages.types import Identifier


class HistoryArtifact(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    dataset_fingerprint: str | None = None
    as_of: str | None = None
    rows: int | None = None
    uri: str | None = None


class _HistoryRecord(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The fields a history record keeps: what the client sent, without the forwarding envelope."""

    strategy_id: Identifier
    node_id: Identifier
    interval: Annotated[int, Meta(gt=0)]
    rows: Annotated[int, Meta(ge=0)] | None = None
    coverage_bounds: tuple[int, int] | None = None
    conformance_flags: dict[str, int] | None = None
    conformance_warnings: list[str] | None = None
    dataset_fingerprint: str | None = None
    as_of: str | None = None
    artifact: HistoryArtifact | None = None
    # Evidence for a policy's decision section (seed §4); all optional, so reference clients are unaffected.
    metrics: dict[str, float] | None = None  # named metrics the gates, score, sample and exposure read
    data_end: str | None = None  # end of the data behind the metrics (else coverage_bounds[1], else as_of)
    correlations: dict[str, float] | None = None  # correlation with other strategies of the world, by id
    execution_domain: str | None = None  # the domain the data was produced in, normalised (domain.domains)


class HistoryRequest(_HistoryRecord, kw_only=True):
    """``SeamlessHistoryRequest``: one metadata record per (world, strategy).

    The reference Gateway adds ``world_id``, ``execution_domain`` and ``updated_at`` when it forwards the
    metadata; all three are accepted (any other unknown field is still a 422). ``world_id`` must name the
    world of the path. ``updated_at`` is the sender's clock: it is checked to be a timestamp and then
    dropped, because the stored ``updated_at`` is always the server's receive time (it ranks entries for
    ``/decide`` and is reported as ``history_updated_at``, so a client clock must not set it).
    """

    world_id: str | None = None
    updated_at: str | None = None


class HistoryEntry(_HistoryRecord, kw_only=True):
    """A stored history record: the request as sent (without ``world_id``) plus when it was received."""

    updated_at: str


class HistoryOut(msgspec.Struct):
    entries: list[HistoryEntry]
    latest: HistoryEntry | None


class DecisionEnvelope(msgspec.Struct, kw_only=True):
    world_id: str
    policy_version: int
    effective_mode: str
    reason: str
    as_of: str
    ttl: str
    etag: str
    dataset_fingerprint: str | None = None
    coverage_bounds: tuple[int, int] | None = None
    conformance_flags: dict[str, int] | None = None
    conformance_warnings: list[str] | None = None
    history_updated_at: str | None = None
    rows: int | None = None
    artifact: HistoryArtifact | None = None


class DecisionTransition(msgspec.Struct, frozen=True):
    """The decided mode from ``at`` on (``/decide?as_of=`` in the past reads these)."""

    mode: str
    at: str


class DecisionState(msgspec.Struct, frozen=True, kw_only=True):
    """A world's decision as of its last evaluation, with its hysteresis counters. Persisted with every
    evaluation, so a restart, or another instance, continues the same streaks."""

    mode: str
    since: str | None  # when ``mode`` was entered; None before the first transition
    pass_streak: int = 0
    fail_streak: int = 0
    verdict: str  # pass | fail | missing
    tokens: list[str]
    hysteresis: str  # promoted | demoted | pending_promotion | pending_demotion | dwell | steady
    score: float | None = None
    evaluated_at: str
    policy_version: int
    transitions: list[DecisionTransition] = []


class LastDecision(msgspec.Struct, frozen=True):
    """The reference's hysteresis input for a world without a decision section: the last answer given."""

    effective_mode: str
    dataset_fingerprint: str | None


class DecisionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What ``world_decisions`` stores for a world."""

    engine: DecisionState | None = None
    last: LastDecision | None = None


class HysteresisOut(msgspec.Struct, kw_only=True):
    status: str
    decided_mode: str
    since: str | None
    pass_streak: int
    fail_streak: int
    promote_after: int
    demote_after: int
    min_dwell_s: float
    evaluated_at: str
    verdict: str


class PolicyDecisionEnvelope(DecisionEnvelope, kw_only=True):
    """The envelope of a world whose policy has a decision section: the reference's fields, plus the
    score and hysteresis state behind the answer (extra keys a reference Gateway ignores)."""

    score: float | None = None
    hysteresis: HysteresisOut | None = None


class DecisionHistoryOut(msgspec.Struct):
    """``GET /worlds/{id}/decide/history``: evaluations, newest first."""

    entries: list[DecisionState]
