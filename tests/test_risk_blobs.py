"""The Risk Hub blob stores keep one contract: SQL (SQLite, PostgreSQL) and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.risk_snapshots import blob_ref
from storage import migrate
from storage.engine import create_engine
from storage.redis_stores import RedisBlobStore
from storage.risk_blobs import BlobStore, SqlBlobStore
from tests import services


@pytest.fixture(params=["sql", "redis"])
def blobs(request: pytest.FixtureRequest, sql_dsn: str, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "redis":
        store = RedisBlobStore(services.REDIS_URL, request.getfixturevalue("redis_prefix"), ttl_s=60)
        yield store
        store.close()
        return
    engine = create_engine(sql_dsn)
    migrate.upgrade(engine)
    yield SqlBlobStore(engine)
    engine.dispose()


def test_a_blob_reads_back_by_its_content_address_and_writing_it_twice_is_harmless(blobs: BlobStore) -> None:
    cov = {"a,a": 0.04, "a,b": 0.01, "b,b": 0.09}
    returns = {"s1": [0.01, -0.02], "s2": [0.0, 0.5]}
    refs = {blob_ref(cov): cov, blob_ref(returns): returns}
    blobs.put_many(refs)
    blobs.put_many(refs)
    blobs.put_many({})
    assert {ref: blobs.get(ref) for ref in refs} == refs
    assert blobs.get(blob_ref({"other": 1})) is None
    assert blob_ref(cov) == blob_ref(dict(reversed(list(cov.items()))))  # key order is not content
