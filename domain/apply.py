"""The 2-phase apply run as a pure state machine.

``freezing -> switching -> unfreezing -> completed``, or ``-> rolled_back`` (the rollback is one
transaction, so ``rolling_back`` is never observable). Each function returns the next transition as an
``Outcome`` whose effects the world actor commits before it takes the next step; the run record travels in
every transition, so a daemon killed between two of them resumes from the last one.

With ``await_acks`` a run waits in ``freezing`` until every freeze event is acknowledged and in
``unfreezing`` until every unfreeze event is; ``tick`` handles the gap timeout, the deadline and re-sends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from domain import apply_switch
from domain.acks import AckRecorded, ack_verdict
from domain.activation import activation_etag, activation_event, entry_written, state_hash
from domain.default_safe import (
    LIVE,
    NOT_PROMOTED,
    capped_mode,
    live_refusals,
    may_be_live,
    mode_of,
    refusal_detail,
    refused,
)
from domain.effects import (
    AuditRecord,
    Effect,
    OutboxEvent,
    RemoveActivation,
    SaveAck,
    SaveApplyRun,
    SaveStrategies,
)
from domain.gating import COMPUTE_ONLY, GatingPlan, parse_gating, pre_promotion_failure
from domain.hashing import blake3_hex, canonical_json
from domain.policies import default_policy, normalise
from domain.selection import SelectionResult, parse_correlations, select
from domain.series_metrics import derive
from domain.state import Outcome, WorldState, require_world
from domain.timefmt import iso_z, parse_iso
from messages.activation import ActivationEntry
from messages.apply import (
    ApplyRequest,
    ApplyRun,
    EvaluateRequest,
    RunEvent,
)
from messages.commands import AckActivation, StartApply
from messages.errors import conflict, unprocessable
from messages.policies import Policy, PolicyRequest

Entries = dict[str, dict[str, ActivationEntry]]


@dataclass(frozen=True)
class ApplySettings:
    await_acks: bool = False
    gap_timeout_ms: int = 3000
    timeout_policy: str = "hold_frozen"  # or "rollback"
    deadline_ms: int = 60_000
    resend_initial_ms: int = 2000
    resend_max_ms: int = 15_000


@dataclass(frozen=True)
class RunStarted:
    """``begin``'s reply when a run was started (or is running): answer once it settles."""

    run_id: str


def _stamp(moment: datetime) -> str:
    """Run timers need sub-second precision; wire timestamps keep the reference's seconds."""
    return moment.isoformat()


# --- selecting the target set ----------------------------------------------------------------------


def plan_hash(body: ApplyRequest) -> str:
    """Everything that decides the outcome, without the run id: same id + other hash is a conflict."""
    content = {k: v for k, v in msgspec.to_builtins(body).items() if k != "run_id"}
    return blake3_hex(canonical_json(content))


def _policy_for(state: WorldState, body: EvaluateRequest) -> tuple[Any, int | None]:
    if body.policy is not None:
        return normalise(PolicyRequest(policy=body.policy)), None
    stored = default_policy(state)
    if stored is None:
        raise unprocessable("invalid policy: no plan or policy in the request and no default policy in the world")
    return normalise(PolicyRequest(policy=stored.document)), stored.version


def select_for(state: WorldState, body: EvaluateRequest) -> tuple[SelectionResult, int | None, Policy]:
    """The policy's selection over the body's metrics, the policy version it ran (none: inline) and the
    policy itself."""
    policy, version = _policy_for(state, body)
    previous = body.previous or state.decisions
    result = select(policy, body.metrics, list(previous), parse_correlations(body.correlations), body.stage,
                    derive(body.series))
    return result, version, policy


def _target(state: WorldState, body: ApplyRequest) -> tuple[list[str], int | None]:
    if body.plan is not None:
        previous = set(body.previous or state.decisions)
        return sorted((previous - set(body.plan.deactivate)) | set(body.plan.activate)), _default_version(state)
    result, version, _ = select_for(state, body)
    return result.active, version if version is not None else _default_version(state)


def _default_version(state: WorldState) -> int | None:
    return state.world.default_policy_version if state.world else None


# --- activation writes ------------------------------------------------------------------------------


