"""ApplyDriver: drives one world's 2-phase apply runs (start, ACKs, ticks, resume, settle).

Owned by its ``WorldActor`` and called only from that actor's thread, so it shares the world's
serialization: it reads the world's state and commits through the world's ``persist``. The rules are
pure (``domain.apply``); this object sequences them, commits each transition before the next and answers
the callers parked on a run once it settles.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from actors.bridge import Reply, Request, answer_reply, outcome_reply, refusal_reply
from actors.faults import InjectedFault, crash_point, fault_point
from actors.metrics import ActorMetrics
from actors.promotion_waiters import origin_of, translated
from config import Config
from domain import apply, apply_answers, promotions_apply
from domain.apply import ApplySettings
from domain.state import Outcome, WorldState
from messages.commands import AckActivation, AutoApplyPromotion, Command, StartApply
from messages.errors import CommandRejected

log = structlog.get_logger("worldservice.world")

Persist = Callable[[Outcome, "str | None", "str | None", datetime], None]


def apply_settings(config: Config) -> ApplySettings:
    """The pure apply rules' settings, read from the daemon's configuration."""
    ap = config.worldservice.apply
    return ApplySettings(await_acks=config.await_acks(), gap_timeout_ms=ap.activation_gap_timeout_ms,
                         timeout_policy=ap.timeout_policy, deadline_ms=ap.deadline_ms,
                         resend_initial_ms=ap.resend_initial_ms, resend_max_ms=ap.resend_max_ms)


class ApplyDriver:
    def __init__(self, world_id: str, state: Callable[[], WorldState], persist: Persist,
                 clock: Callable[[], datetime], settings: ApplySettings, metrics: ActorMetrics) -> None:
        self.world_id = world_id
        self._state = state  # the world's current state (loaded)
        self._persist = persist
        self._clock = clock
        self.settings = settings
        self._metrics = metrics
        self._waiters: dict[str, list[Request]] = {}  # run_id -> callers answered when the run settles

    # --- entry points (one per message kind) ----------------------------------------------------

    def start(self, request: Request, now: datetime) -> Reply | None:
        command = request.command
        assert isinstance(command, StartApply)
        return self._run(request, command, apply.begin(self._state(), command, now, self.settings), now)

    def promote(self, request: Request, now: datetime) -> Reply | None:
        """A live promotion: judged by the domain; one that passes is an ordinary apply run, started and
        driven like any ``StartApply``, whose settled reply is translated into the promotion's answer."""
        command = request.command
        promote = promotions_apply.auto_apply if isinstance(command, AutoApplyPromotion) else \
            promotions_apply.apply_promotion
        step = promote(self._state(), command, now, self.settings)  # type: ignore[arg-type]
        if step.failure is not None:
            self._metrics.promotion_failed(self.world_id, step.failure)
        if step.start is None:
            self._persist(step.outcome, command.actor, command.correlation_id, now)
            return outcome_reply(step.outcome)
        waiter = translated(request, step.start, step.success,
                            lambda reason: self._metrics.promotion_failed(self.world_id, reason))
        return self._run(waiter, step.start, step.outcome, now)

    def record_ack(self, ack: AckActivation, now: datetime) -> apply.AckRecorded:
        """Make one ACK durable in its run, judged against the committed record (the ACK intake counts
        the verdict). Nothing moves on: the intake tells the world once a phase is fully acknowledged."""
        recorded = apply.record_ack(self._state(), ack, now)
        if recorded.outcome is not None:
            self._persist(recorded.outcome, None, None, now)
        return recorded

    def phase_acknowledged(self, run_id: str) -> None:
        """Every event of a phase is recorded as acknowledged: take the transitions that waited for it."""
        if run_id in self._state().runs:
            self._carry_on(run_id, None, None)

    def tick(self, now: datetime) -> None:
        run = self._state().open_run()
        if run is not None:
            self._carry_on(run.run_id, apply.tick(self._state(), now, self.settings), now)

    def resume(self) -> None:
        """A freshly loaded world with an open run (after a restart or a reload): re-send what it waits
        for, then carry it on from its persisted phase."""
        state = self._state()
        run = state.open_run()
        if run is None:
            return
        log.info("apply_resumed", world_id=self.world_id, run_id=run.run_id, phase=run.phase)
        now = self._clock()
        # Past its deadline it rolls back rather than forward; otherwise what it waits for goes out again.
        outcome = apply.tick(state, now, self.settings) or apply.resend_all(state, now)
        if outcome is not None:
            self._persist(outcome, None, None, now)
        self._drive(run.run_id, None)

    def release_parked(self, reply: Reply, request: Request) -> bool:
        """Answer every parked caller with ``reply`` (the world reset); whether ``request`` was one."""
        parked = [waiter for waiters in self._waiters.values() for waiter in waiters]
        self._waiters.clear()
        for waiter in parked:
            waiter.reply(reply)
        return any(origin_of(waiter) is request for waiter in parked)

    # --- the run ------------------------------------------------------------------------------

    def _run(self, request: Request, command: StartApply, outcome: Outcome, now: datetime) -> Reply | None:
        fresh = command.body.run_id not in self._state().runs
        if outcome.refused:  # refused by the default-safe rule: audited, no run started
            self._persist(outcome, command.actor, command.correlation_id, now)
            return outcome_reply(outcome)
        if fresh:
            self._persist(outcome, command.actor, command.correlation_id, now)
            crash_point("apply.after_freeze")
        run_id = command.body.run_id
        self._waiters.setdefault(run_id, []).append(request)
        if fresh:
            self._drive(run_id, command)
        return self._settle(run_id, first_answer=fresh)

    def _carry_on(self, run_id: str, outcome: Outcome | None, now: datetime | None) -> None:
        """Commit what a timer changed, take the transitions that unblocked, answer if settled."""
        if outcome is not None and now is not None:
            self._persist(outcome, None, None, now)
        self._drive(run_id, None)
        self._settle(run_id, first_answer=True)

    def _drive(self, run_id: str, command: Command | None) -> None:
        """Take every transition that does not wait for ACKs, each committed before the next. A failure
        inside a transition rolls the run back; a storage failure leaves it at its last committed phase."""
        actor, correlation = (command.actor, command.correlation_id) if command else (None, None)
        while True:
            now = self._clock()
            try:
                outcome = apply.advance(self._state(), run_id, now, self.settings)
                if outcome is None:
                    return
                phase = outcome.state.runs[run_id].phase
                fault_point(f"apply.{phase}")
            except (InjectedFault, CommandRejected) as exc:
                log.error("apply_failed", world_id=self.world_id, run_id=run_id, error=str(exc))
                self._persist(apply.rollback(self._state(), run_id, str(exc), now), actor, correlation, now)
                return
            self._persist(outcome, actor, correlation, now)
            crash_point(f"apply.after_{phase}")

    def _settle(self, run_id: str, first_answer: bool) -> Reply | None:
        """Answer a run's parked callers once it completed, rolled back or is held awaiting ACKs."""
        state = self._state()
        try:
            settled = apply_answers.settled_reply(state.runs[run_id], first_answer)
        except CommandRejected as exc:
            reply = refusal_reply(exc)
        else:
            if settled is None:
                return None
            reply = answer_reply(*settled)
        waiters = self._waiters.pop(run_id, [])
        if waiters:
            log.info("command", world_id=self.world_id, kind="StartApply", run_id=run_id, status=reply.status,
                     phase=state.runs[run_id].phase, callers=len(waiters))
        for waiter in waiters:
            waiter.reply(reply)
        return None
