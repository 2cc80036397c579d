"""The batched, pipelined path of a world's plain mutations (the ``WorldActor``'s half that never waits
for a commit): a wake-up's mutations are handled against the evolving state, written as one batch, and
answered by the commit's completion (``actors.world_commits``). A mix-in, so the actor's state stays in
one object; it runs only on the world's own thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import pykka
import structlog

from actors.bridge import Reply, Request, answer_reply, error_reply, outcome_reply, refusal_reply
from actors.sql_writer import WriteBatch
from actors.world_commits import Batch, Commit, Epoch, UnknownOutcome, failure_reply
from domain.effects import RememberCommand
from domain.handle import handle
from domain.idempotency import StoredReply, command_hash, replayed
from domain.state import Outcome
from domain.timefmt import iso_z
from messages.commands import Command
from messages.errors import CommandRejected
from storage.sql import StaleOwner, StaleWriter, StorageUnavailable, WriteItem
from storage.sql_types import CommitUnknown

log = structlog.get_logger("worldservice.world")
_MAX_PENDING_IDS = 4096


class BatchedMutations:
    """Expects the actor's ``state``, ``_store``, ``_writer``, ``_clock``, ``_driver``, ``_epoch``,
    ``_tail``, ``_pending_ids`` and ``_write_timeout_s``, and its ``_loaded``, ``_account``,
    ``_committed`` and ``_stop_fenced``."""

    _epoch: Epoch
    _tail: Commit | None
    _pending_ids: dict[str, StoredReply]
    _write_timeout_s: float
    world_id: str
    state: Any
    _store: Any
    _writer: Any
    _clock: Callable[[], datetime]
    _driver: Any
    _hand_off: Callable[[Callable[[], None]], None]

    def _serve_batch(self, requests: list[Request]) -> None:
        if len(self._pending_ids) > _MAX_PENDING_IDS:  # a world never idle: let its pipeline run dry once
            self._settle_commits()
        self._learn_failures()
        self._forget_committed()
        try:
            self._loaded()
        except Exception as exc:  # noqa: BLE001 - nothing was handled: every caller hears why
            log.error("world_load_failed", world_id=self.world_id, error=repr(exc))
            self.state = None
            for request in requests:
                request.reply(failure_reply(exc, True))
            return
        batch, now = Batch(), self._clock()
        for n, request in enumerate(requests):
            try:
                self._batch_one(batch, request, now)
            except Exception as exc:  # noqa: BLE001 - a bug in one command: the rest go on a reloaded state
                log.exception("command_failed", world_id=self.world_id, error=repr(exc))
                batch.answer(request, error_reply(500, "internal error; retry"), lambda _: None)
                self._send(batch)
                self._settle_commits()
                self.state = None
                self._serve_batch(requests[n + 1:])
                return
        self._send(batch)

    def _batch_one(self, batch: Batch, request: Request, now: datetime) -> None:
        command = request.command
        bound = log.bind(world_id=self.world_id, kind=type(command).__name__,
                         correlation_id=command.correlation_id)
        account: Callable[[Reply], None] = lambda reply: self._account(command, reply, bound)  # noqa: E731
        try:
            reply, outcome = self._speculate(command, now)
        except CommandRejected as exc:  # refused: the state is untouched, the others go on
            reply = refusal_reply(exc)
            outcome = None
        except StorageUnavailable as exc:  # the command id could not be looked up
            reply, outcome = failure_reply(exc, True), None
        if outcome is None or not outcome.effects:
            if outcome is not None:
                self.state = outcome.state
            batch.answer(request, reply, account)
            return
        state = self._state
        item = WriteItem(world_id=self.world_id, expected_version=state.row_version,
                         activation_counter=outcome.state.activation_counter, effects=outcome.effects,
                         actor=command.actor, correlation_id=command.correlation_id, created_at=iso_z(now))
        outcome.state.row_version = state.row_version + 1
        self.state = outcome.state
        index = batch.write(item, lambda runs=state.runs: self._committed(outcome, runs))
        batch.answer(request, reply, account, item=index)

    def _speculate(self, command: Command, now: datetime) -> tuple[Reply, Outcome | None]:
        """``_mutate`` for a batch: a command id may be in flight still, so memory is asked before SQL."""
        if command.command_id is None:
            outcome = handle(self._state, command, now)
            return outcome_reply(outcome), outcome
        digest = command_hash(command)
        stored = self._pending_ids.get(command.command_id) or \
            self._store.command_reply(self.world_id, command.command_id)
        if stored is not None:  # a redelivered command: the first outcome, not a second application
            return answer_reply(*replayed(command.command_id, stored, digest)), None
        outcome = handle(self._state, command, now)
        reply = msgspec.to_builtins(outcome.reply)
        outcome.effects.append(RememberCommand(command_id=command.command_id, result=outcome.result,
                                               reply=reply, content_hash=digest))
        self._pending_ids[command.command_id] = StoredReply(outcome.result, reply, digest)
        return outcome_reply(outcome), outcome

    def _send(self, batch: Batch) -> None:
        """One write for the batch; answers that wrote nothing follow the last commit in flight."""
        if not batch.items:
            if self._tail is None:
                for answer in batch.answers:
                    answer.account(answer.reply)
                    answer.request.reply(answer.reply)
            else:
                self._tail.follow(batch.answers)
            return
        commit = Commit(self._epoch, batch, self._tail, self._hand_off)
        self._tail = commit
        try:
            self._writer.tell(WriteBatch(items=batch.items, dones=commit.slots()))
        except pykka.ActorDeadError:  # stopping: nothing was written
            for slot in commit.slots():
                slot.set(StorageUnavailable("the writer is stopped"))

    def _settle_commits(self) -> None:
        """Wait for the commits in flight (up to the write timeout), then learn how they ended."""
        tail = self._tail
        if tail is not None and not tail.wait(max(0.0, tail.sent_at + self._write_timeout_s - time.monotonic())):
            self._expire_in_flight()
        self._learn_failures()
        self._forget_committed()

    def _forget_committed(self) -> None:
        if self._tail is not None and self._tail.done:
            self._tail = None
            self._pending_ids.clear()  # all committed: SQL answers for these ids now

    def _expire_in_flight(self) -> None:
        commit = self._tail
        while commit is not None:
            prev = commit.prev
            commit.expire()
            commit = prev

    def _learn_failures(self) -> None:
        """A failed commit (or one unanswered past the write timeout): memory is ahead of SQL, so it is
        dropped and the next batch starts from what SQL holds, in a fresh epoch."""
        tail = self._tail
        if tail is not None and not tail.done and time.monotonic() - tail.sent_at > self._write_timeout_s:
            self._expire_in_flight()
        failure = self._epoch.failure
        if failure is None:
            return
        log.error(_FAILURE_EVENTS.get(type(failure), "command_failed"), world_id=self.world_id,
                  error=repr(failure))
        self._epoch, self._tail = Epoch(), None
        self._pending_ids.clear()
        self._reset_memory(failure_reply(failure, True))
        if isinstance(failure, StaleWriter):
            self._stop_fenced()

    def _reset_memory(self, reply: Reply) -> None:
        self.state = None
        self._driver.release_parked(reply, None)  # type: ignore[arg-type]


_FAILURE_EVENTS: dict[type, str] = {StorageUnavailable: "storage_unavailable", StaleWriter: "world_fenced_off",
                                    StaleOwner: "world_owner_stale",
                                    UnknownOutcome: "commit_unanswered", CommitUnknown: "commit_unanswered"}
