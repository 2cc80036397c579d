"""Engines for the two supported databases: SQLite (file, WAL) by default, PostgreSQL through a URL."""

from __future__ import annotations

from pathlib import Path

import msgspec
import sqlalchemy as sa
from sqlalchemy import event

# JSON columns (records, audit results, outbox events) are encoded by msgspec: the stdlib encoder was
# a tenth of the writer's time.
_JSON = {"json_serializer": lambda value: msgspec.json.encode(value).decode(),
         "json_deserializer": msgspec.json.decode}


def normalise_dsn(dsn: str) -> str:
    """Accept the reference's DSN spellings: ``postgres://``, ``postgresql://``, ``sqlite:///path``, a bare path."""
    if dsn.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + dsn.split("://", 1)[1]
    if dsn.startswith("sqlite:") or "://" in dsn:
        return dsn
    return f"sqlite:///{dsn}"


READ_ONLY = "worldservice_read_only"  # execution option: this connection only reads


def _configure_sqlite(engine: sa.Engine, synchronous: str) -> None:
    """pysqlite's own transaction handling breaks SAVEPOINT; take it over and begin IMMEDIATE so the
    single writer never meets a lock upgrade failure mid-transaction. A connection marked ``READ_ONLY``
    begins deferred instead: under WAL a reader neither waits for the writer's lock nor holds it, so a hot
    lookup (a Kafka command's idempotency check) does not queue behind every commit's fsync."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


def create_engine(dsn: str, *, sqlite_synchronous: str = "FULL", connect_timeout_s: float = 10.0,
                  pool_timeout_s: float = 30.0, statement_timeout_s: float | None = None) -> sa.Engine:
    url = sa.make_url(normalise_dsn(dsn))
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False}, **_JSON)
        _configure_sqlite(engine, sqlite_synchronous)
        return engine
    return sa.create_engine(url, pool_size=8, max_overflow=4, pool_timeout=pool_timeout_s,
                            connect_args=_postgres_connect_args(connect_timeout_s, statement_timeout_s), **_JSON,
                            # a connection the server dropped (a restart, a failover) is tested at checkout
                            # and replaced, so the first command after the database returns succeeds
                            pool_pre_ping=True)


def _postgres_connect_args(connect_timeout_s: float, statement_timeout_s: float | None) -> dict[str, object]:
    """libpq takes whole seconds for connect_timeout (and treats 1 as 2); the statement timeout is set
    per session so a query the server cannot finish (a lock held by a dead peer) gives its connection back."""
    args: dict[str, object] = {"connect_timeout": max(1, round(connect_timeout_s))}
    if statement_timeout_s is not None:
        args["options"] = f"-c statement_timeout={max(1, round(statement_timeout_s * 1000))}"
    return args
