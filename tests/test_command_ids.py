"""Command ids (HTTP ``Idempotency-Key``, Kafka ``command_id``): a repeat gets the first reply, the same id
with other content is 409 and writes nothing, and rows remembered before content hashes (0005) or before
outcome names (0007, when a row held the HTTP status) keep replaying what they first answered."""

from __future__ import annotations

from pathlib import Path

import msgspec
import sqlalchemy as sa

from domain.idempotency import command_hash
from messages.commands import external_command_decoder
from storage import migrate
from storage import schema as t
from storage.engine import create_engine
from storage.remembered import stored_answer
from tests.conftest import Harness


def _put(h: Harness, key: str, weight: float, **headers: str):  # type: ignore[no-untyped-def]
    body = {"strategy_id": "s1", "side": "long", "active": True, "weight": weight}
    return h.client.put("/worlds/w1/activation", json=body, headers={"Idempotency-Key": key, **headers})


def _activation_writes(h: Harness) -> int:
    return [a["event"] for a in h.client.get("/worlds/w1/audit").json()].count("activation_updated")


def test_a_reused_idempotency_key_with_another_body_is_409_and_writes_nothing(contract_api: Harness) -> None:
    h = contract_api
    assert h.client.post("/worlds", json={"id": "w1"}).status_code == 201
    first = _put(h, "k-1", 0.3, **{"X-Caller-Sub": "alice", "X-Correlation-ID": "c-1"})
    assert first.status_code == 200
    # Another caller name and correlation id are not other content: the first reply, not a second write.
    again = _put(h, "k-1", 0.3, **{"X-Caller-Sub": "bob", "X-Correlation-ID": "c-2"})
    assert (again.status_code, again.json()) == (200, first.json())
    reused = _put(h, "k-1", 0.9)
    assert reused.status_code == 409 and "'k-1'" in reused.json()["detail"], reused.text
    assert _activation_writes(h) == 1
    entry = h.client.get("/worlds/w1/activation", params={"strategy_id": "s1", "side": "long"}).json()
    assert entry["weight"] == 0.3 and entry["etag"] == first.json()["etag"]


LEGACY = {"active": True, "weight": 0.2, "etag": "act:w1:s1:long:7", "legacy": True}


def test_a_row_remembered_before_content_hashes_replays_its_reply(api: Harness) -> None:
    assert api.client.post("/worlds", json={"id": "w1"}).status_code == 201
    with api.runtime.store.engine.begin() as conn:
        conn.execute(t.processed_commands.insert(), {"world_id": "w1", "command_id": "old-1", "status": 200,
                                                     "reply": LEGACY, "created_at": "2026-01-01T00:00:00Z",
                                                     "content_hash": None})
    replayed = _put(api, "old-1", 0.7)
    assert (replayed.status_code, replayed.json()) == (200, LEGACY)
    assert replayed.headers["ETag"] == LEGACY["etag"] and _activation_writes(api) == 0


def _decoded(**fields: object):  # type: ignore[no-untyped-def]
    body = {"strategy_id": "s1", "side": "long", "active": True, "weight": 0.3}
    return external_command_decoder.decode(msgspec.json.encode(
        {"kind": "put_activation", "world_id": "w1", "body": body, **fields}))


def test_the_content_hash_leaves_out_who_sent_it_and_under_which_ids() -> None:
    plain = command_hash(_decoded())
    assert command_hash(_decoded(command_id="x", correlation_id="c", actor="alice")) == plain
    assert command_hash(_decoded(if_match="act:w1:s1:long:1")) != plain
    other_world = _decoded()
    assert command_hash(type(other_world)(world_id="w2", body=other_world.body)) != plain


def test_migration_0005_adds_a_nullable_hash_and_keeps_older_rows(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    migrate.upgrade(engine, "0004")
    row = {"world_id": "w1", "command_id": "c1", "status": 200, "reply": None, "created_at": "t"}
    with engine.begin() as conn:
        columns = ", ".join(row)  # the 0004 columns only: the table as an older daemon wrote it
        conn.execute(sa.text(f"INSERT INTO processed_commands ({columns}) VALUES (:{', :'.join(row)})"), row)
    migrate.upgrade(engine)
    assert migrate.is_current(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.select(t.processed_commands.c.content_hash)).scalars().all() == [None]
    migrate.downgrade(engine, "0004")
    columns = {c["name"] for c in sa.inspect(engine).get_columns("processed_commands")}
    assert "content_hash" not in columns and migrate.current_revision(engine) == "0004"
    engine.dispose()


def test_rows_an_older_daemon_wrote_with_a_status_number_replay_that_status(api: Harness) -> None:
    assert api.client.post("/worlds", json={"id": "w1"}).status_code == 201
    refused = {"detail": "activation refused by the default-safe rule: allow_live_disabled"}
    with api.runtime.store.engine.begin() as conn:
        for key, status, reply in (("old-ok", 200, LEGACY), ("old-refused", 409, refused)):
            conn.execute(t.processed_commands.insert(), {"world_id": "w1", "command_id": key, "status": status,
                                                         "reply": reply, "created_at": "2026-01-01T00:00:00Z"})
    ok, again = _put(api, "old-ok", 0.7), _put(api, "old-refused", 0.7)
    assert (ok.status_code, ok.json()) == (200, LEGACY)
    assert (again.status_code, again.json()) == (409, refused)
    assert _activation_writes(api) == 0


def test_a_command_remembered_now_replays_the_same_status_and_body(contract_api: Harness) -> None:
    h = contract_api
    created = h.client.post("/worlds", json={"id": "w2"}, headers={"Idempotency-Key": "create-w2"})
    again = h.client.post("/worlds", json={"id": "w2"}, headers={"Idempotency-Key": "create-w2"})
    assert created.status_code == 201 and (again.status_code, again.json()) == (201, created.json())
    with h.runtime.store.engine.connect() as conn:
        row = conn.execute(sa.select(t.processed_commands.c.outcome, t.processed_commands.c.status)).one()
    assert tuple(row) == ("created", None)


def _processed(engine: sa.Engine) -> list[tuple[str, int | None]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(
            t.processed_commands.c.command_id, t.processed_commands.c.status).order_by(t.processed_commands.c.command_id))]


def test_migration_0007_keeps_older_status_rows_readable_and_downgrades_names_back(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    migrate.upgrade(engine, "0006")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO processed_commands (world_id, command_id, status, reply, created_at) "
                             "VALUES ('w1', 'a-old', 204, NULL, 't')"))
    migrate.upgrade(engine)
    p = t.processed_commands
    with engine.begin() as conn:
        conn.execute(p.insert(), {"world_id": "w1", "command_id": "b-new", "outcome": "created", "reply": None,
                                  "created_at": "t"})
        rows = conn.execute(sa.select(p.c.command_id, p.c.outcome, p.c.status).order_by(p.c.command_id)).all()
    assert [(r.command_id, stored_answer(r.outcome, r.status).value) for r in rows] == [
        ("a-old", "no_content"), ("b-new", "created")]
    migrate.downgrade(engine, "0006")
    assert _processed(engine) == [("a-old", 204), ("b-new", 201)]
    columns = {c["name"] for c in sa.inspect(engine).get_columns("processed_commands")}
    assert "outcome" not in columns and migrate.current_revision(engine) == "0006"
    engine.dispose()


def test_a_status_number_an_older_daemon_stored_is_answered_with_that_same_number() -> None:
    from actors.bridge import STATUS
    from storage.remembered import LEGACY_STATUS

    assert {status: STATUS[answer] for status, answer in LEGACY_STATUS.items()} == {s: s for s in LEGACY_STATUS}
