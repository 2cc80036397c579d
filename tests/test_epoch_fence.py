"""Cluster mode: every write batch of a world commits only under its partition's current owner epoch.
Another instance taking the partition makes the database refuse the former owner's writes, and nothing
of them is stored; without cluster mode the write path runs no statement for it."""

from __future__ import annotations


import pytest
import sqlalchemy as sa

from domain.effects import AuditRecord, OutboxEvent
from storage import schema as t
from storage.engine import normalise_dsn
from storage.epochs import OwnerEpochs, epoch_history, take_partition
from storage.sql import SqlStore, StaleOwner, StaleWriter, WriteItem

PARTITIONS = 12
A, B = "http://127.0.0.1:8081", "http://127.0.0.1:8082"


@pytest.fixture
def engine(migrated_engine: sa.Engine) -> sa.Engine:
    return migrated_engine


def _cluster_store(engine: sa.Engine) -> SqlStore:
    return SqlStore(engine, OwnerEpochs(PARTITIONS))


def _worlds_of_two_partitions(epochs: OwnerEpochs) -> tuple[str, str]:
    first = "w0"
    other = next(f"w{i}" for i in range(1, 100) if epochs.partition_of(f"w{i}") != epochs.partition_of(first))
    return first, other


def _item(world_id: str, expected: int) -> WriteItem:
    return WriteItem(world_id=world_id, expected_version=expected, activation_counter=expected + 1,
                     effects=[AuditRecord(event="probe", request=None, result={"n": expected}),
                              OutboxEvent(topic="activation", key=world_id,
                                          cloudevent={"id": f"{world_id}-{expected}"})])


def _stored(engine: sa.Engine, world_id: str) -> tuple[int | None, int, int]:
    """(row version, audit rows, outbox rows) of a world."""
    with engine.connect() as conn:
        version = conn.execute(sa.select(t.world_versions.c.row_version)
                               .where(t.world_versions.c.world_id == world_id)).scalar()
        audits = conn.execute(sa.select(sa.func.count()).select_from(t.audit_log)
                              .where(t.audit_log.c.world_id == world_id)).scalar_one()
        events = conn.execute(sa.select(sa.func.count()).select_from(t.outbox)
                              .where(t.outbox.c.world_id == world_id)).scalar_one()
    return version, audits, events


def test_a_write_under_the_current_epoch_commits(engine: sa.Engine) -> None:
    a = _cluster_store(engine)
    w, _ = _worlds_of_two_partitions(a.owner_epochs)
    assert a.take_partition(a.owner_epochs.partition_of(w), A) == 1
    outbox: list = []
    assert a.apply_batch([_item(w, 0), _item(w, 1)], outbox=outbox) == [None, None]
    assert _stored(engine, w) == (2, 2, 2) and len(outbox) == 2


def test_after_another_owner_takes_the_partition_the_former_owners_writes_are_refused(
        engine: sa.Engine) -> None:
    a, b = _cluster_store(engine), _cluster_store(engine)
    w, other = _worlds_of_two_partitions(a.owner_epochs)
    p, q = a.owner_epochs.partition_of(w), a.owner_epochs.partition_of(other)
    a.take_partition(p, A)
    a.take_partition(q, A)
    assert a.apply_batch([_item(w, 0), _item(other, 0)]) == [None, None]
    assert b.take_partition(p, B) == 2  # A is paused and still believes it holds epoch 1
    outbox: list = []
    results = a.apply_batch([_item(w, 1), _item(other, 1)], outbox=outbox)
    # Refused by the database for the moved partition alone; the other world of the batch commits.
    assert isinstance(results[0], StaleOwner) and isinstance(results[0], StaleWriter) and results[1] is None
    assert (results[0].partition, results[0].held, results[0].current) == (p, 1, 2)
    assert _stored(engine, w) == (1, 1, 1) and _stored(engine, other) == (2, 2, 2)
    assert [row[1] for row in outbox] == [other]
    # The new owner continues the world from what is stored; its writes commit.
    assert b.apply_batch([_item(w, 1)]) == [None] and _stored(engine, w) == (2, 2, 2)
    history = [(h["partition"], h["epoch"], h["owner"]) for h in epoch_history(engine)]
    assert (p, 1, A) in history and (p, 2, B) in history


