"""SqlWriter: the one actor that writes SQL, with group commit.

Each ``WriteRequest`` is queued; when the mailbox is empty (or the batch is full) everything queued is
written in one transaction and then every waiter is answered. Under load many commands share one commit;
with no load a command is committed at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import pykka
import structlog

from storage.sql import SqlStore, WriteItem

log = structlog.get_logger("worldservice.sql_writer")


@dataclass(frozen=True, slots=True)
class WriteRequest:
    item: WriteItem
    done: pykka.ThreadingFuture  # resolved with None (committed) or the exception that refused the item


class SqlWriter(pykka.ThreadingActor):
    def __init__(self, store: SqlStore, max_batch: int = 256, on_commit=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self._store = store
        self._max_batch = max_batch
        self._pending: list[WriteRequest] = []
        self._on_commit = on_commit
        self.commits = 0
        self.items = 0

    def on_receive(self, message: object) -> None:
        if isinstance(message, WriteRequest):
            self._pending.append(message)
            if self.actor_inbox.empty() or len(self._pending) >= self._max_batch:
                self._flush()

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            results = self._store.apply_batch([r.item for r in batch])
        except Exception as exc:  # the database itself failed: every waiter gets the error
            log.error("group_commit_failed", error=repr(exc), size=len(batch))
            results = [exc] * len(batch)
        self.commits += 1
        self.items += len(batch)
        for request, result in zip(batch, results, strict=True):
            request.done.set(result)
        if self._on_commit is not None and any(r is None for r in results):
            self._on_commit()

    def on_stop(self) -> None:
        if self._pending:
            self._flush()

    def stats(self) -> dict[str, int]:
        return {"commits": self.commits, "items": self.items}
