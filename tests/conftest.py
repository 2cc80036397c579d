"""Fixtures: the same test bodies run against SQLite and PostgreSQL, in-memory and Redis projections."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pykka
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from daemon import Runtime, build_runtime
from config import Config, load_config
from storage.schema import metadata
from tests import services
from tests.kafka_broker import kafka_broker_fixture, kafka_brokers_fixture  # noqa: F401
from transport.http import Edge, RebalanceFlags, create_app


@pytest.fixture(scope="session", autouse=True)
def _no_actor_outlives_the_session() -> Iterator[None]:
    """pykka threads are not daemon threads: one left running by a failed test would hang the run."""
    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=30)


@pytest.fixture(scope="session")
def worker() -> str:
    """``gw0``, ``gw1``, … under ``pytest -n``, else ``main``: each worker is a session of its own, with its
    own PostgreSQL database, Redis key prefix and tansu broker (topics are unique per test anyway)."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def postgres_dsn(worker: str) -> Iterator[str]:
    try:
        dsn, name = services.create_postgres_database(worker)
    except Exception as exc:  # noqa: BLE001
        services.unavailable("PostgreSQL", exc)
    yield dsn
    services.drop_postgres_database(name)


@pytest.fixture
def redis_prefix(worker: str) -> Iterator[str]:
    try:
        client = services.redis_client()
    except Exception as exc:  # noqa: BLE001
        services.unavailable("Redis", exc)
    prefix = f"wstest:{worker}:{uuid.uuid4().hex[:10]}:"
    yield prefix
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


def _truncate(dsn: str) -> None:
    engine = sa.create_engine(dsn.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        names = ", ".join(t.name for t in metadata.sorted_tables)
        if sa.inspect(conn).has_table("worlds"):
            conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY")
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def sql_dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ws.sqlite3'}"
    dsn = request.getfixturevalue("postgres_dsn")
    _truncate(dsn)
    return dsn


@pytest.fixture
def migrated_engine(sql_dsn: str) -> Iterator[sa.Engine]:
    """An engine on ``sql_dsn`` (SQLite and PostgreSQL), schema at head."""
    from storage import migrate
    from storage.engine import create_engine

    engine = create_engine(sql_dsn)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["memory", "redis"])
def projection(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "memory":
        return {}
    return {"redis": services.REDIS_URL, "redis_prefix": request.getfixturevalue("redis_prefix")}


def make_config(tmp_path: Path, dsn: str | None = None, **server: object) -> Config:
    ws = {"data_dir": str(tmp_path), "server": {"dsn": dsn, **server}, "actors": {"sweep_interval_s": 3600}}
    return load_config(environ={}, overrides={"worldservice": ws})


@dataclass
class Harness:
    """A running actor system behind a real HTTP app; ``restart`` simulates a fresh daemon."""

    config: Config
    runtime: Runtime
    client: TestClient

    @property
    def bus(self):  # type: ignore[no-untyped-def]
        return self.runtime.bus

    @property
    def system(self):  # type: ignore[no-untyped-def]
        return self.runtime.system


def start_harness(config: Config, executor: object = None, **clocks: object) -> Harness:
    runtime = build_runtime(config, executor=executor, **clocks)
    edge = Edge(system=runtime.system, ready=True)
    flags = RebalanceFlags(config.server.compat_rebalance_v2, config.server.alpha_metrics_required)
    client = TestClient(create_app(edge, config.server.auth, flags), raise_server_exceptions=False)
    client.__enter__()
    return Harness(config=config, runtime=runtime, client=client)


def stop_harness(harness: Harness) -> None:
    harness.client.__exit__(None, None, None)
    harness.runtime.close()


@pytest.fixture
def harness_factory(tmp_path: Path) -> Iterator:
    started: list[Harness] = []

    def factory(config: Config, executor: object = None, **clocks: object) -> Harness:
        h = start_harness(config, executor, **clocks)
        started.append(h)
        return h

    yield factory
    for h in started:
        if h.runtime.system.directory.is_alive():
            stop_harness(h)


@pytest.fixture
def api(harness_factory, tmp_path: Path) -> Harness:
    """The embedded default: SQLite file + in-memory projection."""
    return harness_factory(make_config(tmp_path))


@pytest.fixture
def contract_api(harness_factory, tmp_path: Path, sql_dsn: str, projection: dict[str, str]) -> Harness:
    """Every combination of SQL backend and activation projection."""
    return harness_factory(make_config(tmp_path, sql_dsn, **projection))


class FakeClock:
    """The daemon's clock in a test: it stands still until the test moves it (``advance(hours=1)``)."""

    def __init__(self, start: datetime = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