def test_a_cross_world_write_touching_a_moved_partition_stores_nothing(engine: sa.Engine) -> None:
    a, b = _cluster_store(engine), _cluster_store(engine)
    w, other = _worlds_of_two_partitions(a.owner_epochs)
    for world in (w, other):
        a.take_partition(a.owner_epochs.partition_of(world), A)
    b.take_partition(a.owner_epochs.partition_of(other), B)
    with pytest.raises(StaleOwner):
        a.apply_atomic([_item(w, 0), _item(other, 0)])
    assert _stored(engine, w) == (None, 0, 0) and _stored(engine, other) == (None, 0, 0)


def test_in_a_wave_of_allocation_runs_only_the_run_touching_a_moved_partition_is_refused(
        engine: sa.Engine) -> None:
    a, b = _cluster_store(engine), _cluster_store(engine)
    w, other = _worlds_of_two_partitions(a.owner_epochs)
    for world in (w, other):
        a.take_partition(a.owner_epochs.partition_of(world), A)
    b.take_partition(a.owner_epochs.partition_of(other), B)
    results = a.apply_atomic_many([[_item(w, 0)], [_item(w, 1), _item(other, 0)]])
    assert results[0] is None and isinstance(results[1], StaleOwner)
    assert _stored(engine, w) == (1, 1, 1) and _stored(engine, other) == (None, 0, 0)


def test_a_partition_not_held_here_is_refused_and_release_gives_it_up(engine: sa.Engine) -> None:
    a = _cluster_store(engine)
    w, _ = _worlds_of_two_partitions(a.owner_epochs)
    [refused] = a.apply_batch([_item(w, 0)])
    assert isinstance(refused, StaleOwner) and refused.held is None
    a.take_partition(a.owner_epochs.partition_of(w), A)
    assert a.apply_batch([_item(w, 0)]) == [None]
    a.release_partition(a.owner_epochs.partition_of(w))
    assert isinstance(a.apply_batch([_item(w, 1)])[0], StaleOwner)
    assert _stored(engine, w) == (1, 1, 1)


def _statements(engine: sa.Engine, store: SqlStore, items: list[WriteItem]) -> list[str]:
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert store.apply_batch(items) == [None] * len(items)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return seen


def test_the_fence_costs_one_statement_per_batch_and_nothing_without_cluster_mode(engine: sa.Engine) -> None:
    single = SqlStore(engine)
    plain = _statements(engine, single, [_item("s1", 0), _item("s2", 0), _item("s1", 1)])
    assert not [s for s in plain if "partition_epochs" in s]
    a = _cluster_store(engine)
    for world in ("c1", "c2"):
        a.take_partition(a.owner_epochs.partition_of(world), A)
    fenced = _statements(engine, a, [_item("c1", 0), _item("c2", 0), _item("c1", 1)])
    assert len([s for s in fenced if "partition_epochs" in s]) == 1
    assert len(fenced) == len(plain) + 1


def test_a_take_waits_for_the_batch_in_flight_under_the_old_epoch(engine: sa.Engine, sql_dsn: str) -> None:
    """PostgreSQL: the batch's fence holds its partitions' rows FOR SHARE until it commits, so no take
    commits in between (a taker with a short lock_timeout is turned away while the batch is open)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serializes write transactions (BEGIN IMMEDIATE): no interleaving to show")
    a = _cluster_store(engine)
    w, _ = _worlds_of_two_partitions(a.owner_epochs)
    p = a.owner_epochs.partition_of(w)
    a.take_partition(p, A)
    impatient = sa.create_engine(normalise_dsn(sql_dsn), connect_args={"options": "-c lock_timeout=200"})
    try:
        with engine.connect() as conn, conn.begin():
            assert a.owner_epochs.stale_partitions(conn, [w]) == {}
            with pytest.raises(sa.exc.OperationalError, match="lock"):
                take_partition(impatient, p, B)
        assert take_partition(impatient, p, B) == 2
    finally:
        impatient.dispose()
    assert [h["owner"] for h in epoch_history(engine) if h["partition"] == p] == [A, B]
