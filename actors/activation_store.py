"""ActivationStore actor: fronts the Redis (or in-memory) projection so world actors never touch Redis
directly, and counts the worlds whose projection write failed (until rewritten) for alerting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pykka
import structlog

from domain.activation import state_hash
from messages.activation import ActivationEntry

log = structlog.get_logger("worldservice.activation_store")


class ActivationStoreActor(pykka.ThreadingActor):
    def __init__(self, store: Any) -> None:
        super().__init__()
        self.store = store
        self.dirty: set[str] = set()

    def put_entry(self, world_id: str, counter: int, strategy_id: str, side: str, entry: ActivationEntry) -> bool:
        return self._guard(world_id, lambda: self.store.put_entry(world_id, counter, strategy_id, side, entry))

    def replace(self, world_id: str, counter: int, entries: dict[str, dict[str, ActivationEntry]]) -> bool:
        ok = self._guard(world_id, lambda: self.store.replace(world_id, counter, entries))
        if ok:
            self.dirty.discard(world_id)
        return ok

    def delete(self, world_id: str) -> bool:
        return self._guard(world_id, lambda: self.store.delete(world_id))

    def get(self, world_id: str) -> tuple[int, dict[str, dict[str, ActivationEntry]]] | None:
        return self.store.get(world_id)

    def projection_hash(self, world_id: str) -> str | None:
        found = self.store.get(world_id)
        return state_hash(*found) if found else None

    def mark_complete(self) -> None:
        self.store.mark_complete()

    def needs_rebuild(self) -> bool:
        """The completeness marker is gone (the store was flushed or replaced) or a write failed."""
        try:
            return bool(self.dirty) or not self.store.is_marked_complete()
        except Exception as exc:  # noqa: BLE001 - unreachable now: check again on the next round
            log.error("activation_projection_unreachable", error=repr(exc))
            return False

    def dirty_count(self) -> int:
        """Worlds whose projection is known to lag SQL; the startup check (or a replace) repairs them."""
        return len(self.dirty)

    def _guard(self, world_id: str, write: Callable[[], None]) -> bool:
        """SQL already committed: a failed projection write is recorded for repair, never raised."""
        try:
            write()
            return True
        except Exception as exc:  # noqa: BLE001
            log.error("activation_projection_write_failed", world_id=world_id, error=repr(exc))
            self.dirty.add(world_id)
            return False

    def on_stop(self) -> None:
        self.store.close()
