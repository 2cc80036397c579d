"""World registry messages: create/update bodies and the world record as served."""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from messages.types import Identifier, PositiveVersion, WorldId, WorldStateName


class WorldCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /worlds``. Server-owned stamps sent by a client are ignored."""

    id: WorldId
    name: str | None = None
    description: str | None = None
    owner: str | None = None
    labels: list[Identifier] = []
    state: WorldStateName = "ACTIVE"
    allow_live: bool = False
    circuit_breaker: bool = False
    default_policy_version: PositiveVersion | None = None
    created_at: str | None = None
    updated_at: str | None = None
    contract_id: str | None = None
    dataset_fingerprint: str | None = None
    resource_policy: str | None = None
    code_version: str | None = None
    metadata: dict[str, Any] = {}


class WorldUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``PUT /worlds/{id}``: only the fields present change (no silent resets)."""

    id: WorldId | UnsetType = UNSET
    name: str | None | UnsetType = UNSET
    description: str | None | UnsetType = UNSET
    owner: str | None | UnsetType = UNSET
    labels: list[Identifier] | UnsetType = UNSET
    state: WorldStateName | UnsetType = UNSET
    allow_live: bool | UnsetType = UNSET
    circuit_breaker: bool | UnsetType = UNSET
    default_policy_version: PositiveVersion | None | UnsetType = UNSET
    created_at: str | None | UnsetType = UNSET
    updated_at: str | None | UnsetType = UNSET
    contract_id: str | None | UnsetType = UNSET
    dataset_fingerprint: str | None | UnsetType = UNSET
    resource_policy: str | None | UnsetType = UNSET
    code_version: str | None | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET


# Fields a client may change with PUT; id and created_at are immutable, updated_at is server-owned.
MUTABLE_WORLD_FIELDS = (
    "name", "description", "owner", "labels", "state", "allow_live", "circuit_breaker",
    "default_policy_version", "contract_id", "dataset_fingerprint", "resource_policy", "code_version",
    "metadata",
)
# Changing any of these invalidates the world's validation cache (reference behaviour).
VALIDATION_CONTEXT_FIELDS = ("contract_id", "dataset_fingerprint", "resource_policy", "code_version")


class WorldRecord(msgspec.Struct, kw_only=True):
    """A world as stored and served by ``GET /worlds/{id}``."""

    id: str
    name: str | None = None
    description: str | None = None
    owner: str | None = None
    labels: list[str] = []
    state: str = "ACTIVE"
    allow_live: bool = False
    circuit_breaker: bool = False
    default_policy_version: int | None = None
    created_at: str | None = None
    updated_at: str | None = None
    contract_id: str | None = None
    dataset_fingerprint: str | None = None
    resource_policy: str | None = None
    code_version: str | None = None
    metadata: dict[str, Any] = {}
    # Server-owned: changed only by an apply's Switch (and a demotion out of live), never by PUT.
    execution_domain: str = "backtest"


class WorldDescription(WorldRecord, kw_only=True):
    """``GET /worlds/{id}/describe``: the world plus its default policy and preset metadata."""

    policy: dict[str, Any] | None = None
    policy_preset: str | None = None
    policy_preset_mode: str | None = None
    policy_preset_version: str | None = None
    policy_overrides: dict[str, float] | None = None
    policy_human: str = "no policy"
