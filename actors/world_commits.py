"""Pipelined commits of one world: the world hands a batch to the SqlWriter and takes its next message;
the commit's completion (on the writer's thread) answers the batch's callers.

Why this keeps the guarantees: the world's state is ahead of SQL by the batches in flight, and every item
carries the row version it expects. The writer commits in mailbox order, so batch N+1 (built on N's state)
commits only if N did: when N fails, fencing refuses every later batch sent before the world reloads, and
their callers get an error rather than an answer computed from a state that never became durable. The
world notices the failure (``Epoch.failure``) at its next wake-up and reloads from SQL; commits it sends
after that reload queue behind the doomed ones, so they cannot be confused with them.

A reply computed from the state (a refusal, a replayed command id) is answered with the commit it follows,
never before it: no caller hears of a state that might still be rolled back.

The answering itself (projection updates, log lines, reply hooks) is handed to the ``Completions`` actor,
one thread in commit order, so the writer starts its next transaction (and fsync) at once instead of
doing that work between commits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pykka
import structlog

from actors.bridge import Reply, Request, error_reply
from storage.sql import StaleOwner, StaleWriter, StorageUnavailable
from storage.sql_types import CommitUnknown

log = structlog.get_logger("worldservice.world")


HandOff = Callable[[Callable[[], None]], None]


class Completions(pykka.ThreadingActor):
    """Runs each resolved commit's answering, in the order the writer resolved them (so a world's
    projection updates stay in commit order)."""

    def on_receive(self, message: object) -> None:
        if callable(message):
            message()


def completions_hand_off(ref: pykka.ActorRef) -> HandOff:
    def hand_off(work: Callable[[], None]) -> None:
        try:
            ref.tell(work)
        except pykka.ActorDeadError:  # stopping: answered on the writer's thread instead
            work()
    return hand_off


class UnknownOutcome(Exception):
    """The commit did not answer in time: whether it landed is unknown, so state is reloaded."""


class Epoch:
    """The commits sent since the world last loaded its state. The first failure is kept: it (not the
    fencing refusals that follow it) is what the world reports and reacts to."""

    def __init__(self) -> None:
        self.failure: Exception | None = None

    def fail(self, exc: Exception) -> bool:
        """Record a failure; whether it was the first of this epoch."""
        if self.failure is None:
            self.failure = exc
            return True
        return False


def failure_reply(exc: Exception, first: bool) -> Reply:
    """What the caller of a write that did not commit hears."""
    if not first:
        return error_reply(503, "an earlier write of this world failed; retry")
    if isinstance(exc, CommitUnknown):
        return error_reply(503, "storage failed during commit; the write's outcome is unknown: retry with "
                                "the same command id or idempotency key")
    if isinstance(exc, StorageUnavailable):
        return error_reply(503, "storage unavailable; retry")
    if isinstance(exc, StaleOwner):
        return error_reply(503, "this instance no longer owns the world; retry")
    if isinstance(exc, StaleWriter):
        return error_reply(503, "world was changed by another writer; retry")
    if isinstance(exc, UnknownOutcome):
        return error_reply(503, "the write's outcome is unknown; read the world before retrying")
    return error_reply(500, "internal error; retry")


@dataclass(slots=True)
class Answer:
    """One caller of a batch and its reply, held until the commit it depends on is known."""

    request: Request
    reply: Reply
    after: int  # how many of the commit's items precede it: its reply was computed on their state
    item: int | None  # the index of its own item, when it wrote one
    account: Callable[[Reply], None]  # its log line and counters, with the reply it finally got


@dataclass
class Batch:
    """What one wake-up produced: the items to write (with what to do once each is committed) and the
    answers, in arrival order."""

    items: list = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)

    def answer(self, request: Request, reply: Reply, account: Callable[[Reply], None],
               item: int | None = None) -> None:
        self.answers.append(Answer(request, reply, len(self.items) if item is None else item, item, account))

    def write(self, item: object, after_commit: Callable[[], None]) -> int:
        self.items.append(item)
        self.after_commit.append(after_commit)
        return len(self.items) - 1


class _Slot:
    """The ``done`` the SqlWriter resolves for one item of a commit."""

    __slots__ = ("_commit", "_index")

    def __init__(self, commit: Commit, index: int) -> None:
        self._commit = commit
        self._index = index

    def set(self, result: Exception | None) -> None:
        self._commit.item_done(self._index, result)


class Commit:
    """One batch in flight. Resolved once: by the writer (every item's result) or by ``expire``."""

    def __init__(self, epoch: Epoch, batch: Batch, prev: Commit | None, hand_off: HandOff) -> None:
        self._epoch = epoch
        self._hand_off = hand_off
        self._batch = batch
        self._results: list[Exception | None] = [None] * len(batch.items)
        self._remaining = len(batch.items)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._ok = False
        self._first = False  # this commit's failure was its epoch's first
        self._followers: list[Answer] = []  # answers of later wake-ups that wrote nothing
        self.prev = prev  # unlinked once resolved: only what is in flight stays reachable
        self.sent_at = time.monotonic()

    def slots(self) -> list[_Slot]:
        return [_Slot(self, i) for i in range(len(self._results))]

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    def item_done(self, index: int, result: Exception | None) -> None:
        with self._lock:
            if self._done.is_set():
                return  # expired already: its callers were told the outcome is unknown
            self._results[index] = result
            self._remaining -= 1
            if self._remaining:
                return
        failed = next((r for r in self._results if r is not None), None)
        if failed is not None:  # recorded at once: the world's next wake-up must not build on it
            self._first = self._epoch.fail(failed)
        self._hand_off(self._resolve)

    def follow(self, answers: list[Answer]) -> None:
        """Answers computed on this commit's state, from a wake-up that wrote nothing."""
        with self._lock:
            if not self._done.is_set():
                self._followers += answers
                return
        self._answer_followers(answers)

    def expire(self) -> None:
        """No result in time: every caller hears the outcome is unknown; a late result is ignored."""
        with self._lock:
            if self._done.is_set():
                return
            self._finish(False)
            followers, self._followers = self._followers, []
        exc = UnknownOutcome()
        first = self._epoch.fail(exc)
        for answer in self._batch.answers:
            _send(answer, failure_reply(exc, first))
        self._answer_followers(followers)

    def _resolve(self) -> None:
        results = self._results
        first_failed = next((i for i, r in enumerate(results) if r is not None), len(results))
        first = self._first
        for action in self._batch.after_commit[:first_failed]:  # projection, run views: committed items only
            action()
        for answer in self._batch.answers:
            _send(answer, self._reply_for(answer, first_failed, first))
        with self._lock:
            self._finish(first_failed == len(results))
            followers, self._followers = self._followers, []
        self._answer_followers(followers)

    def _reply_for(self, answer: Answer, first_failed: int, first: bool) -> Reply:
        if answer.item is not None:
            exc = self._results[answer.item]
            return answer.reply if exc is None else failure_reply(exc, first and answer.item == first_failed)
        # Committed items before it prove its state durable (fencing: they continued the commit before).
        if first_failed >= max(answer.after, 1):
            return answer.reply
        return failure_reply(self._epoch.failure or UnknownOutcome(), False)

    def _finish(self, ok: bool) -> None:
        self._ok = ok
        self.prev = None
        self._done.set()

    def _answer_followers(self, answers: list[Answer]) -> None:
        for answer in answers:
            _send(answer, answer.reply if self._ok else failure_reply(UnknownOutcome(), False))


def _send(answer: Answer, reply: Reply) -> None:
    try:
        answer.account(reply)
    except Exception as exc:  # noqa: BLE001 - a failing logger must not keep the caller waiting
        log.error("account_failed", error=repr(exc))
    answer.request.reply(reply)
