"""Real services for contract tests: PostgreSQL and Redis on this machine.

Locally a missing service skips the tests that need it; in CI (``CI=true``) it fails them, so a broken
environment can never pass as green.
"""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
import redis

POSTGRES_ADMIN = os.environ.get("WORLDSERVICE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("WORLDSERVICE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def unavailable(service: str, error: Exception) -> None:
    message = f"{service} is required for this test and is not reachable: {error!r}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def create_postgres_database(worker: str = "main") -> tuple[str, str]:
    """A fresh database for this test session (one per pytest-xdist worker): (sqlalchemy dsn, name)."""
    name = f"ws_test_{worker}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{name}", name


def drop_postgres_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    client.ping()
    return client
