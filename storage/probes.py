"""Reachability probes for the prod profile's preflight: one short attempt each, a reason or ``None``."""

from __future__ import annotations

import sqlalchemy as sa

from storage.engine import create_engine


def sql_unreachable(dsn: str, timeout_s: float = 3.0) -> str | None:
    engine = create_engine(dsn, connect_timeout_s=timeout_s)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        return f"{type(exc.orig).__name__}: {str(exc.orig).strip().splitlines()[0]}"
    finally:
        engine.dispose()
    return None


def redis_unreachable(url: str) -> str | None:
    from storage.redis_stores import RedisActivationStore  # only the prod preflight probes Redis

    store = RedisActivationStore(url, "")
    try:
        store.ping()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return f"{type(exc).__name__}: {exc}"
    finally:
        store.close()
    return None
