"""Risk Hub blob stores: large snapshot parts (covariance, realized returns, stress) by content address.

One contract, two homes: SQL (``risk_blobs``; dev, and anywhere without Redis) and Redis (prod,
``<prefix>risk-blobs:<ref>``; ``storage.redis_stores``). A ref is ``blob:sha256:<hex>`` of the part's
canonical JSON, so writing the same part twice is harmless and a ref never names two payloads. ``get``
answers ``None`` for an unknown ref.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from domain.timefmt import iso_z
from messages.risk_hub import RiskSnapshot
from storage import schema as t
from storage.sql_types import StorageUnavailable


class BlobStore(Protocol):
    def put_many(self, blobs: dict[str, Any]) -> None: ...

    def get(self, ref: str) -> Any | None: ...


class LatestCache(Protocol):
    """The latest snapshot per world, kept beside SQL (``storage.redis_stores.RedisLatestCache``)."""

    def put(self, snapshot: RiskSnapshot, order: str, ttl_s: int) -> bool: ...

    def get(self, world_id: str) -> RiskSnapshot | None: ...


class SqlBlobStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        insert = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert
        self._insert = insert(t.risk_blobs).on_conflict_do_nothing(index_elements=["ref"])

    def put_many(self, blobs: dict[str, Any]) -> None:
        if not blobs:
            return
        now = iso_z(datetime.now(timezone.utc))
        rows = [{"ref": ref, "payload": payload, "created_at": now} for ref, payload in blobs.items()]
        try:
            with self.engine.begin() as conn:
                conn.execute(self._insert, rows)
        except sa.exc.DBAPIError as exc:
            raise StorageUnavailable(f"{type(exc.orig).__name__}: {exc.orig}") from exc

    def get(self, ref: str) -> Any | None:
        query = sa.select(t.risk_blobs.c.payload).where(t.risk_blobs.c.ref == ref)
        try:
            with self.engine.connect() as conn:
                return conn.execute(query).scalar()
        except sa.exc.DBAPIError as exc:
            raise StorageUnavailable(f"{type(exc.orig).__name__}: {exc.orig}") from exc
