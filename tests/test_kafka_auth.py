"""Kafka commands are authenticated where HTTP is: a daemon with JWT auth, a real broker (tansu), commands
on ``worldservice.commands``.

Refused before any actor sees them, each into the dead-letter topic with its reason: no token, a bad
token, a token without the role (also on one world of an allocation), and the daemon's internal messages.
A command id reused with other content is answered 409. An authorised command is applied as the token's
subject, whatever ``actor`` its body claims; ``upsert_allocations`` answers what ``POST /allocations`` does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, get_args

import httpx
import msgspec
import pytest

from actors.bridge import Reply
from messages.commands import (
    REQUIRED_ROLE, AckActivation, AddPolicy, ApplyTick, ExternalCommand, HoldForAllocation, InternalCommand,
    PutActivation, PutNode, RefreshProjection, ReleaseAllocation, SetDecisions, StartApply, UpdateWorld,
    UpsertAllocations,
)
from config import Auth
from tests.daemon_process import DaemonProcess
from tests.kafka_broker import unique_topic
from tests.kafka_gateway import daemon_kafka_env
from tests.test_apply_kafka import _consume_all, _send_commands, _topics
from tests.test_auth import AUDIENCE, ISSUER, SECRET, token
from transport.kafka import ConsumedRecord
from transport.kafka_intake import CommandIntake
from transport.principals import Authenticator

pytestmark = [pytest.mark.timeout(180)]
ALLOCATION = {"total_equity": 1000, "world_allocations": {"kw": 0.5, "kw2": 0.5}, "positions": []}
Record = tuple[bytes, bytes, dict[str, str]]  # key, value, headers


def _tokens() -> dict[str, str]:
    """Minted when the test runs (not at import): they expire five minutes later."""
    return {"owner": token({"*": "owner"}, sub="admin"),
            "operator": token(["operator:kw", "operator:kw2"], sub="carol"),
            "operator-of-kw": token({"kw": "operator"}, sub="dave"),
            "reader": token({"kw": "reader"}, sub="erin")}


def _auth_env() -> dict[str, str]:
    prefix = "WORLDSERVICE__SERVER__AUTH__JWT__"
    return {f"{prefix}ALGORITHM": "HS256", f"{prefix}SECRET": SECRET, f"{prefix}ISSUER": ISSUER,
            f"{prefix}AUDIENCE": AUDIENCE}


def _command(kind: str, correlation: str, bearer: str | None, replies: str, **fields: Any) -> Record:
    headers = {"reply_to": replies, "correlation_id": correlation}
    if bearer is not None:
        headers["authorization"] = f"Bearer {bearer}"
    return b"kw", msgspec.json.encode({"kind": kind, "world_id": "kw", **fields}), headers


def _put(weight: float) -> dict[str, Any]:
    return {"body": {"strategy_id": "s1", "side": "long", "active": True, "weight": weight}}


def _refused_and_accepted(replies: str, tokens: dict[str, str]) -> list[Record]:
    """All keyed ``kw`` (one partition, so in this order): the refused ones between the accepted ones."""
    rename = {"body": {"name": "hijacked"}}
    owner, operator, reader = tokens["owner"], tokens["operator"], tokens["reader"]
    return [
        _command("update_world", "no-token", None, replies, **rename),
        _command("update_world", "bad-token", "not.a.jwt", replies, **rename),
        _command("update_world", "reader", reader, replies, **rename),
        _command("apply_tick", "tick", owner, replies),
        _command("refresh_projection", "refresh", owner, replies),
        _command("hold_for_allocation", "hold", owner, replies, run_id="h1"),
        _command("put_activation", "put", operator, replies, command_id="kc1", actor="mallory", **_put(0.4)),
        _command("put_activation", "reused", operator, replies, command_id="kc1", **_put(0.9)),
        _command("upsert_allocations", "one-world-role", tokens["operator-of-kw"], replies,
                 body={"run_id": "ka1", **ALLOCATION}),
        _command("upsert_allocations", "allocate", operator, replies, body={"run_id": "ka2", **ALLOCATION}),
        _command("upsert_allocations", "no-executor", operator, replies,
                 body={"run_id": "ka3", **ALLOCATION, "execute": True}),
        _command("update_world", "rename", owner, replies, body={"name": "renamed"}),
    ]


EXPECTED_DEAD = {"no-token": "401 unauthenticated: missing bearer token", "bad-token": "401 unauthenticated",
                 "reader": "403 forbidden: role 'owner' required on world 'kw'", "tick": "invalid command",
                 "refresh": "invalid command", "hold": "invalid command",
                 "one-world-role": "403 forbidden: role 'operator' required on world 'kw2'"}


def _audit(client: httpx.Client, world_id: str) -> list[dict[str, Any]]:
    return client.get(f"/worlds/{world_id}/audit").json()


def _seed(client: httpx.Client) -> None:
    for world_id in ("kw", "kw2"):
        assert client.post("/worlds", json={"id": world_id}).status_code == 201
    body = {"strategy_id": "s1", "side": "long", "active": True, "weight": 0.1}
    assert client.put("/worlds/kw/activation", json=body).status_code == 200


def test_kafka_commands_need_the_http_roles_and_internal_kinds_are_refused(tmp_path: Path,
                                                                          kafka_brokers: str) -> None:
    topics, replies = _topics(), unique_topic("replies")
    env = {**daemon_kafka_env(kafka_brokers, topics), **_auth_env()}
    with DaemonProcess(tmp_path / "d", tmp_path / "d.log", env=env) as daemon:
        daemon.start()
        tokens = _tokens()
        owner = {"Authorization": f"Bearer {tokens['owner']}"}
        with httpx.Client(base_url=daemon.url, timeout=60, headers=owner) as client:
            _seed(client)
            before = {w: _audit(client, w) for w in ("kw", "kw2")}
            commands = _refused_and_accepted(replies, tokens)
            asyncio.run(_send_commands(kafka_brokers, topics["commands"], commands))
            answered = {r["correlation_id"]: r for r in asyncio.run(_consume_all(kafka_brokers, replies, 5))}
            letters = asyncio.run(_consume_all(kafka_brokers, topics["dlq"], 7))
            dead = {d["headers"]["correlation_id"]: d for d in letters}

            assert sorted(answered) == ["allocate", "no-executor", "put", "rename", "reused"], dead
            assert {c: answered[c]["status"] for c in answered} == {
                "put": 200, "reused": 409, "allocate": 200, "no-executor": 503, "rename": 200}
            assert "'kc1'" in answered["reused"]["body"]["detail"]
            assert sorted(dead) == sorted(EXPECTED_DEAD)
            for correlation, reason in EXPECTED_DEAD.items():
                assert dead[correlation]["error"].startswith(reason), dead[correlation]["error"]
                letter = dead[correlation]
                assert "authorization" not in {**letter["headers"], **letter["_headers"]}  # no credential

            # Nothing refused was written: the only new audit entries are the accepted commands'.
            for world_id in ("kw", "kw2"):
                added = _audit(client, world_id)[len(before[world_id]):]
                assert _audit(client, world_id)[:len(before[world_id])] == before[world_id]
                expected = {"put", "rename", "allocation:ka2"} if world_id == "kw" else {"allocation:ka2"}
                assert {a["correlation_id"] for a in added} == expected, added
            world = client.get("/worlds/kw").json()
            entry = client.get("/worlds/kw/activation", params={"strategy_id": "s1", "side": "long"}).json()
            assert world["name"] == "renamed" and entry["weight"] == 0.4
            put_audit = next(a for a in _audit(client, "kw") if a["correlation_id"] == "put")
            assert put_audit["actor"] == "carol"  # the token's subject, not the body's "mallory"

            # The Kafka reply is what POST /allocations answers for the same run (a replay of it now).
            over_http = client.post("/allocations", json={"run_id": "ka2", **ALLOCATION},
                                    headers={"Authorization": f"Bearer {tokens['operator']}"})
            assert over_http.status_code == 200 and over_http.json() == answered["allocate"]["body"]
            assert set(client.get("/allocations").json()["allocations"]) == {"kw", "kw2"}


# --- the intake alone (no broker): header matching, and auth off is unchanged ----------------------------


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.commands: list[Any] = []

    async def send_raw_many(self, messages: Any) -> None:
        self.sent += [(topic, msgspec.json.decode(value)) for topic, _key, value, _headers in messages]

    async def call(self, command: Any) -> Reply:
        self.commands.append(command)
        return Reply(status=200, body={})


def _record(headers: dict[str, str], **fields: Any) -> ConsumedRecord:
    value = msgspec.json.encode({"kind": "put_activation", "world_id": "kw", **_put(0.4), **fields})
    return ConsumedRecord(topic="cmds", partition=0, offset=7, key="kw", value=value, headers=headers)


def _intake(recorder: _Recorder, auth: Auth | None) -> CommandIntake:
    return CommandIntake(call=recorder.call, sender=recorder, dlq_topic="dlq",
                         authenticator=Authenticator(auth) if auth is not None else None,
                         auth_header=auth.header if auth is not None else "Authorization")


def test_the_token_header_is_the_http_edges_and_matched_in_any_case() -> None:
    auth = msgspec.convert({"header": "X-Api-Token", "tokens": ["svc-token"], "service_role": "operator"},
                           Auth)
    recorder = _Recorder()
    intake = _intake(recorder, auth)
    asyncio.run(intake.handle([_record({"x-api-token": "Bearer svc-token"}, actor="mallory"),
                               _record({"authorization": "Bearer svc-token"})]))
    assert [(c.actor, c.command_id) for c in recorder.commands] == [("service", "kafka:cmds:0:7")]
    assert [(topic, letter["error"]) for topic, letter in recorder.sent] == [
        ("dlq", "401 unauthenticated: missing bearer token")]


def test_with_auth_off_commands_are_taken_as_sent() -> None:
    recorder = _Recorder()
    asyncio.run(_intake(recorder, None).handle([_record({}, actor="ops-cli", command_id="c9")]))
    assert [(c.actor, c.command_id) for c in recorder.commands] == [("ops-cli", "c9")]
    assert recorder.sent == []


def test_every_kind_an_edge_accepts_declares_its_role_and_no_internal_kind_is_accepted() -> None:
    external, internal = set(get_args(ExternalCommand)), set(get_args(InternalCommand))
    assert external <= set(REQUIRED_ROLE) and not external & internal
    assert {AckActivation, ApplyTick, HoldForAllocation, ReleaseAllocation, RefreshProjection} <= internal
    assert {REQUIRED_ROLE[k] for k in (UpdateWorld, AddPolicy, SetDecisions)} == {"owner"}
    assert {REQUIRED_ROLE[k] for k in (PutActivation, StartApply, UpsertAllocations, PutNode)} == {"operator"}
