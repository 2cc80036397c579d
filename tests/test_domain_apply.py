"""The apply state machine without actors: ACK order and duplicates never change the outcome."""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import apply
from domain.apply import ApplySettings
from domain.state import WorldState
from messages.activation import ActivationEntry
from messages.apply import ApplyRequest
from messages.commands import AckActivation, StartApply
from messages.worlds import WorldRecord

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
AWAIT = ApplySettings(await_acks=True)


def _world(entries: int) -> WorldState:
    activation = {f"s{i}": {"long": ActivationEntry(active=True, weight=0.5, ts="t", etag=f"act:w:s{i}:long:{i}")}
                  for i in range(entries)}
    record = msgspec.convert({"id": "w", "created_at": "t", "updated_at": "t"}, WorldRecord)
    return WorldState(world_id="w", world=record, activation=activation, activation_counter=entries)


def _start(state: WorldState) -> WorldState:
    body = msgspec.convert({"run_id": "r1", "plan": {"activate": ["s0", "new"], "deactivate": ["s1"]}}, ApplyRequest)
    return apply.begin(state, StartApply(world_id="w", body=body), NOW, AWAIT).state


def _drive(state: WorldState) -> WorldState:
    while (outcome := apply.advance(state, "r1", NOW, AWAIT)) is not None:
        state = outcome.state
    return state


def _ack(state: WorldState, run_id: str, sequence: int, phase: str) -> WorldState:
    outcome = apply.record_ack(state, AckActivation(world_id="w", run_id=run_id, sequence=sequence, phase=phase),
                               NOW).outcome
    return _drive(outcome.state) if outcome is not None else state


def _phase_acks(state: WorldState, phase: str) -> list[tuple[str, int, str]]:
    return [("r1", e.sequence, e.phase) for e in state.runs["r1"].events if e.phase == phase]


def _in_order(entries: int) -> WorldState:
    state = _drive(_start(_world(entries)))
    for phase in ("freeze", "unfreeze"):
        for run_id, seq, ph in _phase_acks(state, phase):
            state = _ack(state, run_id, seq, ph)
    return state


def _outcome(state: WorldState) -> tuple:
    run = state.runs["r1"]
    return (run.phase, state.decisions, msgspec.to_builtins(state.activation), state.activation_counter,
            sorted(e.sequence for e in run.events if e.acked))


@settings(max_examples=60, deadline=None)
@given(entries=st.integers(min_value=1, max_value=5), data=st.data())
def test_duplicate_and_out_of_order_acks_give_the_in_order_outcome(entries: int, data: st.DataObject) -> None:
    expected = _outcome(_in_order(entries))
    state = _drive(_start(_world(entries)))
    for phase in ("freeze", "unfreeze"):
        acks = _phase_acks(state, phase)
        noise = [("other-run", 1, phase), ("r1", 999, phase), ("r1", acks[0][1], "unknown")]
        stream = data.draw(st.lists(st.sampled_from(acks + noise), max_size=12)) + acks
        for run_id, seq, ph in data.draw(st.permutations(stream)):
            state = _ack(state, run_id, seq, ph)
    assert _outcome(state) == expected
    assert expected[0] == "completed"


def test_switch_does_not_happen_before_the_last_freeze_ack() -> None:
    state = _drive(_start(_world(3)))
    acks = _phase_acks(state, "freeze")
    for run_id, seq, phase in acks[:-1]:
        state = _ack(state, run_id, seq, phase)
        assert state.runs["r1"].phase == "freezing" and state.decisions == []
    state = _ack(state, *acks[-1])
    assert state.runs["r1"].phase == "unfreezing" and state.decisions == ["new", "s0"]


def test_acks_after_the_run_finished_change_nothing() -> None:
    state = _in_order(2)
    again = _ack(state, "r1", 1, "freeze")
    assert _outcome(again) == _outcome(state)
