"""RiskConsumer: the Risk Hub's ControlBus consumer (reference ``RiskHubControlBusConsumer``, §3.7).

For each ``evaluation_run_created`` event the new run is validated against its world's newest fresh
snapshot right away (the reference's validation consumer). For each ``risk_snapshot_updated`` event:
validate it by the push's rules (``ttl_sec`` defaults to the hub's; allowed producers and stages, the size
caps), drop it when expired, store its large inline parts in the blob store (any producer's event, as a push:
the row holds refs), drop a duplicate (its idempotency key was done within the last ``window`` events), store it through
its world's actor (a snapshot this daemon announced itself is a known version and hash there: nothing is
written twice), and have the extended-validation worker run on it. The event's ``reply`` is answered when all
of that is done, so the consumer commits its offset only then and a restart resumes after the last event
that was fully done (a replayed one changes nothing: the world keeps a run's block once per snapshot).

Failures: a malformed event, or one its world refuses (unknown world, version conflict), goes to the
dead-letter topic at once; anything else (storage down, a failed run) is tried again, ``max_attempts`` in
all with ``backoff * attempt`` between, then dead-lettered. Every answer is final: the consumer goes on.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import pykka
import structlog

from actors.bridge import Reply, ReplyHook, Request, error_reply
from actors.extended_worker import Validate
from actors.risk_metrics import RiskHubMetrics, stage_label
from domain import risk_snapshots as rs
from messages.errors import CommandRejected
from messages.risk_hub import RiskSnapshot, StoreRiskSnapshot
from storage.sql_types import StorageUnavailable

log = structlog.get_logger("worldservice.risk_consumer")
_EVENT_ONLY = ("event_version", "idempotency_key")
RUN_CREATED = "evaluation_run_created"


@dataclass(frozen=True, slots=True)
class RiskEventReceived:
    raw: bytes
    reply: ReplyHook


class DeadLetterNote(msgspec.Struct, kw_only=True):
    """What ``<topic>.dlq`` receives (the reference's shape)."""

    world_id: str | None
    stage: str | None
    attempts: int
    error: str
    event: Any


@dataclass(frozen=True, slots=True)
class _Finished:
    received: RiskEventReceived
    snapshot: RiskSnapshot
    key: str
    attempt: int
    reply: Reply
    started: float


@dataclass(frozen=True, slots=True)
class _Remember:
    key: str


class _Poison(Exception):
    pass


def _snapshot_of(event: Any, ttl_default: int) -> tuple[RiskSnapshot, str]:
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        raise _Poison("not a CloudEvent with data")
    data = dict(event["data"])
    key = str(data.get("idempotency_key") or "")
    for name in _EVENT_ONLY:
        data.pop(name, None)
    data.setdefault("ttl_sec", ttl_default)
    try:
        snapshot = msgspec.convert(data, RiskSnapshot)
    except msgspec.ValidationError as exc:
        raise _Poison(f"invalid snapshot: {exc}") from None
    return snapshot, key or f"{snapshot.world_id}|{snapshot.version}|{snapshot.hash}"


def _run_event_ids(event: dict[str, Any]) -> tuple[str, str]:
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    return str(data.get("world_id") or ""), str(data.get("idempotency_key") or "")


class RiskConsumer(pykka.ThreadingActor):
    def __init__(self, send: Callable[[Request], None], validate: Callable[[Validate], None],
                 clock: Callable[[], datetime], metrics: RiskHubMetrics, *, ttl_default: int = 900,
                 max_attempts: int = 3, backoff_s: float = 0.5, window: int = 1000,
                 latest: Callable[[str], RiskSnapshot | None] | None = None, limits: rs.HubLimits | None = None,
                 store_parts: Callable[[RiskSnapshot], RiskSnapshot] | None = None) -> None:
        super().__init__()
        self._limits = limits or rs.HubLimits(ttl_sec_default=ttl_default)
        self._store_parts = store_parts or (lambda snapshot: snapshot)
        self._latest = latest or (lambda world_id: None)
        self._send = send
        self._validate = validate
        self._clock = clock
        self._metrics = metrics
        self._ttl_default = ttl_default
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._window = window
        self._done: OrderedDict[str, None] = OrderedDict()

    def on_receive(self, message: object) -> None:
        if isinstance(message, RiskEventReceived):
            self._received(message)
        elif isinstance(message, _Finished):
            self._finished(message)
        elif isinstance(message, _Remember):
            self._remember(message.key)

    def _received(self, received: RiskEventReceived) -> None:
        try:
            event = msgspec.json.decode(received.raw)
        except msgspec.DecodeError as exc:
            self._dead_letter(received, None, 1, f"undecodable event: {exc}", received.raw.decode(errors="replace"))
            return
        if isinstance(event, dict) and event.get("type") == RUN_CREATED:
            self._run_created(received, event)
            return
        if not isinstance(event, dict) or event.get("type") != rs.EVENT_TYPE:
            received.reply(Reply(status=204))  # another event type on a shared topic: not ours
            return
        try:
            snapshot, key = _snapshot_of(event, self._ttl_default)
            snapshot = self._checked(snapshot)
        except _Poison as exc:
            self._dead_letter(received, None, 1, str(exc), event)
            return
        self._process(received, snapshot, key, 1, time.perf_counter())

    def _checked(self, snapshot: RiskSnapshot) -> RiskSnapshot:
        """The push's rules (an expired one is left for ``_process`` to drop, not dead-lettered)."""
        now = self._clock()
        if rs.is_expired(snapshot, now):
            return snapshot
        try:
            return rs.revalidated(snapshot, now, self._limits)
        except CommandRejected as exc:
            raise _Poison(f"invalid snapshot payload: {exc.detail}") from None

    def _process(self, received: RiskEventReceived, snapshot: RiskSnapshot, key: str, attempt: int,
                 started: float) -> None:
        if key in self._done:
            self._metrics.snapshot("dedupe", snapshot.stage)
            received.reply(Reply(status=204))
            return
        if rs.is_expired(snapshot, self._clock()):
            self._metrics.snapshot("expired", snapshot.stage)
            received.reply(Reply(status=204))
            return
        tell = self.actor_ref.tell

        def finish(reply: Reply) -> None:  # on another actor's thread: back into this mailbox
            tell(_Finished(received, snapshot, key, attempt, reply, started))

        def stored(reply: Reply) -> None:
            if not reply.ok:
                finish(reply)
                return
            self._validate(Validate(snapshot=snapshot, done=finish,
                                    correlation_id=f"risk_snapshot:{snapshot.world_id}:{snapshot.hash}"))

        try:
            by_reference = self._store_parts(snapshot)
        except StorageUnavailable as exc:  # a blob store down is worth another attempt
            finish(error_reply(503, f"blob store unavailable: {exc}"))
            return
        self._send(Request(command=StoreRiskSnapshot(world_id=snapshot.world_id, snapshot=by_reference,
                                                     correlation_id=f"risk_snapshot:{snapshot.world_id}:{snapshot.hash}"),
                           reply=stored))

    def _run_created(self, received: RiskEventReceived, event: dict[str, Any]) -> None:
        """A new evaluation run is validated against its world's latest fresh snapshot at once, not only at
        the next snapshot (the reference's validation consumer)."""
        world_id, key = _run_event_ids(event)
        snapshot = self._snapshot_for_run(world_id, key)
        if snapshot is None:
            received.reply(Reply(status=204))
            return
        tell = self.actor_ref.tell

        def finish(reply: Reply) -> None:
            if reply.ok and key:
                tell(_Remember(key))
            received.reply(Reply(status=200) if reply.ok else reply)

        self._validate(Validate(snapshot=snapshot, done=finish, event_type=RUN_CREATED,
                                correlation_id=event.get("correlation_id")))

    def _snapshot_for_run(self, world_id: str, key: str) -> RiskSnapshot | None:
        """The fresh snapshot to validate a new run against; ``None`` (counted) when there is none to do."""
        if not world_id or (key and key in self._done):
            self._metrics.event("dedupe" if world_id else "failed", RUN_CREATED, None)
            return None
        snapshot = self._latest(world_id)
        if snapshot is None or rs.is_expired(snapshot, self._clock()):
            self._metrics.missing.inc()
            return None
        return snapshot

    def _finished(self, done: _Finished) -> None:
        stage, reply = done.snapshot.stage, done.reply
        if reply.ok:
            self._remember(done.key)
            self._metrics.snapshot("processed", stage)
            self._metrics.processing.labels(stage_label(stage)).observe(time.perf_counter() - done.started)
            done.received.reply(Reply(status=200))
            return
        error = getattr(reply.body, "detail", None) or f"status {reply.status}"
        self._metrics.snapshot("failed", stage)
        permanent = 400 <= reply.status < 500
        if permanent or done.attempt >= self._max_attempts:
            self._dead_letter(done.received, done.snapshot, done.attempt, str(error),
                              msgspec.to_builtins(done.snapshot))
            return
        self._metrics.snapshot("retry", stage)
        time.sleep(self._backoff_s * done.attempt)  # this actor's own pace; the broker waits for the answer
        self._process(done.received, done.snapshot, done.key, done.attempt + 1, done.started)

    def _remember(self, key: str) -> None:
        self._done[key] = None
        while len(self._done) > self._window:
            self._done.popitem(last=False)

    def _dead_letter(self, received: RiskEventReceived, snapshot: RiskSnapshot | None, attempts: int,
                     error: str, event: Any) -> None:
        stage = snapshot.stage if snapshot is not None else None
        self._metrics.snapshot("dlq", stage)
        log.warning("risk_snapshot_dead_lettered", error=error, attempts=attempts,
                    world_id=snapshot.world_id if snapshot else None)
        note = DeadLetterNote(world_id=snapshot.world_id if snapshot else None, stage=stage, attempts=attempts,
                              error=error, event=event)
        received.reply(Reply(status=202, body=note, permanent=True))
