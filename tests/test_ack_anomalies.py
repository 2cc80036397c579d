"""Gateway ACKs that are refused (invalid, duplicate, unknown run, finished run, unknown sequence) or taken
out of order: the pure verdict names the reason, the actors count it (``reason`` label) and log one warning
line each; none of them changes an apply's outcome."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from domain import apply
from domain.acks import ACK_ANOMALIES
from messages.commands import AckActivation
from tests.conftest import Harness
from tests.test_apply import FakeGateway, _apply_in_background, _wait_for_phase, _world, apply_api, clock  # noqa: F401
from tests.test_domain_apply import NOW, _drive, _in_order, _start
from tests.test_domain_apply import _world as _world_state


def _ack(state: Any, sequence: int, phase: str = "freeze", run_id: str = "r1") -> apply.AckRecorded:
    return apply.record_ack(state, AckActivation(world_id="w", run_id=run_id, sequence=sequence, phase=phase), NOW)


def test_each_irregular_ack_is_named_and_only_out_of_order_ones_are_taken() -> None:
    state = _drive(_start(_world_state(3)))  # freeze events 1, 2, 3 wait for ACKs
    assert _ack(state, 1, run_id="ghost") == (None, "unknown_run")
    assert _ack(state, 99) == (None, "unknown_sequence")
    assert _ack(state, 1, phase="unfreeze") == (None, "unknown_sequence")
    early = _ack(state, 3)
    assert early.anomaly == "out_of_order" and early.outcome is not None
    state = early.outcome.state
    assert _ack(state, 3) == (None, "duplicate")
    first = _ack(state, 1)
    assert first.anomaly is None and first.outcome is not None
    assert _ack(first.outcome.state, 2).anomaly is None  # nothing lower is left unacknowledged
    assert _ack(_in_order(2), 1) == (None, "run_finished")


def _count(h: Harness, reason: str) -> float:
    value = h.system.metrics.registry.get_sample_value("world_activation_ack_anomalies_total", {"reason": reason})
    assert value is not None, reason
    return value


def test_irregular_acks_are_counted_by_reason_and_logged_once_each(apply_api) -> None:  # noqa: F811
    h = apply_api(await_acks=True)
    assert {reason: _count(h, reason) for reason in ACK_ANOMALIES} == dict.fromkeys(ACK_ANOMALIES, 0.0)
    gateway = FakeGateway(h, acking=False)
    _world(h, entries={"s1": 0.5, "s2": 0.5})
    pending = _apply_in_background(h, {"run_id": "r1", "plan": {"activate": ["s3"]}})
    assert gateway.freeze_seen.wait(10)
    h.system.relay_now()
    first, second = [e for e in gateway.seen if e["phase"] == "freeze"][:2]
    with capture_logs() as logs:
        gateway.ack(second)  # before the first: taken, but noted
        gateway.ack(second)  # the intake remembers it
        gateway.ack({**first, "run_id": "ghost"})
        gateway.ack({**first, "sequence": 99})
        h.bus.publish("control.activation.ack", "w1", {"type": "activation_ack", "data": {"world_id": "w1"}})
        gateway.acking = True  # the unfreeze events are acknowledged as they come
        gateway.ack(first)
        assert _wait_for_phase(h, "r1", "completed")["phase"] == "completed"
        assert pending.result(timeout=10).status_code == 200
        gateway.ack({**first, "sequence": 98})
        h.client.get("/worlds/w1/apply/r1")  # a mailbox round trip: every ACK before it was handled
    counts = {reason: _count(h, reason) for reason in ACK_ANOMALIES}
    assert counts == {"invalid": 1, "duplicate": 1, "unknown_run": 1, "run_finished": 1, "unknown_sequence": 1,
                      "out_of_order": 1}
    lines = [line for line in logs if line["event"] == "activation_ack_anomaly"]
    assert sorted(line["reason"] for line in lines) == sorted(ACK_ANOMALIES)
    assert all(line["log_level"] == "warning" for line in lines)
    ordered = next(line for line in lines if line["reason"] == "out_of_order")
    assert {k: ordered[k] for k in ("world_id", "run_id", "sequence", "phase")} == {
        "world_id": "w1", "run_id": "r1", "sequence": second["sequence"], "phase": "freeze"}
