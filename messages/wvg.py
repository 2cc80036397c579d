"""World View Graph messages: node references, edge overrides and the validation cache (reference §1.1, §1.7).

Execution domains arrive as free text (aliases such as ``prod`` or ``paper`` are accepted) and are
normalised by ``domain.domains``; an unknown one is refused there with 422, for HTTP and Kafka alike.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from messages.types import Identifier

NodeStatus = Literal["unknown", "validating", "valid", "invalid", "running", "paused", "stopped", "archived"]
ValidationResult = Literal["valid", "invalid", "warning"]
DomainText = Annotated[str, Meta(max_length=32, description="backtest|dryrun|live|shadow or an alias")]
# Context components are hashed, never used as keys or headers: any text, bounded.
ContextText = Annotated[str, Meta(max_length=1024)]
Reason = Annotated[str, Meta(max_length=1024)]


class WorldNodeUpsertRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``PUT /worlds/{id}/nodes/{node_id}``; fields left out keep their stored value."""

    status: NodeStatus
    execution_domain: DomainText | None = None
    last_eval_key: Annotated[str, Meta(max_length=256)] | None | UnsetType = UNSET
    annotations: dict[str, Any] | UnsetType = UNSET


class WorldNodeRef(msgspec.Struct, kw_only=True):
    world_id: str
    node_id: str
    execution_domain: str
    status: str
    last_eval_key: str | None = None
    annotations: dict[str, Any] = {}


class EdgeOverrideUpsertRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``PUT /worlds/{id}/edges/{src}/{dst}``. Leaving ``reason`` out keeps the stored one (the
    reference's persistent backend cleared it); ``null`` clears it."""

    active: bool
    reason: Reason | None | UnsetType = UNSET


class EdgeOverrideOut(msgspec.Struct, kw_only=True):
    world_id: str
    src_node_id: str
    dst_node_id: str
    active: bool
    reason: str | None
    updated_at: str | None


class ValidationContext(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The seven EvalKey components, less the world id (which comes from the path)."""

    node_id: Identifier
    execution_domain: DomainText
    contract_id: ContextText
    dataset_fingerprint: ContextText
    code_version: ContextText
    resource_policy: ContextText


class ValidationStoreRequest(ValidationContext, kw_only=True):
    result: ValidationResult
    metrics: dict[str, Any]
    timestamp: Annotated[str, Meta(max_length=64)] | None = None


class ValidationEntry(msgspec.Struct, kw_only=True):
    """One cached validation, as stored: one per (world, node, domain)."""

    eval_key: str
    node_id: str
    execution_domain: str
    contract_id: str
    dataset_fingerprint: str
    code_version: str
    resource_policy: str
    result: str
    metrics: dict[str, Any] = {}
    timestamp: str


class ValidationCacheResponse(msgspec.Struct, kw_only=True):
    cached: bool
    eval_key: str | None = None
    result: str | None = None
    metrics: dict[str, Any] | None = None
    timestamp: str | None = None


class FailClosedViolation(msgspec.Struct, kw_only=True):
    """A high-tier, client-critical world whose validation does not fail closed (``<unset>``: not declared)."""

    world_id: str
    on_error: str
    on_missing_metric: str


class ValidationInvariantsReport(msgspec.Struct, kw_only=True):
    """``GET /worlds/{id}/validations/invariants`` (reference ``ValidationInvariantsReport``): ``ok`` is true
    when every list is empty."""

    ok: bool
    live_status_failures: list[dict[str, Any]] = []
    live_policy_version_mismatches: list[dict[str, Any]] = []
    fail_closed_violations: list[FailClosedViolation] = []
    approved_overrides: list[dict[str, Any]] = []
    validation_health_gaps: list[dict[str, Any]] = []
