"""What the SQL store is handed and what it raises: shared by its write and read halves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from domain.effects import Effect
from domain.timefmt import iso_z


class StorageUnavailable(Exception):
    """The database could not be reached or failed the transaction; nothing of the batch was written."""


class CommitUnknown(StorageUnavailable):
    """The connection failed during COMMIT: the batch may or may not have landed. Never acknowledged; the
    caller retries with the same command id / idempotency key, which the stored reply dedupes."""


class StaleWriter(Exception):
    """The world's row version moved under this writer: another instance (or a stale actor) wrote it."""


class StaleOwner(StaleWriter):
    """Cluster mode: this instance no longer owns the world's partition (another instance took it under a
    newer epoch, or it was released here). Nothing of the write was stored; the world must be given up."""

    def __init__(self, partition: int, held: int | None, current: int | None) -> None:
        self.partition, self.held, self.current = partition, held, current
        super().__init__(f"partition {partition}: held epoch {held}, current epoch {current}")


@dataclass(frozen=True)
class WriteItem:
    """One command's effects, to be applied atomically if the world is still at ``expected_version``."""

    world_id: str
    expected_version: int
    activation_counter: int
    effects: Sequence[Effect]
    actor: str | None = None
    correlation_id: str | None = None
    created_at: str = field(default_factory=lambda: iso_z(datetime.now(timezone.utc)))
