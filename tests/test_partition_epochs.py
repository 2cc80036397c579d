"""Owner epochs in SQL (cluster mode): taking a partition bumps its epoch atomically and appends it to the
history, on SQLite and PostgreSQL."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage import migrate
from storage.engine import create_engine
from storage.epochs import epoch_history, partition_owners, take_partition


@pytest.fixture
def engine(migrated_engine: sa.Engine) -> sa.Engine:
    return migrated_engine


def test_taking_a_partition_bumps_its_epoch_and_names_the_owner(engine: sa.Engine) -> None:
    assert take_partition(engine, 3, "http://a:8081") == 1
    assert take_partition(engine, 3, "http://b:8082") == 2
    assert take_partition(engine, 5, "http://b:8082") == 1
    assert take_partition(engine, 3, "http://a:8081") == 3
    assert partition_owners(engine) == {3: (3, "http://a:8081"), 5: (1, "http://b:8082")}
    history = [(h["partition"], h["epoch"], h["owner"]) for h in epoch_history(engine)]
    assert history == [(3, 1, "http://a:8081"), (3, 2, "http://b:8082"), (3, 3, "http://a:8081"),
                       (5, 1, "http://b:8082")]
    stamps = [h["taken_at"] for h in epoch_history(engine) if h["partition"] == 3]
    assert stamps == sorted(stamps) and all(s.endswith("Z") for s in stamps)


def test_concurrent_takers_each_get_their_own_epoch(engine: sa.Engine) -> None:
    owners = [f"http://i{n}:80" for n in range(24)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        epochs = list(pool.map(lambda owner: take_partition(engine, 0, owner), owners))
    assert sorted(epochs) == list(range(1, 25))
    history = epoch_history(engine)
    assert [h["epoch"] for h in history] == list(range(1, 25))
    # Each epoch's owner in the history is the taker that was told that epoch.
    assert {h["epoch"]: h["owner"] for h in history} == dict(zip(epochs, owners, strict=True))
    assert partition_owners(engine)[0] == (24, history[-1]["owner"])


def test_migration_0009_adds_and_drops_the_epoch_tables(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    migrate.upgrade(engine, "0008")
    assert not sa.inspect(engine).has_table("partition_epochs")
    migrate.upgrade(engine)
    inspector = sa.inspect(engine)
    assert {c["name"] for c in inspector.get_columns("partition_epochs")} == {"partition", "epoch", "owner", "taken_at"}
    assert inspector.get_pk_constraint("partition_epoch_history")["constrained_columns"] == ["partition", "epoch"]
    migrate.downgrade(engine, "0008")
    assert not sa.inspect(engine).has_table("partition_epoch_history")
    engine.dispose()
