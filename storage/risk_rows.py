"""Risk Hub snapshots in SQL: the row an accepted snapshot writes, the world's newest stamp (loaded with the
world) and the hub's reads. Rows are immutable, so reads need no world serialization: a push is answered
only after its commit."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa

from domain.effects import SaveRiskSnapshot
from domain.governance import RiskSnapshotStamp
from domain.risk_snapshots import order_key, stamp_of
from messages.risk_hub import RiskSnapshot
from storage import schema as t
from storage.sql_types import StorageUnavailable

_r = t.risk_snapshots


def snapshot_row(world_id: str, effect: SaveRiskSnapshot) -> dict[str, Any]:
    s = effect.snapshot
    return {"world_id": world_id, "version": s.version, "order_key": order_key(s.as_of, s.created_at),
            "hash": s.hash, "stage": s.stage.strip().lower()[:64], "actor": s.actor[:256], "created_at": s.created_at,
            "record": msgspec.to_builtins(s)}


def load_latest_stamp(conn: sa.Connection, world_id: str) -> RiskSnapshotStamp | None:
    record = conn.execute(sa.select(_r.c.record).where(_r.c.world_id == world_id)
                          .order_by(_r.c.order_key.desc()).limit(1)).scalar()
    return None if record is None else stamp_of(msgspec.convert(record, RiskSnapshot))


class RiskSnapshotReads:
    """What the hub reads: a version's hash (the conflict rule), one version, the newest first."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _rows(self, query: Any) -> list[RiskSnapshot]:
        try:
            with self.engine.connect() as conn:
                return [msgspec.convert(r, RiskSnapshot) for r in conn.execute(query).scalars()]
        except sa.exc.DBAPIError as exc:
            raise StorageUnavailable(f"{type(exc.orig).__name__}: {exc.orig}") from exc

    def stored(self, world_id: str, version: str) -> RiskSnapshot | None:
        """The snapshot stored under ``version``. Read on every push, inside the world's mailbox. On SQLite a SQLAlchemy transaction begins
        IMMEDIATE (``storage.engine``), so it would queue behind every group commit for the write lock;
        this read runs on the raw autocommit connection instead (a WAL read: no lock, the last commit)."""
        if self.engine.dialect.name == "sqlite":
            return self._sqlite_stored(world_id, version)
        return self._postgres_stored(world_id, version)

    def stored_hash(self, world_id: str, version: str) -> str | None:
        found = self.stored(world_id, version)
        return None if found is None else found.hash

    def _postgres_stored(self, world_id: str, version: str) -> RiskSnapshot | None:
        """One autocommit round trip instead of BEGIN, SELECT and ROLLBACK (about twice the push rate)."""
        raw = self.engine.raw_connection()
        driver = raw.driver_connection
        try:
            driver.autocommit = True  # a checked-out connection is idle: no transaction to end
            row = driver.execute("SELECT record FROM risk_snapshots WHERE world_id = %s AND version = %s",
                                 (world_id, version)).fetchone()
            driver.autocommit = False  # back to the pool as every other connection is
        except Exception as exc:  # noqa: BLE001 - psycopg's errors: the store is unavailable
            raw.invalidate()  # never back to the pool in autocommit
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            raw.close()
        return None if row is None else msgspec.convert(row[0], RiskSnapshot)

    def _sqlite_stored(self, world_id: str, version: str) -> RiskSnapshot | None:
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("SELECT record FROM risk_snapshots WHERE world_id = ? AND version = ?", (world_id, version))
            row = cursor.fetchone()
            cursor.close()
        except Exception as exc:  # noqa: BLE001 - sqlite3's errors: the store is unavailable
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            raw.close()
        return None if row is None else msgspec.json.decode(row[0], type=RiskSnapshot)

    def by_version(self, world_id: str, version: str) -> RiskSnapshot | None:
        found = self._rows(sa.select(_r.c.record).where(_r.c.world_id == world_id, _r.c.version == version))
        return found[0] if found else None

    def newest(self, world_id: str, limit: int, stage: str | None = None, actor: str | None = None,
               as_of_at_most: str | None = None) -> list[RiskSnapshot]:
        """Newest first (by ``as_of``, then ``created_at``); ``as_of_at_most`` is an order-key bound."""
        query = sa.select(_r.c.record).where(_r.c.world_id == world_id)
        if stage is not None:
            query = query.where(_r.c.stage == stage)
        if actor is not None:
            query = query.where(_r.c.actor == actor)
        if as_of_at_most is not None:
            query = query.where(_r.c.order_key <= as_of_at_most)
        return self._rows(query.order_by(_r.c.order_key.desc()).limit(limit))