@dataclass
class _Writer:
    """Accumulates one transition's activation writes: counters, etags, per-write state hashes, events."""

    state: WorldState
    run: ApplyRun
    now: datetime

    def __post_init__(self) -> None:
        self.entries: Entries = {sid: dict(sides) for sid, sides in self.state.activation.items()}
        self.counter = self.state.activation_counter
        self.effects: list[Effect] = []
        self.events: list[RunEvent] = list(self.run.events)
        self.sequence = self.run.sequence
        self.live_allowed = self.state.world is not None and may_be_live(self.state.world)

    def write(self, sid: str, side: str, entry: ActivationEntry, phase: str) -> None:
        """Every activation write of a run; ``live`` survives only while the world may be live."""
        self.counter += 1
        mode = capped_mode(entry.effective_mode, self.live_allowed)
        entry = msgspec.structs.replace(entry, etag=activation_etag(self.state.world_id, sid, side, self.counter),
                                        run_id=self.run.run_id, ts=iso_z(self.now), effective_mode=mode)
        self.entries.setdefault(sid, {})[side] = entry
        self.sequence += 1
        digest = state_hash(self.counter, self.entries)
        event = activation_event(self.state.world_id, sid, side, entry, digest, self.counter,
                                 f"activation:{self.state.world_id}:{self.run.run_id}", self.now,
                                 phase=phase, requires_ack=True, sequence=self.sequence)
        self.events.append(RunEvent(sequence=self.sequence, phase=phase, strategy_id=sid, side=side,  # type: ignore[arg-type]
                                    etag=entry.etag, topic=event.topic, cloudevent=event.cloudevent))
        self.effects += entry_written(sid, side, entry, self.counter, event)

    def remove(self, sid: str, side: str) -> None:
        self.counter += 1
        self.entries.get(sid, {}).pop(side, None)
        self.entries = {s: sides for s, sides in self.entries.items() if sides}
        self.effects += [RemoveActivation(strategy_id=sid, side=side),
                         AuditRecord(event="activation_removed", request=None,
                                     result={"version": self.counter, "strategy_id": sid, "side": side})]

    def freeze_all(self, source: Entries) -> None:
        for sid, side, entry in _ordered(source):
            self.write(sid, side, msgspec.structs.replace(entry, active=False, freeze=True, drain=True), "freeze")

    def outcome(self, run: ApplyRun, extra: Iterable[Effect], reply: Any = None, first: Iterable[Effect] = (),
                **changes: Any) -> Outcome:
        """``first`` effects precede the writes, ``extra`` follow them: the audit log reads in order."""
        run = msgspec.structs.replace(run, sequence=self.sequence, events=self.events, updated_at=_stamp(self.now))
        state = msgspec.structs.replace(self.state, activation=self.entries, activation_counter=self.counter,
                                        runs={**self.state.runs, run.run_id: run}, **changes)
        effects = [*first, *self.effects, *extra, SaveApplyRun(run=run)]
        return Outcome(state=state, effects=effects, reply=reply)


def _ordered(entries: Entries) -> list[tuple[str, str, ActivationEntry]]:
    return [(sid, side, entries[sid][side]) for sid in sorted(entries) for side in sorted(entries[sid])]


def _stage(run: ApplyRun, stage: str, **extra: Any) -> AuditRecord:
    return AuditRecord(event="apply_stage", request=None, result={"stage": stage, "run_id": run.run_id, **extra})


def downgrade_note(run: ApplyRun) -> dict[str, str]:
    """Said wherever the run is reported (audit, reply, run record), and only when it happened."""
    return {"downgraded": run.downgraded} if run.downgraded else {}


# --- transitions -------------------------------------------------------------------------------------


def begin(state: WorldState, cmd: StartApply, now: datetime, settings: ApplySettings) -> Outcome:
    """Start a run (requested + freeze in one commit), or answer a repeated run id from its record."""
    require_world(state)
    body, digest = cmd.body, plan_hash(cmd.body)
    existing = state.runs.get(body.run_id)
    if existing is not None:
        if existing.plan_hash != digest:
            raise conflict(f"run_id {body.run_id!r} was already used with a different plan")
        return Outcome(state=state, effects=[], reply=RunStarted(existing.run_id))
    running = state.open_run()
    if running is not None:
        raise conflict(f"apply in progress: run {running.run_id!r} is {running.phase}")
    gating = parse_gating(body.gating_policy, body.stage)
    refusals = _live_refusals(state, gating)
    if refusals:
        return refused(state, "apply to live", refusals, {"run_id": body.run_id, "gating_policy": gating and
                                                           gating.document})
    target, policy_version = _target(state, body)
    run = _new_run(state, body, digest, target, policy_version, gating, now, settings)
    writer = _Writer(state, run, now)
    requested = _stage(run, "requested", plan=msgspec.to_builtins(body.plan), active=target,
                       gating_policy=gating.document if gating else None, **downgrade_note(run))
    writer.freeze_all(state.activation)
    run = _waiting(run, writer, "freeze", now, settings)
    return writer.outcome(run, [_stage(run, "freeze")], reply=RunStarted(run.run_id), first=[requested])


