"""The actor system of one daemon: SQL writer, activation projection, outbox relay and the directory."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pykka
import structlog

from actors.activation_store import ActivationStoreActor, ProjectionHealth
from actors.bridge import Request, error_reply
from actors.clock import MonotonicClock
from actors.allocations import AllocationCoordinator
from actors.ack_intake import STOPPED as ACKS_STOPPED, AckIntake, AckReceived
from actors.bus import Committed, OutboxRelay, Publisher, Relay
from actors.directory import Directory
from actors.directory_messages import noop_reply, ResidentWorlds, Sweep, TickOpenRuns, WorldMailboxes
from actors.metrics import ActorMetrics
from actors.routes import Routes
from actors.extended_worker import ExtendedValidationWorker
from actors.risk_consumer import RiskConsumer, RiskEventReceived
from actors.risk_hub import RiskHub, with_parts_stored
from actors.risk_metrics import RiskHubMetrics
from actors.sql_writer import MarkSent, SqlWriter
from actors.storage_reader import StorageRead, StorageReader
from actors.world import WorldActor
from actors.world_commits import Completions, completions_hand_off
from domain.activation import fold_audit, state_hash
from config import Config
from domain.risk_snapshots import HubLimits
from messages.commands import RISK_HUB_KINDS, ApplyTick, RefreshProjection, UpsertAllocations
from storage.risk_blobs import BlobStore, LatestCache, SqlBlobStore
from storage.risk_rows import RiskSnapshotReads
from storage.sql import OutboxRow, SqlStore

log = structlog.get_logger("worldservice.system")


def _names(names: list[str] | None) -> frozenset[str] | None:
    return frozenset(names) if names is not None else None


def _latest_cache(redis_url: str | None, prefix: str) -> LatestCache | None:
    if not redis_url:
        return None
    from storage.redis_stores import RedisLatestCache  # only with Redis: see storage.redis_stores

    return RedisLatestCache(redis_url, prefix)


class ActorSystem:
    """Starts the daemon-wide actors; ``send`` is how every edge reaches a world."""

    def __init__(self, store: SqlStore, projection_store: Any, publisher: Publisher,
                 config: Config | None = None, clock: Callable[[], datetime] | None = None,
                 monotonic: Callable[[], float] = time.monotonic, executor: Any = None) -> None:
        self.config = config if config is not None else Config()
        actors, topics = self.config.worldservice.actors, dict(self.config.worldservice.controlbus.topics)
        self.metrics = ActorMetrics()
        self.store = store
        # Real time unless a test drives it: a wall-clock step must not fire or delay an apply timer.
        self.clock = clock if clock is not None else MonotonicClock()
        self.completions = Completions.start()  # answers pipelined commits, off the writer's thread
        self._hand_off = completions_hand_off(self.completions)
        self.writer = SqlWriter.start(store, actors.group_commit_max, on_commit=self._on_commit)
        self.relay = OutboxRelay.start(store, publisher, self.clock, self._mark_sent, topics=topics)
        self.projection_health = ProjectionHealth()
        self._projection_store = projection_store
        self.projection = ActivationStoreActor.start(projection_store, self.projection_health).proxy()
        self._gauges: dict[str, Any] = {"resident": 0, "outbox": 0, "worlds": 0}  # last values /metrics got
        self.routes = Routes(monotonic)  # resident worlds, reached without the Directory's hop
        self.directory = Directory.start(self._spawn_world, monotonic, actors.idle_timeout_s,
                                         actors.max_resident_worlds, routes=self.routes)
        self.acks = AckIntake.start(self.send, metrics=self.metrics)  # sequences Gateway ACKs per run
        self.allocations = AllocationCoordinator.start(store, self.writer, self.send, self.clock, executor)
        self.reader = StorageReader.start(store)  # the edges' cross-world reads: never SQL on the event loop
        self.risk_metrics = RiskHubMetrics(self.metrics.registry)
        self.blobs = self._blob_store()
        hub = self.config.worldservice.risk_hub
        server = self.config.server
        self.latest_cache = _latest_cache(server.redis, server.redis_prefix)
        self.risk_hub = RiskHub.start(RiskSnapshotReads(store.engine), self.blobs, self.directory.tell, self.clock,
                                      self._hub_limits(), self.risk_metrics, self.latest_cache,
                                      hub.latest_cache_ttl_s)
        self.extended = ExtendedValidationWorker.start(self.blobs, self.directory.tell, self.clock, self.risk_metrics)
        self.risk_consumer = RiskConsumer.start(
            self.directory.tell, self.extended.tell, self.clock, self.risk_metrics, ttl_default=hub.ttl_sec_default,
            max_attempts=hub.max_attempts, backoff_s=hub.retry_backoff_ms / 1000, window=hub.dedupe_window,
            latest=self._latest_snapshot, limits=self._hub_limits(),
            store_parts=lambda snapshot: with_parts_stored(snapshot, self.blobs, self._hub_limits()))

    def _latest_snapshot(self, world_id: str) -> Any:
        """The world's newest snapshot (the consumer checks its freshness), for a new evaluation run."""
        newest = RiskSnapshotReads(self.store.engine).newest(world_id, 1)
        return newest[0] if newest else None

    def receive_risk_event(self, received: RiskEventReceived) -> None:
        """A ``risk_snapshot_updated`` record from the ControlBus; ``received.reply`` answers when it is done."""
        self.risk_consumer.tell(received)

    def _hub_limits(self) -> HubLimits:
        hub = self.config.worldservice.risk_hub
        return HubLimits(hub.ttl_sec_default, hub.ttl_sec_max, hub.inline_cov_threshold, hub.inline_max_bytes,
                         allowed_actors=_names(hub.allowed_actors), allowed_stages=_names(hub.allowed_stages),
                         returns_max_points_per_series=hub.realized_returns_max_points_per_series,
                         returns_max_points_total=hub.realized_returns_max_points_total)

    def _blob_store(self) -> BlobStore:
        """Redis in prod (where it is required), SQL elsewhere, unless ``risk_hub.blob_store`` says."""
        kind = self.config.worldservice.risk_hub.blob_store or ("redis" if self.config.server.redis else "sql")
        if kind == "redis" and self.config.server.redis:
            from storage.redis_stores import RedisBlobStore  # only with Redis: see storage.redis_stores

            return RedisBlobStore(self.config.server.redis, self.config.server.redis_prefix,
                                  self.config.worldservice.risk_hub.ttl_sec_max)
        return SqlBlobStore(self.store.engine)

    def _mark_sent(self, ids: list[int], sent_at: str) -> None:
        self.writer.tell(MarkSent(ids=ids, sent_at=sent_at))

    def _on_commit(self, rows: list[OutboxRow] | None) -> None:
        try:
            self.relay.tell(Committed(rows))
        except pykka.ActorDeadError:
            pass  # stopping: the next start relays whatever is left

    def _spawn_world(self, world_id: str) -> pykka.ActorRef:
        return WorldActor.start(world_id, self.store, self.writer, self.projection, self.clock,
                                self.directory.tell, self.config, self.metrics, self.acks.tell, self._hand_off)

    def send(self, request: Request) -> None:
        if isinstance(request.command, UpsertAllocations):
            self.allocations.tell(request)  # cross-world: the coordinator takes the worlds itself
        elif isinstance(request.command, RISK_HUB_KINDS):
            self.risk_hub.tell(request)  # validated and its blobs stored there, then on to the world
        elif not self.routes.deliver(request):  # not resident (or being passivated): the Directory
            self.directory.tell(request)

    def receive_ack(self, received: AckReceived) -> None:
        """A Gateway ACK for the intake; ``received.reply`` is answered once it is recorded or dropped, or
        with a retryable 503 when the intake is gone (stopping, or failed)."""
        try:
            self.acks.tell(received)
        except pykka.ActorDeadError:
            received.reply(error_reply(503, ACKS_STOPPED))

    def receive_ack_now(self, raw: bytes | dict[str, Any]) -> None:
        """The in-memory ControlBus: returns once the intake has taken the ACK (its world message, if
        any, is queued), so whatever the publisher sends next is handled after it. Without an intake the
        ACK is dropped (this bus has no redelivery; the run re-sends what it still waits for)."""
        try:
            self.acks.ask(AckReceived(raw=raw, reply=noop_reply))
        except pykka.ActorDeadError:
            log.warning("ack_dropped", reason="ack intake stopped")

    def read(self, read: StorageRead) -> None:
        """A cross-world read, answered on ``read.reply`` by the storage reader actor."""
        self.reader.tell(read)

    def sweep(self) -> None:
        self.directory.ask(Sweep())

    def resident_worlds(self) -> list[str]:
        return self.directory.ask(ResidentWorlds())

    def mailbox_depths(self, timeout_s: float = 0.3) -> dict[str, int]:
        """Queue lengths, read without a round trip (a wedged actor still shows its backlog); the worlds'
        sum asks the Directory, bounded: a slow answer shows the last one."""
        refs = {"acks": self.acks, "directory": self.directory, "writer": self.writer, "relay": self.relay, "reader": self.reader,
                "projection": self.projection.actor_ref, "completions": self.completions,
                "risk_hub": self.risk_hub, "risk_consumer": self.risk_consumer, "extended_validation": self.extended}
        depths = {name: ref.actor_inbox.qsize() for name, ref in refs.items()}
        depths["worlds"] = self._bounded("worlds", lambda: self.directory.ask(WorldMailboxes(), timeout=timeout_s))
        return depths

    def _bounded(self, name: str, ask: Callable[[], Any]) -> Any:
        """What a poller (``/metrics``) reads: a fresh value when the actor answers within the bound, else
        the last one, so the poll never waits on an actor stuck behind a dependency."""
        try:
            self._gauges[name] = ask()
        except (pykka.Timeout, pykka.ActorDeadError):
            pass
        return self._gauges[name]

    def resident_count(self, timeout_s: float = 0.3) -> int:
        return self._bounded("resident", lambda: len(self.directory.ask(ResidentWorlds(), timeout=timeout_s)))

    def outbox_pending(self, timeout_s: float = 0.3) -> int:
        return self._bounded("outbox", lambda: self.relay.proxy().pending_count().get(timeout=timeout_s))

    def projection_dirty(self) -> int:
        """Read from the shared health record: the projection actor may be inside a (bounded) Redis call."""
        return self.projection_health.dirty

    def projection_degraded(self) -> bool:
        return self.projection_health.degraded

    def relay_now(self) -> None:
        self.relay.ask(Relay())

    def relay_soon(self) -> None:
        """Timer: retry publishing whatever the broker refused earlier."""
        self.relay.tell(Relay())

    def relay_failing(self) -> bool:
        return self.relay.proxy().failing.get()

    def tick(self) -> None:
        """Timer: open apply runs check their ACK gap timeout, deadline and re-sends."""
        self.directory.tell(TickOpenRuns())

    def resume_open_runs(self, timeout_s: float = 30.0) -> list[str]:
        """Startup, before readiness: every world whose latest run did not finish is loaded, which resumes
        (or, past its deadline, rolls back) that run and re-sends the events it still waits for."""
        worlds = self.store.worlds_with_open_runs()
        self._ask_every_world(worlds, ApplyTick, timeout_s)
        return worlds

    def alive(self, timeout_s: float) -> bool:
        """One round trip through the daemon-wide actors that serve commands (the watchdog's evidence of
        health). Not the projection actor: it may spend up to the Redis timeout in a call, and a Redis
        outage is a degraded projection (``worldservice_projection_degraded``), never a reason for systemd
        to kill a daemon that serves from SQL. ``timeout_s`` bounds the whole round trip."""
        deadline = time.monotonic() + timeout_s

        def left() -> float:
            return max(0.01, deadline - time.monotonic())
        try:
            self.directory.ask(ResidentWorlds(), timeout=left())
            self.acks.ask(None, timeout=left())
            self.writer.proxy().stats().get(timeout=left())
            self.completions.ask(None, timeout=left())
            self.relay.proxy().failing.get(timeout=left())
        except (pykka.Timeout, pykka.ActorDeadError):
            return False
        return True

    def verify_projection(self) -> list[str]:
        """Compare every world's projection with SQL and rewrite the ones that differ (startup check);
        then mark the projection complete. Redis unreachable: the projection is degraded (the daemon
        serves from SQL) and the guard rebuilds it when Redis answers; nothing is raised."""
        if not self._projection_answers():
            return []
        repaired = []
        try:
            for world_id in self.store.world_ids():
                state = self.store.load_world(world_id)
                expected = state_hash(state.activation_counter, state.activation)
                if self.projection.projection_hash(world_id).get() != expected:
                    self.projection.replace(world_id, state.activation_counter, state.activation).get()
                    repaired.append(world_id)
            self.projection.mark_complete().get()
        except Exception as exc:  # noqa: BLE001 - Redis went away meanwhile: degraded, the guard repairs
            self.projection.degrade(repr(exc)).get()
        return repaired

    def _projection_answers(self) -> bool:
        """One PING from the caller's thread (never the projection actor's, which keeps taking writes):
        ``True`` when Redis answers, and writes go to it again."""
        try:
            self._projection_store.ping()
        except Exception as exc:  # noqa: BLE001 - any Redis error: still away
            self.projection.degrade(repr(exc)).get()
            return False
        if self.projection_health.degraded:
            log.warning("activation_projection_reachable", rebuilding=True)
        self.projection.recovered().get()
        return True

    def guard_projection(self, timeout_s: float = 60.0) -> list[str] | None:
        """Timer: a flushed Redis (or a failed write) is noticed by one EXISTS; every world's actor then
        rewrites its projection from its committed state, in order with its own writes, and the
        projection is marked complete again. While degraded, a PING probes for Redis' return first;
        ``None`` while it is still away."""
        if self.projection_health.degraded:
            if not self._projection_answers():
                return None
            self.projection.flag_rebuild().get()
        if not self.projection.needs_rebuild().get():
            return []
        worlds = self.store.world_ids()
        self._ask_every_world(worlds, RefreshProjection, timeout_s)  # a successful rewrite clears "dirty"
        if not self.projection.mark_complete().get():
            return None  # a write failed during the rebuild: degraded again, the next round retries
        return worlds

    def _ask_every_world(self, worlds: list[str], command: type, timeout_s: float) -> None:
        answers = []
        for world_id in worlds:
            answer: pykka.ThreadingFuture = pykka.ThreadingFuture()
            self.send(Request(command=command(world_id=world_id), reply=answer.set))
            answers.append(answer)
        for answer in answers:
            answer.get(timeout=timeout_s)

    def rebuild_projection_from_audit(self) -> int:
        """Rebuild every world's projection by replaying the audit log (``rebuild-activation``)."""
        self.projection.flush_all().get()
        count = 0
        for world_id in self.store.world_ids():
            counter, entries = fold_audit(self.store.audit_events(world_id))
            self.projection.replace(world_id, counter, entries).get()
            count += 1
        return count

    def stop(self) -> None:
        """Drain in dependency order: worlds finish their mailboxes (their writes are committed before
        they answer), the outbox is relayed, the writer commits the relay marks, the projection closes."""
        self.acks.stop(block=True)  # no ACK reaches a world after this
        self.allocations.stop(block=True)  # releases its worlds before they drain
        self.reader.stop(block=True)
        self.risk_consumer.stop(block=True)  # the consumer edge stopped first: nothing new arrives
        self.extended.stop(block=True)
        self.risk_hub.stop(block=True)  # its last pushes reach their worlds before they drain
        self.directory.stop(block=True)
        self.relay.ask(Relay())
        self.relay.stop(block=True)
        self.writer.stop(block=True)  # commits the last writes' relay marks too
        self.completions.stop(block=True)  # after the writer: its last commits are answered
        self.projection.actor_ref.stop(block=True)
        for client in (self.blobs, self.latest_cache):
            close = getattr(client, "close", None)  # the Redis clients' connections
            if close is not None:
                close()
