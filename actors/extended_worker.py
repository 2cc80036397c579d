"""ExtendedValidationWorker: per world, the portfolio baseline VaR/ES at 99%, each candidate's incremental
VaR/ES and the stress results of one risk snapshot (``domain.extended_blocks``, numpy), written into the
world's evaluation runs by its actor (``RecordExtendedValidation``), never into their rows directly.

Large parts are resolved from the blob store first. ``done`` is answered once the world has recorded the
blocks (or the run failed), so whoever scheduled the run (the ControlBus consumer) commits only then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pykka
import structlog

from actors import faults
from actors.bridge import Reply, ReplyHook, Request, error_reply
from actors.risk_hub import expanded
from actors.risk_metrics import RiskHubMetrics, stage_label
from domain import risk_snapshots as rs
from domain.timefmt import parse_iso
from messages.risk_hub import RecordExtendedValidation, RiskSnapshot
from storage.risk_blobs import BlobStore

log = structlog.get_logger("worldservice.extended_validation")


@dataclass(frozen=True, slots=True)
class Validate:
    snapshot: RiskSnapshot
    done: ReplyHook
    correlation_id: str | None = None
    event_type: str = rs.EVENT_TYPE  # what scheduled the run (``validation_event_*``'s label)


class ExtendedValidationWorker(pykka.ThreadingActor):
    def __init__(self, blobs: BlobStore, send: Callable[[Request], None], clock: Callable[[], datetime],
                 metrics: RiskHubMetrics) -> None:
        super().__init__()
        self._blobs = blobs
        self._send = send
        self._clock = clock
        self._metrics = metrics

    def on_receive(self, message: object) -> None:
        if not isinstance(message, Validate):
            return
        stage = message.snapshot.stage
        try:
            self._validate(message, stage)
        except Exception as exc:  # noqa: BLE001 - the worker outlives any one snapshot
            log.exception("extended_validation_failed", world_id=message.snapshot.world_id, error=repr(exc))
            self._metrics.run("failure", stage)
            message.done(error_reply(503, f"extended validation failed: {exc!r}"))

    def _validate(self, message: Validate, stage: str) -> None:
        snapshot, now, started = message.snapshot, self._clock(), time.perf_counter()
        if rs.is_expired(snapshot, now):
            self._metrics.missing.inc()
            message.done(Reply(status=204))
            return
        self._metrics.lag.set(max(0.0, (now - parse_iso(snapshot.as_of)).total_seconds()))
        faults.fault_point("extended_validation.compute")
        # numpy costs the daemon's start about 80 ms: the first validation imports it instead.
        from domain.extended_blocks import blocks_for

        blocks = blocks_for(expanded(snapshot, self._blobs))
        command = RecordExtendedValidation(world_id=snapshot.world_id, correlation_id=message.correlation_id,
                                           snapshot_version=snapshot.version, blocks=blocks)
        self._metrics.run("scheduled", stage)

        def recorded(reply: Reply) -> None:  # on the world's thread
            elapsed = time.perf_counter() - started
            self._metrics.run("success" if reply.ok else "failure", stage)
            self._metrics.run_latency.labels(stage=stage_label(stage)).observe(elapsed)
            self._metrics.event("processed" if reply.ok else "failed", message.event_type, stage)
            self._metrics.event_latency.labels(message.event_type, stage_label(stage)).observe(elapsed)
            message.done(reply)

        self._send(Request(command=command, reply=recorded))
