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


class HistoryRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``SeamlessHistoryRequest``: one metadata record per (world, strategy)."""

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


class HistoryEntry(HistoryRequest, kw_only=True):
    """A stored history record: the request as sent plus when it was received."""

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
