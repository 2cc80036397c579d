"""What an apply run answers: the reply its waiting callers get once it settles, and its record as served
by ``GET /worlds/{id}/apply/{run_id}``."""

from __future__ import annotations

from typing import Any

from domain.apply import awaiting, downgrade_note
from domain.state import WorldState, require_world
from messages.apply import ApplyAck, ApplyRun, ApplyRunOut, RunEventOut
from messages.errors import CommandRejected, Refusal, Result, not_found


def settled_reply(run: ApplyRun, first_answer: bool) -> tuple[Result, Any] | None:
    """What a caller waiting on ``run`` is told, or ``None`` while the run is still moving.

    The request that saw its run roll back is refused as ``FAILED``, ``apply failed`` (the reference's 500);
    a later repeat of that run id gets the stored ``ok: false`` outcome and is never retried.
    """
    if run.phase == "completed":
        return Result.OK, ApplyAck(ok=True, run_id=run.run_id, active=run.target, phase="completed",
                             **downgrade_note(run))
    if run.phase == "rolled_back":
        if first_answer:
            raise CommandRejected(Refusal.FAILED,
                                  f"apply failed: {run.error}; the world stays frozen until a new apply")
        return Result.OK, ApplyAck(ok=False, run_id=run.run_id, active=run.previous, phase="rolled_back")
    if run.held:
        return Result.ACCEPTED, ApplyAck(ok=True, run_id=run.run_id, active=run.target, phase="awaiting_ack",
                             **downgrade_note(run))
    return None


def run_out(state: WorldState, run_id: str) -> ApplyRunOut:
    require_world(state)
    run = state.runs.get(run_id)
    if run is None:
        raise not_found("apply run")
    events = [RunEventOut(sequence=e.sequence, phase=e.phase, strategy_id=e.strategy_id, side=e.side,
                          etag=e.etag, acked=e.acked, acked_at=e.acked_at) for e in run.events]
    return ApplyRunOut(
        world_id=run.world_id, run_id=run.run_id, phase="awaiting_ack" if run.held else run.phase,
        state=run.phase, active=run.target, previous=run.previous, plan_hash=run.plan_hash,
        sequence=run.sequence, awaiting=awaiting(run), events=events, execution_domain=run.execution_domain,
        dataset_fingerprint=run.dataset_fingerprint, started_at=run.started_at, updated_at=run.updated_at,
        deadline=run.deadline, resends=run.resends, error=run.error, downgraded=run.downgraded,
    )
