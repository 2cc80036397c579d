"""The write half of the SQL system of record: a group of command effects in one transaction.

Group commit, the fast way: the fences of every world in the batch are read in one ``SELECT`` and moved in
one ``executemany``, and the batch's rows go out as one ``executemany`` per statement (split only where a
delete must keep its place), with no savepoint per item. A world has exactly one writer (its actor), so
its items in a batch carry consecutive expected versions; when anything does not line up (a stale fence,
a fence moved meanwhile, a duplicate command id, any error) the transaction is rolled back and the batch
is written the careful way instead: each item in its own savepoint, so a refused item takes no other
item down, least of all another world's. A commit that fails is never retried: it raises.

In cluster mode (``owner_epochs`` given) every transaction first reads the owner epochs of its worlds'
partitions (``storage.epochs``; one ``SELECT .. FOR SHARE`` per transaction, none without cluster mode):
the items of a partition this instance no longer holds under its current epoch are refused with
``StaleOwner`` and write nothing, the others are written as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from storage import schema as t
from storage.epochs import OwnerEpochs
from storage.sql_rows import EffectRows, Pair
from storage.sql_statements import Statements
from storage.sql_types import CommitUnknown, StaleOwner, StaleWriter, StorageUnavailable, WriteItem

OutboxRow = tuple[int, str, str, dict[str, Any]]  # (id, world_id, topic, payload): what the relay publishes


class _Unbatchable(Exception):
    """The batch's fences do not line up: write it item by item."""


class _Rows:
    """A transaction's statements, grouped into one ``executemany`` per statement until a delete (whose
    order against the rest matters) flushes the groups; the outbox rows' ids are collected."""

    def __init__(self, conn: sa.Connection, sql: Statements) -> None:
        self._conn = conn
        self._sql = sql
        self._groups: dict[int, tuple[Any, list[dict[str, Any]]]] = {}
        self.outbox: list[OutboxRow] = []

    def add(self, pairs: list[Pair]) -> None:
        for statement, params in pairs:
            if id(statement) in self._sql.barriers:
                self.flush()
                self._conn.execute(statement, params)
            else:
                self._groups.setdefault(id(statement), (statement, []))[1].append(params)

    def flush(self) -> None:
        groups, self._groups = self._groups, {}
        for statement, rows in groups.values():
            result = self._conn.execute(statement, rows)
            if statement is self._sql.insert_outbox_returning:
                ids = result.scalars().all()
                self.outbox += [(i, r["world_id"], r["topic"], r["payload"]) for i, r in zip(ids, rows, strict=True)]


