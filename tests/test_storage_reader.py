"""Cross-world reads (``GET /worlds``, ``GET /allocations``, the world ids behind ``run-all``) go through the
storage reader actor: the edge never touches SQL, and a failing database is a 503, not a 500."""

from __future__ import annotations

import pytest

from storage.sql import StorageUnavailable
from tests.conftest import Harness


def _failing(*args: object) -> None:
    raise StorageUnavailable("OperationalError: database is locked")


def test_the_reads_answer_through_the_reader_actor(api: Harness) -> None:
    assert api.client.post("/worlds", json={"id": "w1"}).status_code == 201
    assert [w["id"] for w in api.client.get("/worlds").json()] == ["w1"]
    assert api.client.get("/allocations").json() == {"allocations": {}}
    assert "reader" in api.system.mailbox_depths()


@pytest.mark.parametrize(("read", "method", "path"), [
    ("list_worlds", "GET", "/worlds"), ("world_allocations", "GET", "/allocations"),
    ("world_ids", "POST", "/worlds/live-monitoring/run-all"),
])
def test_a_failing_database_is_a_503(api: Harness, monkeypatch: pytest.MonkeyPatch, read: str, method: str,
                                     path: str) -> None:
    monkeypatch.setattr(api.system.store, read, _failing)
    r = api.client.request(method, path)
    assert (r.status_code, r.json()) == (503, {"detail": "storage unavailable; retry"})