def _live_refusals(state: WorldState, gating: GatingPlan | None) -> list[str]:
    """A run that would make the world live (its domain, or an edge it opens into live) asks the rule;
    opening live edges without the world going live is refused outright."""
    if gating is None or (gating.execution_domain != LIVE and LIVE not in gating.enable_to):
        return []
    not_promoted = None if gating.execution_domain == LIVE else NOT_PROMOTED
    return live_refusals(require_world(state), gating.dataset_fingerprint, not_promoted)


def _new_run(state: WorldState, body: ApplyRequest, digest: str, target: list[str], policy_version: int | None,
             gating: GatingPlan | None, now: datetime, settings: ApplySettings) -> ApplyRun:
    return ApplyRun(
        world_id=state.world_id, run_id=body.run_id, plan_hash=digest, phase="freezing", target=target,
        previous=list(state.decisions), snapshot=state.activation,
        weights=dict(body.plan.weights) if body.plan else {}, policy_version=policy_version,
        started_at=_stamp(now), updated_at=_stamp(now),
        deadline=_stamp(now + timedelta(milliseconds=settings.deadline_ms)),
        **_gating_fields(state, body, target, gating),
    )


def _gating_fields(state: WorldState, body: ApplyRequest, target: list[str], gating: GatingPlan | None
                   ) -> dict[str, Any]:
    """The run keeps what Switch needs. The evidence is judged now, while the request is at hand, but the
    verdict is acted on at Switch: the seed wants a failed pre-promotion check to leave the world frozen."""
    if gating is None:
        return {}
    shorts = [sid for sid, sides in state.activation.items() if "short" in sides]
    return {"gating": gating.document, "execution_domain": gating.execution_domain,
            "dataset_fingerprint": gating.dataset_fingerprint, "downgraded": gating.downgraded,
            "freeze_timeout_ms": gating.freeze_timeout_ms,
            "pre_promotion_failure": pre_promotion_failure(gating, target, body.metrics, shorts)}


def _waiting(run: ApplyRun, writer: _Writer, phase: str, now: datetime, settings: ApplySettings) -> ApplyRun:
    """Start the ACK wait of ``phase`` when there is something to acknowledge."""
    emitted = any(e.phase == phase for e in writer.events[len(run.events):])
    if not (settings.await_acks and emitted):
        return msgspec.structs.replace(run, waiting_since=None, next_resend_at=None, held=False)
    first_resend = now + timedelta(milliseconds=settings.resend_initial_ms)
    return msgspec.structs.replace(run, waiting_since=_stamp(now), next_resend_at=_stamp(first_resend),
                                   held=False)


def awaiting(run: ApplyRun) -> str | None:
    """The ACK phase the run waits for, if any."""
    if run.waiting_since is None:
        return None
    phase = {"freezing": "freeze", "unfreezing": "unfreeze"}.get(run.phase)
    return phase if phase and _unacked(run, phase) else None


def _unacked(run: ApplyRun, phase: str) -> list[RunEvent]:
    return [e for e in run.events if e.phase == phase and not e.acked]


def advance(state: WorldState, run_id: str, now: datetime, settings: ApplySettings) -> Outcome | None:
    """The run's next transition, or ``None`` when it waits for ACKs or is finished."""
    run = state.runs.get(run_id)
    if run is None or not run.is_open or awaiting(run) is not None:
        return None
    step = {"freezing": _switch, "switching": _unfreeze, "unfreezing": _complete}[run.phase]
    return step(state, run, now, settings)


