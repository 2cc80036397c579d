"""StorageReader: the actor that answers the reads no single world owns (every world's record, every
world's latest allocation, the registered world ids), so the edges never touch SQL themselves.

Each read arrives with a reply hook (the asyncio future of an HTTP handler, as for world commands) and is
answered on this actor's thread; a failing database answers 503, never an exception in the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka
import sqlalchemy as sa
import structlog

from actors.bridge import Reply, ReplyHook, error_reply
from storage.sql import SqlStore, StorageUnavailable

log = structlog.get_logger("worldservice.storage_reader")


@dataclass(frozen=True, slots=True)
class ListWorlds:
    """Every world's record, by id."""

    reply: ReplyHook


@dataclass(frozen=True, slots=True)
class WorldIds:
    """Every registered world id, sorted."""

    reply: ReplyHook


@dataclass(frozen=True, slots=True)
class WorldAllocations:
    """The latest allocation row of each world (of ``world_ids``, or all)."""

    reply: ReplyHook
    world_ids: list[str] | None = None


StorageRead = ListWorlds | WorldIds | WorldAllocations


class StorageReader(pykka.ThreadingActor):
    def __init__(self, store: SqlStore) -> None:
        super().__init__()
        self._reads: dict[type, Callable[[Any], Any]] = {
            ListWorlds: lambda read: store.list_worlds(),
            WorldIds: lambda read: store.world_ids(),
            WorldAllocations: lambda read: store.world_allocations(read.world_ids),
        }

    def on_receive(self, message: object) -> None:
        read = self._reads.get(type(message))
        if read is None:
            return
        try:
            reply = Reply(status=200, body=read(message))
        except (StorageUnavailable, sa.exc.DBAPIError) as exc:
            log.error("storage_read_failed", read=type(message).__name__, error=str(exc))
            reply = error_reply(503, "storage unavailable; retry")
        message.reply(reply)  # type: ignore[attr-defined]
