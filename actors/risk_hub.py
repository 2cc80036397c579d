"""RiskHub: the actor behind ``/risk-hub/*`` (and the same commands from the command topic).

A push is validated here (``domain.risk_snapshots``), its large parts are written to the blob store, and the
snapshot goes on to its world's actor as ``StoreRiskSnapshot``: the version rule, the stored row and the
``risk_snapshot_updated`` outbox event commit with the world's other writes. The world's answer comes back
through the reply hook this actor wraps (counted, then handed to the caller): never an ``ask`` between the
two. Reads come from the immutable snapshot rows, without the expired ones (as the reference's hub).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import pykka
import structlog

from actors.bridge import STATUS, Reply, Request, error_reply, refusal_reply
from actors.risk_metrics import RiskHubMetrics
from domain import risk_snapshots as rs
from messages import commands as c
from messages.errors import CommandRejected, not_found, unprocessable
from messages.risk_hub import RiskSnapshot, RiskSnapshotList
from storage.risk_blobs import BlobStore, LatestCache
from storage.risk_rows import RiskSnapshotReads
from storage.sql_types import StorageUnavailable

log = structlog.get_logger("worldservice.risk_hub")


def expanded(snapshot: RiskSnapshot, blobs: BlobStore) -> RiskSnapshot:
    """Every part stored by reference, resolved inline (the reference stays; an unknown ref stays unresolved)."""
    changes: dict[str, Any] = {}
    for part in ("covariance", "realized_returns", "stress"):
        ref = getattr(snapshot, f"{part}_ref")
        if ref and getattr(snapshot, part) is None:
            payload = blobs.get(ref)
            if payload is not None:
                changes[part] = payload
    return msgspec.structs.replace(snapshot, **changes) if changes else snapshot


def with_parts_stored(snapshot: RiskSnapshot, blobs: BlobStore, limits: rs.HubLimits) -> RiskSnapshot:
    """The snapshot with its large parts in the blob store and replaced by their refs, whoever produced it
    (a push here, another producer's event): the blobs are written before the row that names them, so a
    ref never dangles. Raises ``StorageUnavailable`` when the blob store is down."""
    stored, parts = rs.offloaded(snapshot, limits)
    blobs.put_many(parts)
    return stored


class RiskHub(pykka.ThreadingActor):
    SERVES = frozenset(c.RISK_HUB_KINDS)

    def __init__(self, reads: RiskSnapshotReads, blobs: BlobStore, send: Callable[[Request], None],
                 clock: Callable[[], datetime], limits: rs.HubLimits, metrics: RiskHubMetrics,
                 latest: LatestCache | None = None, latest_ttl_s: int = 300) -> None:
        super().__init__()
        self._reads = reads
        self._blobs = blobs
        self._send = send
        self._clock = clock
        self._limits = limits
        self._metrics = metrics
        self._latest_cache = latest
        self._latest_ttl_s = latest_ttl_s
        self._serves: dict[type, Callable[[Any, datetime], Any]] = {
            c.LookupRiskSnapshot: self._lookup, c.LatestRiskSnapshot: self._latest, c.ListRiskSnapshots: self._list,
        }

    def on_receive(self, message: object) -> None:
        if not isinstance(message, Request):
            return
        try:
            reply = self._serve(message)
        except CommandRejected as exc:
            reply = refusal_reply(exc)
        except StorageUnavailable as exc:
            log.error("storage_unavailable", error=str(exc))
            reply = error_reply(503, "storage unavailable; retry")
        except Exception as exc:  # noqa: BLE001 - the hub outlives any one request
            log.exception("risk_hub_failed", error=repr(exc))
            reply = error_reply(500, "internal error; retry")
        if reply is not None:
            message.reply(reply)

    def _serve(self, request: Request) -> Reply | None:
        command, now = request.command, self._clock()
        if isinstance(command, c.PushRiskSnapshot):
            self._push(request, command, now)
            return None
        return Reply(status=200, body=self._serves[type(command)](command, now))

    # --- push ------------------------------------------------------------------------------------

    def _push(self, request: Request, cmd: c.PushRiskSnapshot, now: datetime) -> None:
        try:
            snapshot = rs.validated(cmd.world_id, cmd.body, cmd.producer, cmd.stage, now, self._limits)
        except CommandRejected as exc:
            self._metrics.snapshot("expired" if exc.detail == rs.EXPIRED else "failed", cmd.stage)
            log.info("command", kind="PushRiskSnapshot", world_id=cmd.world_id, status=STATUS[exc.refusal],
                     correlation_id=cmd.correlation_id)
            raise
        stored = with_parts_stored(snapshot, self._blobs, self._limits)
        forward = c.StoreRiskSnapshot(world_id=cmd.world_id, actor=cmd.actor, correlation_id=cmd.correlation_id,
                                      snapshot=stored)
        self._send(Request(command=forward, reply=self._answer_hook(request, stored.stage)))

    def _answer_hook(self, request: Request, stage: str) -> Callable[[Reply], None]:
        """Runs on the world's thread: counts the outcome, then answers the caller with the snapshot."""
        def answered(reply: Reply) -> None:
            body = reply.body
            if isinstance(body, rs.SnapshotAccepted):
                self._metrics.snapshot("dedupe" if body.deduped else "processed", stage)
                if not body.deduped:
                    self._cache_latest(body.snapshot)
                reply = Reply(status=200, body=body.snapshot)
            else:
                self._metrics.snapshot("failed", stage)
            log.info("command", kind="PushRiskSnapshot", world_id=request.command.world_id, status=reply.status,
                     correlation_id=request.command.correlation_id)
            request.reply(reply)
        return answered

    def _cache_latest(self, snapshot: RiskSnapshot) -> None:
        """Committed already: a cache that cannot be written only costs the next read a SQL query."""
        if self._latest_cache is None:
            return
        left = (rs.expires_at(snapshot.created_at, snapshot.ttl_sec) - self._clock()).total_seconds()
        try:
            self._latest_cache.put(snapshot, rs.order_key(snapshot.as_of, snapshot.created_at),
                                   int(min(self._latest_ttl_s, left)))
        except StorageUnavailable as exc:
            log.warning("risk_latest_cache_unavailable", error=str(exc))

    def _cached_latest(self, world_id: str, now: datetime) -> RiskSnapshot | None:
        if self._latest_cache is None:
            return None
        try:
            cached = self._latest_cache.get(world_id)
        except StorageUnavailable:
            return None
        if cached is None or rs.is_expired(cached, now):
            return None
        return cached if self._reads.stored_hash(world_id, cached.version) == cached.hash else None

    # --- reads -----------------------------------------------------------------------------------

    def _fresh(self, snapshots: list[RiskSnapshot], now: datetime) -> list[RiskSnapshot]:
        return [s for s in snapshots if not rs.is_expired(s, now)]

    def _one(self, found: RiskSnapshot | None, expand: bool) -> RiskSnapshot:
        if found is None:
            raise not_found("snapshot")
        return expanded(found, self._blobs) if expand else found

    def _lookup(self, q: c.LookupRiskSnapshot, now: datetime) -> RiskSnapshot:
        if q.version is not None:
            found = self._reads.by_version(q.world_id, q.version)
            return self._one(found if found is not None and not rs.is_expired(found, now) else None, q.expand)
        bound = None
        if q.as_of is not None:
            try:
                bound = rs.order_key(q.as_of, q.as_of).split("|")[0] + "|~"
            except ValueError:
                raise unprocessable(f"invalid as_of timestamp: {q.as_of}") from None
        fresh = self._fresh(self._reads.newest(q.world_id, 50, as_of_at_most=bound), now)
        return self._one(fresh[0] if fresh else None, q.expand)

    def _latest(self, q: c.LatestRiskSnapshot, now: datetime) -> RiskSnapshot:
        stage = (q.stage or "").strip().lower() or None
        producer = (q.producer or "").strip() or None
        cached = self._cached_latest(q.world_id, now) if stage is None and producer is None else None
        if cached is not None:
            return self._one(cached, q.expand)
        fresh = self._fresh(self._reads.newest(q.world_id, q.limit, stage, producer), now)
        return self._one(fresh[0] if fresh else None, q.expand)

    def _list(self, q: c.ListRiskSnapshots, now: datetime) -> RiskSnapshotList:
        stage = (q.stage or "").strip().lower() or None
        fresh = self._fresh(self._reads.newest(q.world_id, q.limit, stage, (q.producer or "").strip() or None), now)
        return RiskSnapshotList(snapshots=[expanded(s, self._blobs) if q.expand else s for s in fresh])

