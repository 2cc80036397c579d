"""The seed's small rules as pure functions: root nodes of bindings, the whole activation set, the bindings
filter and the client-skew bound on timestamps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from domain.activation import activation_set, state_hash
from domain.effects import AuditRecord, SaveNode, SaveStrategies
from domain.handle import answer, handle
from domain.state import WorldState
from domain.timefmt import MAX_CLIENT_SKEW, refuse_future
from messages.commands import external_command_decoder
from messages.errors import CommandRejected, Refusal

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _cmd(kind: str, **fields):  # type: ignore[no-untyped-def]
    return external_command_decoder.decode(msgspec.json.encode({"kind": kind, "world_id": "w", **fields}))


def _world() -> WorldState:
    return handle(WorldState(world_id="w"), _cmd("create_world", body={"id": "w"}), NOW).state


def _bind(state: WorldState, *sids: str):  # type: ignore[no-untyped-def]
    return handle(state, _cmd("add_bindings", body={"strategies": list(sids)}), NOW)


def test_binding_writes_the_root_nodes_in_the_same_outcome() -> None:
    outcome = _bind(_world(), "s1", "s2", "s1")
    kinds = [type(e) for e in outcome.effects]
    assert kinds == [SaveStrategies, AuditRecord, SaveNode, AuditRecord, SaveNode, AuditRecord]
    roots = [e.node for e in outcome.effects if isinstance(e, SaveNode)]
    assert [(n.node_id, n.execution_domain, n.status, n.annotations) for n in roots] == [
        ("s1", "backtest", "unknown", {"root": True, "strategy_id": "s1"}),
        ("s2", "backtest", "unknown", {"root": True, "strategy_id": "s2"}),
    ]
    assert outcome.state.nodes["s2"]["backtest"] == roots[1]


def test_rebinding_keeps_any_existing_node_of_that_id() -> None:
    state = _bind(_world(), "s1").state
    state = handle(state, _cmd("put_node", node_id="s2", body={"status": "running", "execution_domain": "live"}),
                   NOW).state
    again = _bind(state, "s1", "s2")
    assert not [e for e in again.effects if isinstance(e, SaveNode)]
    assert again.state.nodes == state.nodes


def test_a_strategy_bound_before_its_node_existed_gets_its_root_on_the_next_binding() -> None:
    """The WSB upsert ensures the root for every strategy it names, not only the newly bound ones."""
    state = _world()
    state = msgspec.structs.replace(state, bindings=["s1"])  # e.g. bound before roots existed
    assert "s1" in _bind(state, "s1").state.nodes


def test_bindings_filter() -> None:
    state = _bind(_world(), "s1", "s2").state

    def read(sid: str | None) -> list[str]:
        return answer(state, _cmd("get_bindings", strategy_id=sid), NOW).reply.strategies

    assert (read("s2"), read("zz"), read(None)) == (["s2"], [], ["s1", "s2"])


def test_the_activation_set_is_the_hashed_document() -> None:
    state = _world()
    for sid, side in (("s1", "long"), ("s1", "short"), ("s2", "long")):
        body = {"strategy_id": sid, "side": side, "active": True}
        state = handle(state, _cmd("put_activation", body=body), NOW).state
    out = activation_set(state)
    assert out.version == 3 and out.state == state.activation
    assert out.state_hash == state_hash(out.version, out.state)
    assert out.etag == "actset:w:" + out.state_hash.removeprefix("blake3:")
    with pytest.raises(CommandRejected) as missing:
        activation_set(WorldState(world_id="gone"))
    assert missing.value.refusal == Refusal.NOT_FOUND


def test_refuse_future_allows_exactly_the_documented_skew() -> None:
    assert MAX_CLIENT_SKEW == timedelta(seconds=2)
    refuse_future("as_of", (NOW + MAX_CLIENT_SKEW).isoformat(), NOW)
    refuse_future("as_of", (NOW - timedelta(days=400)).isoformat(), NOW)  # the past is always fine
    refuse_future("as_of", "not a time", NOW)  # the caller's own parse names that
    refuse_future("as_of", None, NOW)
    with pytest.raises(CommandRejected) as ahead:
        refuse_future("data_end", (NOW + timedelta(seconds=2, milliseconds=1)).isoformat(), NOW)
    assert ahead.value.refusal == Refusal.UNPROCESSABLE and ahead.value.detail.startswith("data_end is 2.001s ahead")
    with pytest.raises(CommandRejected):
        refuse_future("as_of", "2026-01-01T00:00:03", NOW)  # naive means UTC