class SqlWrites:
    """The write half of the SQL store: group commit of world effects."""

    def __init__(self, engine: sa.Engine, owner_epochs: OwnerEpochs | None = None) -> None:
        self.engine = engine
        self.owner_epochs = owner_epochs  # None: one instance, no epoch fence (and no statement for it)
        self._sql = Statements(engine.dialect.name)
        self._rows = EffectRows(self._sql)
        self._multi_rowcount = bool(engine.dialect.supports_sane_multi_rowcount)

    def apply_batch(self, items: Sequence[WriteItem], sent: Sequence[int] = (), sent_at: str | None = None,
                    outbox: list[OutboxRow] | None = None) -> list[Exception | None]:
        """Group commit: every item in one transaction, a refused item not taking the others down.
        Returns, per item, ``None`` or the exception that refused it; the committed outbox rows are
        appended to ``outbox`` (in id order) once the commit succeeded."""
        try:
            results, rows = self._apply_batch(items, sent, sent_at)
        except sa.exc.DBAPIError as exc:
            raise StorageUnavailable(f"{type(exc.orig).__name__}: {exc.orig}") from exc
        if outbox is not None:
            outbox += rows
        return results

    def _apply_batch(self, items: Sequence[WriteItem], sent: Sequence[int],
                     sent_at: str | None) -> tuple[list[Exception | None], list[OutboxRow]]:
        """Relayed outbox rows are marked in the same transaction: no commit (and fsync) of their own."""
        with self.engine.connect() as conn:
            transaction = conn.begin()
            try:
                rows = self._write_batched(conn, items, sent, sent_at)
            except Exception:  # noqa: BLE001 - written again item by item, where the refusal is isolated
                transaction.rollback()
                conn.invalidate()  # a fresh connection: no cursor of the failed attempt holds a lock
            else:
                self._commit(transaction)
                return [None] * len(items), rows.outbox
        with self.engine.begin() as conn:
            return self._write_each(conn, items, sent, sent_at)

    @staticmethod
    def _commit(transaction: sa.RootTransaction) -> None:
        """A failed commit raises (never written twice, never acknowledged); when the connection itself
        dropped, whether the server committed is unknown, and the caller is told so."""
        try:
            transaction.commit()
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError):
                raise CommitUnknown(f"commit unanswered: {type(exc.orig).__name__}: {exc.orig}") from exc
            raise

    def _mark_sent(self, conn: sa.Connection, sent: Sequence[int], sent_at: str | None) -> None:
        if sent:
            conn.execute(t.outbox.update().where(t.outbox.c.id.in_(sent)).values(sent_at=sent_at))

    def _write_batched(self, conn: sa.Connection, items: Sequence[WriteItem], sent: Sequence[int],
                       sent_at: str | None) -> _Rows:
        self._mark_sent(conn, sent, sent_at)
        if self._stale(conn, items):
            raise _Unbatchable("a partition of the batch is not this instance's under its current epoch")
        self._fence_batch(conn, items)
        rows = _Rows(conn, self._sql)
        for item in items:
            for effect in item.effects:
                rows.add(self._rows.rows(item, effect))
        rows.flush()
        return rows

    def _fence_batch(self, conn: sa.Connection, items: Sequence[WriteItem]) -> None:
        """Every world's items must continue its stored version, one step each; then each world's fence
        moves once, to its last item's version."""
        chains: dict[str, list[WriteItem]] = {}
        for item in items:
            chains.setdefault(item.world_id, []).append(item)
        stored = {w: v for w, v in conn.execute(self._sql.fence_select, {"worlds": list(chains)}).all()}
        inserts, updates = [], []
        for world_id, chain in chains.items():
            first = chain[0].expected_version
            if stored.get(world_id, 0) != first or any(i.expected_version != first + n for n, i in enumerate(chain)):
                raise _Unbatchable(world_id)
            fence = {"next_version": first + len(chain), "counter": chain[-1].activation_counter}
            if first == 0:
                inserts.append({"world_id": world_id, "row_version": fence["next_version"],
                                "activation_counter": fence["counter"]})
            else:
                updates.append({"w": world_id, "expected": first, **fence})
        if inserts:
            conn.execute(self._sql.fence_insert, inserts)  # a concurrent creator: IntegrityError
        self._move_fences(conn, updates)

    def _move_fences(self, conn: sa.Connection, updates: list[dict[str, Any]]) -> None:
        if not updates:
            return
        if self._multi_rowcount:
            moved = conn.execute(self._sql.fence_update, updates).rowcount
        else:
            moved = sum(conn.execute(self._sql.fence_update, u).rowcount for u in updates)
        if moved != len(updates):
            raise _Unbatchable("a fence moved since it was read")

    def _write_each(self, conn: sa.Connection, items: Sequence[WriteItem], sent: Sequence[int],
                    sent_at: str | None) -> tuple[list[Exception | None], list[OutboxRow]]:
        """The careful way: each item inside its own savepoint."""
        self._mark_sent(conn, sent, sent_at)
        stale = self._stale(conn, items)
        results: list[Exception | None] = []
        outbox: list[OutboxRow] = []
        for item in items:
            refused = stale.get(item.world_id)
            if refused is not None:
                results.append(refused)
                continue
            savepoint = conn.begin_nested()
            try:
                written = self._apply_item(conn, item)
                savepoint.commit()
                results.append(None)
                outbox += written
            except Exception as exc:  # noqa: BLE001 - reported to that item's waiter only
                savepoint.rollback()
                results.append(exc)
        return results, outbox

    def _stale(self, conn: sa.Connection, items: Sequence[WriteItem]) -> dict[str, StaleOwner]:
        """Cluster mode: the refusal of each world of ``items`` whose partition is not this instance's."""
        if self.owner_epochs is None:
            return {}
        worlds = {i.world_id for i in items}
        stale = self.owner_epochs.stale_partitions(conn, worlds)
        return {w: stale[p] for w in worlds if (p := self.owner_epochs.partition_of(w)) in stale}

    def _apply_item(self, conn: sa.Connection, item: WriteItem) -> list[OutboxRow]:
        self._fence(conn, item)
        rows = _Rows(conn, self._sql)
        for effect in item.effects:
            rows.add(self._rows.rows(item, effect))
        rows.flush()
        return rows.outbox

    def _fence(self, conn: sa.Connection, item: WriteItem) -> None:
        if item.expected_version == 0:
            try:
                with conn.begin_nested():
                    conn.execute(self._sql.fence_insert, {"world_id": item.world_id, "row_version": 1,
                                                          "activation_counter": item.activation_counter})
            except sa.exc.IntegrityError:
                raise StaleWriter(item.world_id) from None
            return
        updated = conn.execute(self._sql.fence_update, {
            "w": item.world_id, "expected": item.expected_version, "next_version": item.expected_version + 1,
            "counter": item.activation_counter}).rowcount
        if updated != 1:
            raise StaleWriter(item.world_id)

    def apply_atomic(self, items: Sequence[WriteItem], outbox: list[OutboxRow] | None = None) -> None:
        """Several worlds' items in one transaction, all or none (a cross-world allocation run)."""
        refused = self.apply_atomic_many([items], outbox)[0]
        if refused is not None:
            raise refused

    def apply_atomic_many(self, runs: Sequence[Sequence[WriteItem]], outbox: list[OutboxRow] | None = None,
                          sent: Sequence[int] = (), sent_at: str | None = None) -> list[Exception | None]:
        """Several allocation runs in one transaction (one commit), each all or none: a run's items go in
        one savepoint, so a refused run writes nothing and takes no other run down. Relayed outbox rows
        (``sent``) are marked in the same commit. Returns, per run, ``None`` or what refused it; a failed
        commit raises, for every run."""
        try:
            results, written = self._atomic_runs(runs, sent, sent_at)
        except sa.exc.DBAPIError as exc:
            raise StorageUnavailable(f"{type(exc.orig).__name__}: {exc.orig}") from exc
        if outbox is not None:
            outbox += written
        return results

    def _atomic_runs(self, runs: Sequence[Sequence[WriteItem]], sent: Sequence[int],
                     sent_at: str | None) -> tuple[list[Exception | None], list[OutboxRow]]:
        """The fast way first, as for a group commit (the coordinator holds every world, so the fences
        line up); when anything does not, each run in its own savepoint."""
        with self.engine.connect() as conn:
            transaction = conn.begin()
            try:
                rows = self._write_batched(conn, [item for items in runs for item in items], sent, sent_at)
            except Exception:  # noqa: BLE001 - written again run by run, where the refusal is isolated
                transaction.rollback()
                conn.invalidate()
            else:
                self._commit(transaction)
                return [None] * len(runs), rows.outbox
        return self._atomic_runs_each(runs, sent, sent_at)

    def _atomic_runs_each(self, runs: Sequence[Sequence[WriteItem]], sent: Sequence[int],
                          sent_at: str | None) -> tuple[list[Exception | None], list[OutboxRow]]:
        results: list[Exception | None] = []
        written: list[OutboxRow] = []
        with self.engine.connect() as conn:
            transaction = conn.begin()
            self._mark_sent(conn, sent, sent_at)
            stale = self._stale(conn, [item for items in runs for item in items])  # cluster mode only
            for items in runs:
                refused = next((stale[i.world_id] for i in items if i.world_id in stale), None)
                if refused is not None:  # all or none: none
                    results.append(refused)
                    continue
                savepoint = conn.begin_nested()
                try:
                    rows = [row for item in items for row in self._apply_item(conn, item)]
                except Exception as exc:  # noqa: BLE001 - that run's refusal; a dead connection fails the commit
                    savepoint.rollback()
                    results.append(exc)
                    continue
                savepoint.commit()
                results.append(None)
                written += rows
            self._commit(transaction)
        return results, written

    def mark_allocation_executed(self, run_id: str, response: Any) -> None:
        r = t.allocation_runs
        with self.engine.begin() as conn:
            conn.execute(r.update().where(r.c.run_id == run_id).values(executed=True, execution_response=response))
