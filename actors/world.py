"""WorldActor: serializes every mutation of one world and answers its reads from memory.

A mutation is handled by a pure domain function, its effects are committed through the SqlWriter (the
reply waits for the commit), the activation projection is updated, and only then is the caller answered.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import pykka
import structlog

from actors.bridge import Reply, Request, error_reply
from actors.sql_writer import WriteRequest
from domain.effects import RemoveWorld, SaveActivation
from domain.handle import answer, handle, is_mutation
from domain.state import Outcome, WorldState
from domain.timefmt import iso_z
from messages.commands import Command, GetAudit
from messages.errors import CommandRejected, not_found
from storage.sql import SqlStore, StaleWriter, StorageUnavailable, WriteItem

log = structlog.get_logger("worldservice.world")


class WorldStopped(msgspec.Struct, frozen=True):
    """Told to the Directory when a world actor stops itself (fencing), so it is not routed to again."""

    world_id: str
    actor_urn: str


class WorldVacant(msgspec.Struct, frozen=True):
    """Told to the Directory after serving a world that does not exist (never created, or deleted), so
    requests for unknown ids cannot fill the resident set."""

    world_id: str
    actor_urn: str


class _UnknownOutcome(Exception):
    """The commit did not answer in time: whether it landed is unknown, so state is reloaded."""


class WorldActor(pykka.ThreadingActor):
    def __init__(self, world_id: str, store: SqlStore, writer: pykka.ActorRef, projection: Any,
                 clock: Callable[[], datetime], tell_directory: Callable[[WorldStopped | WorldVacant], None],
                 write_timeout_s: float = 30.0) -> None:
        super().__init__()
        self.world_id = world_id
        self._store = store
        self._writer = writer
        self._projection = projection
        self._clock = clock
        self._tell_directory = tell_directory
        self._write_timeout_s = write_timeout_s
        self.state: WorldState | None = None  # loaded lazily so a storage outage is an error reply, not a hang

    def on_receive(self, message: object) -> None:
        if isinstance(message, Request):
            try:
                reply = self._serve(message.command)
            except BaseException:  # even a failing logger must not leave a caller waiting forever
                self.state = None
                reply = error_reply(500, "internal error; retry")
            if self.state is not None and self.state.world is None:
                self._tell_directory(WorldVacant(world_id=self.world_id, actor_urn=self.actor_urn))
            message.reply(reply)

    def _serve(self, command: Command) -> Reply:
        bound = log.bind(world_id=self.world_id, kind=type(command).__name__,
                         correlation_id=command.correlation_id)
        try:
            reply = self._dispatch(command)
        except CommandRejected as exc:
            reply = error_reply(exc.status, exc.detail)
        except StorageUnavailable as exc:
            bound.error("storage_unavailable", error=str(exc))
            self.state = None
            reply = error_reply(503, "storage unavailable; retry")
        except StaleWriter:
            bound.error("world_fenced_off")
            self._stop_fenced()
            reply = error_reply(503, "world was changed by another writer; retry")
        except _UnknownOutcome:
            bound.error("commit_unanswered")
            self.state = None
            reply = error_reply(503, "the write's outcome is unknown; read the world before retrying")
        except Exception as exc:  # an actor must outlive any one command: reload and answer
            bound.exception("command_failed", error=repr(exc))
            self.state = None
            reply = error_reply(500, "internal error; retry")
        if is_mutation(command):
            bound.info("command", status=reply.status)
        return reply

    def _dispatch(self, command: Command) -> Reply:
        state = self._loaded()
        if isinstance(command, GetAudit):
            return self._audit(state, command)
        now = self._clock()
        if is_mutation(command):
            outcome = handle(state, command, now)
            self._persist(state, command, outcome, now)
        else:
            outcome = answer(state, command, now)
        self.state = outcome.state
        return _to_reply(outcome)

    def _loaded(self) -> WorldState:
        if self.state is None:
            self.state = self._store.load_world(self.world_id)
        return self.state

    def _persist(self, before: WorldState, command: Command, outcome: Outcome, now: datetime) -> None:
        if not outcome.effects:
            return
        item = WriteItem(world_id=self.world_id, expected_version=before.row_version,
                         activation_counter=outcome.state.activation_counter, effects=outcome.effects,
                         actor=command.actor, correlation_id=command.correlation_id, created_at=iso_z(now))
        done = pykka.ThreadingFuture()
        self._writer.tell(WriteRequest(item=item, done=done))
        try:
            result = done.get(timeout=self._write_timeout_s)
        except pykka.Timeout:
            raise _UnknownOutcome() from None
        if result is not None:
            raise result
        outcome.state.row_version = before.row_version + 1
        self._project(outcome)

    def _project(self, outcome: Outcome) -> None:
        """Told, not asked: the projection actor applies a world's updates in mailbox order, records a
        failed write for repair, and SQL (already committed) stays the record; waiting would only add a
        thread hop to every write."""
        state = outcome.state
        try:
            for effect in outcome.effects:
                if isinstance(effect, SaveActivation):
                    self._projection.put_entry(self.world_id, state.activation_counter, effect.strategy_id,
                                               effect.side, effect.entry)
                elif isinstance(effect, RemoveWorld):
                    self._projection.delete(self.world_id)
        except pykka.ActorDeadError:  # committed already; the startup check repairs the projection
            log.error("projection_unavailable", world_id=self.world_id)

    def _audit(self, state: WorldState, query: GetAudit) -> Reply:
        page = self._store.audit_page(self.world_id, query.after, query.limit)
        if state.world is None and not page.entries and query.after == 0:
            raise not_found("world")
        return Reply(status=200, body=page)

    def _stop_fenced(self) -> None:
        self._tell_directory(WorldStopped(world_id=self.world_id, actor_urn=self.actor_urn))
        self.stop()


def _to_reply(outcome: Outcome) -> Reply:
    if isinstance(outcome.reply, tuple):  # decide: (envelope, ttl)
        envelope, ttl = outcome.reply
        return Reply(status=200, body=envelope, ttl=ttl)
    return Reply(status=outcome.status, body=outcome.reply)