def _switch(state: WorldState, run: ApplyRun, now: datetime, settings: ApplySettings) -> Outcome:
    if run.pre_promotion_failure is not None:
        return rollback(state, run.run_id, f"pre-promotion validation failed: {run.pre_promotion_failure}", now)
    # The world may have changed since the run began (allow_live off, breaker on): ask the rule again.
    refusals = _live_refusals(state, parse_gating(run.gating) if run.gating else None)
    if refusals:
        return rollback(state, run.run_id, refusal_detail("switch to live", refusals), now)
    world = require_world(state)
    run = msgspec.structs.replace(run, phase="switching", waiting_since=None, held=False,
                                  domain_before=world.execution_domain, fingerprint_before=world.dataset_fingerprint)
    state, domain_effects = apply_switch.switched_domain(state, run, now)
    writer = _Writer(state, run, now)
    edges, edge_effects, before = apply_switch.toggle_edges(state, run, now)
    run = msgspec.structs.replace(run, edges_before=before)
    extra: list[Effect] = [SaveStrategies(table="decisions", strategies=run.target), *domain_effects,
                           *edge_effects]
    extra += apply_switch.policy_notice(state, run, now)
    extra.append(_stage(run, "switch", active=run.target, execution_domain=run.execution_domain,
                        dataset_fingerprint=run.dataset_fingerprint, **downgrade_note(run)))
    return writer.outcome(run, extra, decisions=list(run.target), edges=edges)


def _unfreeze(state: WorldState, run: ApplyRun, now: datetime, settings: ApplySettings) -> Outcome:
    """Snapshot entries reopen (active iff targeted, weights kept); new targets get long at their weight.
    A downgraded run reopens everything ``compute-only``, so Gateways keep orders gated off."""
    run = msgspec.structs.replace(run, phase="unfreezing")
    writer = _Writer(state, run, now)
    target = set(run.target)
    # Entries carry the mode a Gateway maps back onto the world's domain (a downgraded run is backtest).
    mode = {"effective_mode": COMPUTE_ONLY if run.downgraded else mode_of(require_world(state).execution_domain)}
    for sid, side, entry in _ordered(run.snapshot):
        writer.write(sid, side, msgspec.structs.replace(entry, active=sid in target, freeze=False, drain=False,
                                                        **mode), "unfreeze")
    for sid in sorted(target - set(run.snapshot)):
        entry = ActivationEntry(active=True, weight=run.weights.get(sid, 1.0), ts="", etag="", **mode)
        writer.write(sid, "long", entry, "unfreeze")
    run = _waiting(run, writer, "unfreeze", now, settings)
    return writer.outcome(run, [_stage(run, "unfreeze")])


def _complete(state: WorldState, run: ApplyRun, now: datetime, settings: ApplySettings) -> Outcome:
    run = msgspec.structs.replace(run, phase="completed", waiting_since=None, next_resend_at=None, held=False)
    return _Writer(state, run, now).outcome(run, [_stage(run, "completed", active=run.target)])


def rollback(state: WorldState, run_id: str, reason: str, now: datetime) -> Outcome:
    """Restore the activation set and decisions from before the run, frozen (an audited hold an operator
    clears with a new apply), under new etags: a counter is never reused, so no etag means two things."""
    run = msgspec.structs.replace(state.runs[run_id], phase="rolled_back", waiting_since=None,
                                  next_resend_at=None, held=False, error=reason)
    state, domain_effects = apply_switch.restored_domain(state, run, now)
    writer = _Writer(state, run, now)
    writer.effects += domain_effects
    for sid, side, _ in _ordered(state.activation):
        if side not in run.snapshot.get(sid, {}):
            writer.remove(sid, side)
    writer.freeze_all(run.snapshot)
    edges, edge_effects = apply_switch.restore_edges(state, run, now)
    extra = [SaveStrategies(table="decisions", strategies=run.previous), *edge_effects,
             _stage(run, "rolled_back", error=reason, active=run.previous)]
    return writer.outcome(run, extra, decisions=list(run.previous), edges=edges)


# --- ACKs and timers ----------------------------------------------------------------------------------


