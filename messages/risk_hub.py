"""Risk Signal Hub wire shapes (reference §1.13): the snapshot a producer pushes, the snapshot as stored and
served, and the extended-validation block the worker writes into a world's evaluation runs.

A snapshot is ``{world_id, as_of, version, weights, covariance|covariance_ref, realized_returns|
realized_returns_ref, stress|stress_ref, constraints, provenance, created_at, hash, ttl_sec}``. Large parts
travel inline or as a blob reference (``expand=true`` on a read resolves the references). Covariance keys
are ``"a,b"`` (or ``"a:b"``): the covariance of the returns of ``a`` and ``b``; one of the two orders is
enough.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from messages.command_base import Command
from messages.errors import Refusal
from messages.kinds import internal, mutation, query
from messages.types import Finite

SnapshotVersion = Annotated[str, Meta(min_length=1, max_length=256)]
BlobRef = Annotated[str, Meta(min_length=1, max_length=512)]


class RiskSnapshotIn(msgspec.Struct, kw_only=True):
    """``POST /risk-hub/worlds/{id}/snapshots``. ``ttl_sec`` defaults to the hub's (900 s), at most its
    maximum (86,400 s); ``hash`` is recomputed from the content (a producer's own hash is not trusted)."""

    world_id: str | None = None
    as_of: str
    version: SnapshotVersion
    weights: dict[str, Finite]
    covariance: dict[str, Finite] | None = None
    covariance_ref: BlobRef | None = None
    realized_returns: Any = None
    realized_returns_ref: BlobRef | None = None
    stress: dict[str, Any] | None = None
    stress_ref: BlobRef | None = None
    constraints: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    hash: str | None = None
    ttl_sec: int | None = None
    created_at: str | None = None  # a producer re-sending an old snapshot keeps its original age


class RiskSnapshot(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A snapshot as the hub accepted it (and as every read and the ``risk_snapshot_updated`` event carry it)."""

    world_id: str
    as_of: str
    version: str
    weights: dict[str, float]
    provenance: dict[str, Any] = {}
    created_at: str
    hash: str
    ttl_sec: int
    covariance: dict[str, float] | None = None
    covariance_ref: str | None = None
    realized_returns: Any = None
    realized_returns_ref: str | None = None
    stress: dict[str, Any] | None = None
    stress_ref: str | None = None
    constraints: dict[str, Any] | None = None

    @property
    def stage(self) -> str:
        return str(self.provenance.get("stage") or "unknown")

    @property
    def actor(self) -> str:
        return str(self.provenance.get("actor") or "")


class RiskSnapshotList(msgspec.Struct, kw_only=True):
    snapshots: list[RiskSnapshot]


class PortfolioRisk(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Parametric (normal) risk of one weight vector: ``var_99 = z_0.99 * sigma``, ``es_99 = sigma *
    phi(z_0.99) / 0.01`` with ``sigma = sqrt(w' C w)``; both are positive loss fractions."""

    var_99: float
    es_99: float
    sigma: float


class IncrementalRisk(msgspec.Struct, kw_only=True):
    """What adding one candidate at ``candidate_weight`` (the rest scaled by ``1 - candidate_weight``) does
    to the portfolio's VaR/ES."""

    candidate_weight: float
    incremental_var_99: float
    incremental_es_99: float


class StressResult(msgspec.Struct, kw_only=True):
    """One scenario's portfolio loss: ``pnl = sum(w_i * shock_i)``; ``loss = max(0, -pnl)``."""

    scenario: str
    pnl: float
    loss: float


class ExtendedValidation(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The evaluation run's ``validation.extended_*`` block, from one risk snapshot."""

    snapshot_version: str
    snapshot_hash: str
    snapshot_as_of: str  # the block depends on the snapshot only: a re-delivered event recomputes it equal
    baseline: PortfolioRisk | None = None
    incremental: IncrementalRisk | None = None
    stress: list[StressResult] = []
    status: str = "pass"  # "skipped" when the snapshot has no covariance for the candidate
    reason: str | None = None


# --- the hub's commands (unions in ``messages.commands``) ---------------------------------------------
# Served by the hub actor (``actors.risk_hub``): a push is validated and its large parts stored there,
# then the world's actor accepts it (``StoreRiskSnapshot``), so the version rule, the stored row and the
# ``risk_snapshot_updated`` event serialize with the world's other writes. Reads come from the immutable
# rows. A Gateway pushes with its service token (whatever its ``auth.service_role``); other callers need
# ``operator`` on the world.


@mutation("operator", service=True, refusals=(Refusal.UNPROCESSABLE,))
class PushRiskSnapshot(Command, tag="push_risk_snapshot"):
    body: RiskSnapshotIn
    producer: Annotated[str, Meta(min_length=1, max_length=256)]  # ``X-Actor``: provenance.actor
    stage: Annotated[str, Meta(min_length=1, max_length=64)]  # ``X-Stage``: provenance.stage


@internal()
class StoreRiskSnapshot(Command, tag="store_risk_snapshot"):
    """From the hub to the world: accept this validated snapshot (large parts already by reference)."""

    snapshot: RiskSnapshot


@internal()
class RecordExtendedValidation(Command, tag="record_extended_validation"):
    """From the extended-validation worker: write each run's ``validation.extended_*`` block (a new revision
    of each run whose block changed). ``blocks``: strategy_id -> the block."""

    snapshot_version: str
    blocks: dict[str, dict[str, Any]]


@query(refusals=(Refusal.UNPROCESSABLE,))
class LookupRiskSnapshot(Command, tag="lookup_risk_snapshot"):
    version: SnapshotVersion | None = None
    as_of: str | None = None  # the newest snapshot whose as_of is at most this
    expand: bool = False


@query()
class LatestRiskSnapshot(Command, tag="latest_risk_snapshot"):
    stage: str | None = None
    producer: str | None = None  # ``?actor=``
    limit: Annotated[int, Meta(ge=1, le=1000)] = 50
    expand: bool = False


@query()
class ListRiskSnapshots(Command, tag="list_risk_snapshots"):
    limit: Annotated[int, Meta(ge=1, le=1000)] = 10
    stage: str | None = None
    producer: str | None = None
    expand: bool = False


RISK_HUB_KINDS = (PushRiskSnapshot, LookupRiskSnapshot, LatestRiskSnapshot, ListRiskSnapshots)
