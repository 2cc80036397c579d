"""Owner epochs of the commands topic's partitions (cluster mode): taking a partition, the epochs this
instance holds, and the fence every write batch of a world passes.

Taking a partition is one transaction: its epoch goes up by one (``INSERT .. ON CONFLICT DO UPDATE ..
RETURNING``: the first taker gets 1), the row names the new owner, and the epoch is appended to the
history. From then on only writes under the new epoch commit: the fence reads the batch's partitions'
epochs ``FOR SHARE`` in the batch's own transaction (PostgreSQL), so a take waits for the batches in
flight under the old epoch and every batch after it sees the new one. (SQLite runs one write transaction
at a time, ``BEGIN IMMEDIATE``, which gives the same order.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from storage import schema as t
from storage.partitions import world_partition
from storage.sql_types import StaleOwner

_E, _H = t.partition_epochs, t.partition_epoch_history


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def take_partition(engine: sa.Engine, partition: int, owner: str, taken_at: str | None = None) -> int:
    """Make ``owner`` the owner of ``partition`` under a new epoch, and return that epoch."""
    insert = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert
    row = {"partition": partition, "epoch": 1, "owner": owner, "taken_at": taken_at or _now()}
    stmt = insert(_E).values(row)
    stmt = stmt.on_conflict_do_update(index_elements=[_E.c.partition], set_={
        "epoch": _E.c.epoch + 1, "owner": stmt.excluded.owner, "taken_at": stmt.excluded.taken_at,
    }).returning(_E.c.epoch)
    with engine.begin() as conn:
        epoch = int(conn.execute(stmt).scalar_one())
        conn.execute(_H.insert(), {**row, "epoch": epoch})
    return epoch


def partition_owners(engine: sa.Engine) -> dict[int, tuple[int, str]]:
    """Every partition ever taken: its current (epoch, owner)."""
    with engine.connect() as conn:
        return {p: (int(e), o) for p, e, o in conn.execute(sa.select(_E.c.partition, _E.c.epoch, _E.c.owner))}


def epoch_history(engine: sa.Engine) -> list[dict[str, Any]]:
    """Every epoch ever taken, by partition then epoch."""
    query = sa.select(_H).order_by(_H.c.partition, _H.c.epoch)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


class OwnerEpochs:
    """The partitions this instance holds, each under the epoch it took it with, and the fence of a write
    batch. The ownership engine (the consumer group's rebalance listener) holds and releases partitions;
    the SqlWriter's batches are fenced with whatever is held when they are written."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()
        self.select = sa.select(_E.c.partition, _E.c.epoch).where(
            _E.c.partition.in_(sa.bindparam("partitions", expanding=True))).with_for_update(read=True)

    def partition_of(self, world_id: str) -> int:
        return world_partition(world_id, self.partitions)

    def hold(self, partition: int, epoch: int) -> None:
        with self._lock:
            self._held[partition] = epoch

    def release(self, partition: int) -> None:
        with self._lock:
            self._held.pop(partition, None)

    def held(self) -> dict[int, int]:
        with self._lock:
            return dict(self._held)

    def stale_partitions(self, conn: sa.Connection, world_ids: Iterable[str]) -> dict[int, StaleOwner]:
        """The partitions of these worlds that this instance may not write, each with its refusal: not
        held at all, or held under an epoch the database has moved past. The partitions it may write are
        locked (shared) until the transaction ends, so no take of them commits in between."""
        held = self.held()
        wanted = {self.partition_of(w) for w in world_ids}
        stale = {p: StaleOwner(p, None, None) for p in wanted if p not in held}
        asked = sorted(wanted - stale.keys())
        stored = dict(conn.execute(self.select, {"partitions": asked}).all()) if asked else {}
        for p in asked:
            if stored.get(p) != held[p]:
                stale[p] = StaleOwner(p, held[p], stored.get(p))
        return stale
