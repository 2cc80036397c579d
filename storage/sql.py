"""The SQL system of record: load a world's state, apply a group of command effects, read the audit log.

The writes live in ``storage.sql_writes``, the world loader in ``storage.sql_loads``; this module is the
store the actors hold, and the names they import.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from domain.idempotency import StoredReply
from storage.remembered import stored_answer
from domain.state import WorldState
from messages.audit import AuditEntry, AuditPage
from messages.decisions import DecisionState
from messages.worlds import WorldRecord
from storage import schema as t
from storage.engine import READ_ONLY
from storage.epochs import take_partition
from storage.sql_loads import load_world_state
from storage.sql_types import StaleOwner, StaleWriter, StorageUnavailable, WriteItem
from storage.sql_writes import OutboxRow, SqlWrites

__all__ = ["OutboxRow", "SqlStore", "StaleOwner", "StaleWriter", "StorageUnavailable", "WriteItem"]


class SqlStore(SqlWrites):
    """Writes (group commit) from ``SqlWrites``; the reads the actors and edges need."""

    # --- cluster mode: the partitions this instance owns -----------------------------------------

    def take_partition(self, partition: int, owner: str) -> int:
        """Take ``partition`` for ``owner`` (this instance's advertise URL) under a new epoch and hold it:
        from now on this instance's writes of its worlds commit, and any former owner's are refused."""
        if self.owner_epochs is None:
            raise RuntimeError("take_partition needs cluster mode (a store built with owner_epochs)")
        epoch = take_partition(self.engine, partition, owner)
        self.owner_epochs.hold(partition, epoch)
        return epoch

    def release_partition(self, partition: int) -> None:
        """Stop writing ``partition``'s worlds (revoked): their writes are refused here from now on."""
        if self.owner_epochs is not None:
            self.owner_epochs.release(partition)

    def allocation_runs(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored runs among ``run_ids``, by run id (one query for a batch of upserts)."""
        r = t.allocation_runs
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(r).where(r.c.run_id.in_(list(run_ids)))).mappings().all()
        return {row["run_id"]: dict(row) for row in rows}

    def world_allocations(self, world_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        w = t.world_allocations
        query = sa.select(w.c.world_id, w.c.record)
        if world_ids is not None:
            query = query.where(w.c.world_id.in_(list(world_ids)))
        with self.engine.connect() as conn:
            return {row.world_id: row.record for row in conn.execute(query)}

    def decision_history(self, world_id: str, limit: int = 100) -> list[DecisionState]:
        """The newest evaluations first."""
        h = t.decision_history
        query = sa.select(h.c.record).where(h.c.world_id == world_id).order_by(h.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [msgspec.convert(r, DecisionState) for r in conn.execute(query).scalars()]

    # --- reads -----------------------------------------------------------------------------------

    def load_world(self, world_id: str) -> WorldState:
        try:
            with self.engine.connect() as conn:
                return load_world_state(conn, world_id)
        except sa.exc.DBAPIError as exc:
            raise StorageUnavailable(f"{type(exc.orig).__name__}: {exc.orig}") from exc

    def list_worlds(self) -> list[WorldRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.worlds.c.record).order_by(t.worlds.c.id)).scalars()
            return [msgspec.convert(r, WorldRecord) for r in rows]

    def audit_page(self, world_id: str, after: int, limit: int) -> AuditPage:
        a = t.audit_log
        query = sa.select(a).where(a.c.world_id == world_id, a.c.id > after).order_by(a.c.id).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        entries = [AuditEntry(**dict(r)) for r in rows[:limit]]
        next_after = entries[-1].id if len(rows) > limit else None
        return AuditPage(entries=entries, next_after=next_after)

    def audit_events(self, world_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        a = t.audit_log
        with self.engine.connect() as conn:
            query = sa.select(a.c.event, a.c.result).where(a.c.world_id == world_id).order_by(a.c.id)
            yield from ((row.event, row.result) for row in conn.execute(query))

    def world_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(t.worlds.c.id).order_by(t.worlds.c.id)).scalars())

    def command_reply(self, world_id: str, command_id: str) -> StoredReply | None:
        """The stored outcome of an already applied command id, if any (every Kafka command has an id, so
        this runs once per Kafka command: it must not take the writer's lock)."""
        p = t.processed_commands
        query = sa.select(p.c.outcome, p.c.status, p.c.reply, p.c.content_hash).where(
            p.c.world_id == world_id, p.c.command_id == command_id)
        try:
            with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
                row = conn.execute(query).first()
        except sa.exc.DBAPIError as exc:
            raise StorageUnavailable(f"{type(exc.orig).__name__}: {exc.orig}") from exc
        if row is None:
            return None
        return StoredReply(stored_answer(row.outcome, row.status), row.reply, row.content_hash)

    def worlds_with_open_runs(self) -> list[str]:
        r = t.apply_runs
        query = sa.select(r.c.world_id).where(r.c.phase.not_in(("completed", "rolled_back"))).distinct()
        with self.engine.connect() as conn:
            return sorted(conn.execute(query).scalars())

    def pending_outbox(self, after: int = 0, limit: int = 500) -> list[OutboxRow]:
        o = t.outbox
        query = sa.select(o.c.id, o.c.world_id, o.c.topic, o.c.payload) \
            .where(o.c.sent_at.is_(None), o.c.id > after).order_by(o.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(query)]  # type: ignore[misc]
