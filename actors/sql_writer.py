"""SqlWriter: the one actor that writes SQL, with group commit.

Each ``WriteRequest`` is queued; when no other write waits right behind it (or the batch is full),
everything queued is written in one transaction and then every waiter is answered. Under load many commands share one commit;
with no load a command is committed at once. The outbox rows a commit wrote are handed to ``on_commit``
(before any waiter is answered), so the relay publishes them without reading them back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pykka
import structlog

from actors.mailbox import next_is
from storage.sql import OutboxRow, SqlStore, WriteItem

log = structlog.get_logger("worldservice.sql_writer")
_MAX_HELD_MARKS = 5000


@dataclass(frozen=True, slots=True)
class MarkSent:
    """Outbox rows the relay published: marked sent in the next group commit."""

    ids: list[int]
    sent_at: str


@dataclass(frozen=True, slots=True)
class WriteRequest:
    item: WriteItem
    done: pykka.ThreadingFuture  # resolved with None (committed) or the exception that refused the item


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """One world's items of one mailbox wake-up, in order: each item's ``dones[i].set`` gets its result."""

    items: list[WriteItem]
    dones: list  # objects with ``set(result)``, one per item (a future, or a pipelined commit's slot)


@dataclass(frozen=True, slots=True)
class AtomicWrite:
    """Items of several worlds committed together or not at all (an allocation run). Runs queued one
    behind the other share one commit, each still all or none (``SqlWrites.apply_atomic_many``)."""

    items: list[WriteItem]
    done: pykka.ThreadingFuture


@dataclass(frozen=True, slots=True)
class AtomicWrites:
    """Several allocation runs handed over at once (one wave of the coordinator): one commit."""

    runs: list[AtomicWrite]


CommitListener = Callable[[list[OutboxRow] | None], None]
"""Told the outbox rows of each commit that wrote some (in id order), or ``None`` when a commit's outcome
is unknown (the database failed mid-commit), so that whatever landed is read back from SQL."""


class SqlWriter(pykka.ThreadingActor):
    def __init__(self, store: SqlStore, max_batch: int = 256, on_commit: CommitListener | None = None) -> None:
        super().__init__()
        self._store = store
        self._max_batch = max_batch
        self._pending: list[WriteRequest] = []
        self._atomic: list[AtomicWrite] = []  # held only while more atomic writes are next in the mailbox
        self._sent: list[int] = []
        self._sent_at: str | None = None
        self._on_commit = on_commit
        self.commits = 0
        self.items = 0

    def on_receive(self, message: object) -> None:
        if isinstance(message, (AtomicWrite, AtomicWrites)):
            if self._pending:
                self._flush()  # earlier writes first: the mailbox order is the commit order
            self._atomic += message.runs if isinstance(message, AtomicWrites) else [message]
            if not next_is(self, (AtomicWrite, AtomicWrites)):
                self._write_atomic()
            return
        if isinstance(message, WriteRequest):
            self._pending.append(message)
        elif isinstance(message, WriteBatch):
            self._pending += [WriteRequest(item=i, done=d) for i, d in zip(message.items, message.dones, strict=True)]
        elif isinstance(message, MarkSent):
            self._sent += message.ids
            self._sent_at = message.sent_at
        if self._should_flush():
            self._flush()

    def _should_flush(self) -> bool:
        """Writes leave as soon as no more writes are queued right behind them (anything else next, a
        proxy call included, would not flush them: ``actors.mailbox``); relay marks only ride along with
        writes (or when many piled up): a mark lost to a crash just means that event is published once
        more."""
        if len(self._pending) >= self._max_batch or len(self._sent) >= _MAX_HELD_MARKS:
            return True
        return bool(self._pending) and not next_is(self, _BATCHED)

    def _flush(self) -> None:
        if not self._pending and not self._sent:
            return
        batch, self._pending = self._pending, []
        sent, self._sent = self._sent, []
        outbox: list[OutboxRow] = []
        try:
            results = self._store.apply_batch([r.item for r in batch], sent, self._sent_at, outbox)
        except Exception as exc:  # the database itself failed: every waiter gets the error
            log.error("group_commit_failed", error=repr(exc), size=len(batch))
            results = [exc] * len(batch)  # unmarked rows are simply relayed again after a restart
            self._hand_over(None)
        self.commits += 1
        self.items += len(batch)
        self._hand_over(outbox)
        for request, result in zip(batch, results, strict=True):
            request.done.set(result)

    def _write_atomic(self) -> None:
        runs, self._atomic = self._atomic, []
        sent, self._sent = self._sent, []  # relay marks ride along, as with group commits
        outbox: list[OutboxRow] = []
        try:
            results = self._store.apply_atomic_many([run.items for run in runs], outbox, sent, self._sent_at)
        except Exception as exc:  # noqa: BLE001 - the coordinator gets it and nothing was written
            self._hand_over(None)
            results = [exc] * len(runs)
        else:
            self._hand_over(outbox)
        self.commits += 1
        self.items += sum(len(run.items) for run in runs)
        for run, result in zip(runs, results, strict=True):
            run.done.set(result)

    def _hand_over(self, outbox: list[OutboxRow] | None) -> None:
        """Before any waiter is answered: a caller that then asks the relay finds the rows ahead of it."""
        if self._on_commit is not None and (outbox is None or outbox):
            self._on_commit(outbox)

    def on_stop(self) -> None:
        if self._atomic:
            self._write_atomic()
        self._flush()

    def stats(self) -> dict[str, int]:
        return {"commits": self.commits, "items": self.items}


# What may follow a held write and flush it: everything else flushes first.
_BATCHED = (WriteRequest, WriteBatch, MarkSent)
