"""Pure activation rules, without threads or storage."""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.activation import fold_audit, state_hash
from domain.effects import AuditRecord
from domain.handle import handle
from domain.state import WorldState
from messages.commands import external_command_decoder
from messages.errors import Refusal

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _cmd(kind: str, **fields):  # type: ignore[no-untyped-def]
    return external_command_decoder.decode(msgspec.json.encode({"kind": kind, "world_id": "w", **fields}))


def _world() -> tuple[WorldState, list[tuple[str, dict]]]:
    outcome = handle(WorldState(world_id="w"), _cmd("create_world", body={"id": "w"}), NOW)
    return outcome.state, _audit(outcome.effects)


def _audit(effects) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    return [(e.event, msgspec.json.decode(msgspec.json.encode(e.result))) for e in effects if isinstance(e, AuditRecord)]


writes = st.lists(st.tuples(st.sampled_from(["s1", "s2", "s3"]), st.sampled_from(["long", "short"]),
                            st.booleans(), st.floats(0, 1), st.booleans()), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(writes)
def test_replaying_the_audit_log_gives_the_same_state_hash(ops) -> None:  # type: ignore[no-untyped-def]
    state, log = _world()
    for sid, side, active, weight, delete in ops:
        if delete:
            outcome = handle(state, _cmd("delete_world", force=True), NOW)
            state, log = outcome.state, log + _audit(outcome.effects)
            outcome = handle(state, _cmd("create_world", body={"id": "w"}), NOW)
        else:
            body = {"strategy_id": sid, "side": side, "active": active, "weight": weight}
            outcome = handle(state, _cmd("put_activation", body=body), NOW)
        state, log = outcome.state, log + _audit(outcome.effects)
    counter, entries = fold_audit(log)
    assert state_hash(counter, entries) == state_hash(state.activation_counter, state.activation)


def test_etag_counter_never_goes_back() -> None:
    state, _ = _world()
    etags = []
    for i in range(5):
        outcome = handle(state, _cmd("put_activation", body={"strategy_id": f"s{i % 2}", "side": "long",
                                                              "active": True}), NOW)
        state = outcome.state
        etags.append(int(outcome.reply.etag.rsplit(":", 1)[1]))
    assert etags == [1, 2, 3, 4, 5]


def test_refused_command_leaves_state_untouched() -> None:
    """A refused live override is a 409 whose only effect is its audit entry (which rule, rejected)."""
    state, _ = _world()
    refused = handle(state, _cmd("put_activation", body={"strategy_id": "s", "side": "long", "active": True,
                                                         "effective_mode": "live"}), NOW)
    assert refused.result == Refusal.CONFLICT and "allow_live_disabled" in refused.reply.detail
    assert [type(e).__name__ for e in refused.effects] == ["AuditRecord"]
    assert refused.effects[0].result["outcome"] == "rejected"
    assert refused.state.activation == {} and refused.state.activation_counter == 0


def test_state_hash_matches_the_reference_document_format() -> None:
    """Hash input is ``json.dumps({"version", "state"}, sort_keys=True)`` with default separators."""
    import json

    import blake3

    from messages.activation import ActivationEntry
    entry = ActivationEntry(active=True, weight=0.5, ts="2025-01-01T00:00:00Z", etag="act:w:s:long:1")
    doc = {"version": 1, "state": {"s": {"long": msgspec.to_builtins(entry)}}}
    expected = "blake3:" + blake3.blake3(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    assert state_hash(1, {"s": {"long": entry}}) == expected
