"""Audit log entries as served by ``GET /worlds/{id}/audit``."""

from __future__ import annotations

from typing import Any

import msgspec


class AuditEntry(msgspec.Struct, kw_only=True):
    id: int
    world_id: str
    event: str
    actor: str | None
    correlation_id: str | None
    created_at: str
    request: dict[str, Any] | None
    result: dict[str, Any]


class AuditPage(msgspec.Struct, kw_only=True):
    entries: list[AuditEntry]
    next_after: int | None