def record_ack(state: WorldState, ack: AckActivation, now: datetime) -> AckRecorded:
    """Mark one event acknowledged. Duplicates, unknown runs or sequences and finished runs change nothing;
    they and ACKs that overtake an unacknowledged lower sequence are named in ``anomaly``."""
    run = state.runs.get(ack.run_id)
    index, anomaly = ack_verdict(run, ack)
    if run is None or index is None:
        return AckRecorded(None, anomaly)
    events = list(run.events)
    events[index] = msgspec.structs.replace(events[index], acked=True, acked_at=_stamp(now))
    run = msgspec.structs.replace(run, events=events)
    return AckRecorded(_with_run(state, run, [SaveAck(run_id=run.run_id, sequence=ack.sequence, phase=ack.phase,
                                                      acked_at=_stamp(now))]), anomaly)


def _with_run(state: WorldState, run: ApplyRun, effects: list[Effect]) -> Outcome:
    """A transition that changes only the run (ACKs, holds, re-sends), not the world's activation."""
    return Outcome(state=msgspec.structs.replace(state, runs={**state.runs, run.run_id: run}), effects=effects,
                   reply=None)


def _copies(state: WorldState, events: list[RunEvent]) -> list[Effect]:
    """Re-sends carry the original sequence and idempotency key, so a Gateway that saw one drops it."""
    return [OutboxEvent(topic=e.topic, key=state.world_id, cloudevent=e.cloudevent) for e in events]


def tick(state: WorldState, now: datetime, settings: ApplySettings) -> Outcome | None:
    """Deadline -> roll back; gap timeout -> hold (or roll back, per policy); due -> re-send unacked events."""
    run = state.open_run()
    if run is None:
        return None
    expired = _expired(run, now, settings)
    if expired is not None:
        return rollback(state, run.run_id, expired, now)
    phase = awaiting(run)
    if phase is None:
        return None
    overdue = now - parse_iso(run.waiting_since or run.started_at) >= timedelta(milliseconds=settings.gap_timeout_ms)
    if overdue and not run.held and settings.timeout_policy == "rollback":
        return rollback(state, run.run_id, f"no ACK for every {phase} event within the gap timeout", now)
    return _hold_and_resend(state, run, phase, overdue, now, settings)


def _expired(run: ApplyRun, now: datetime, settings: ApplySettings) -> str | None:
    """Why the run must roll back now: its deadline, or the gating policy's ``apply.freeze_timeout_ms``."""
    if now >= _deadline(run, settings):
        return "deadline passed before the run completed"
    bound = timedelta(milliseconds=run.freeze_timeout_ms or 0)
    if run.phase == "freezing" and run.freeze_timeout_ms and now - parse_iso(run.started_at) >= bound:
        return f"still freezing after the gating policy's apply.freeze_timeout_ms ({run.freeze_timeout_ms} ms)"
    return None


def _deadline(run: ApplyRun, settings: ApplySettings) -> datetime:
    """The stored deadline, or an earlier one if the operator has since lowered ``deadline_ms``."""
    configured = parse_iso(run.started_at) + timedelta(milliseconds=settings.deadline_ms)
    return min(parse_iso(run.deadline), configured)


def _hold_and_resend(state: WorldState, run: ApplyRun, phase: str, overdue: bool, now: datetime,
                     settings: ApplySettings) -> Outcome | None:
    effects: list[Effect] = []
    missing = _unacked(run, phase)
    if overdue and not run.held:
        run = msgspec.structs.replace(run, held=True)
        effects.append(_stage(run, "awaiting_ack", ack_phase=phase, missing=[e.sequence for e in missing]))
    if run.next_resend_at is not None and now >= parse_iso(run.next_resend_at):
        effects += _copies(state, missing)
        backoff = min(settings.resend_initial_ms * 2 ** min(run.resends + 1, 16), settings.resend_max_ms)
        run = msgspec.structs.replace(run, resends=run.resends + 1,
                                      next_resend_at=_stamp(now + timedelta(milliseconds=backoff)))
    if not effects:
        return None
    run = msgspec.structs.replace(run, updated_at=_stamp(now))
    return _with_run(state, run, [*effects, SaveApplyRun(run=run)])


def resend_all(state: WorldState, now: datetime) -> Outcome | None:
    """After a restart: whatever an open run still waits for is sent again at once."""
    run = state.open_run()
    phase = awaiting(run) if run is not None else None
    if run is None or phase is None:
        return None
    copies = _copies(state, _unacked(run, phase))
    run = msgspec.structs.replace(run, resends=run.resends + 1, updated_at=_stamp(now))
    return _with_run(state, run, [*copies, SaveApplyRun(run=run)])
