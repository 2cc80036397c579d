"""ActivationStore actor: fronts the Redis (or in-memory) projection so world actors never touch Redis
directly, and counts the worlds whose projection write failed (until rewritten) for alerting.

Writes are collected while more writes wait right behind them in the mailbox and leave together once
the next message is something else (or the batch is full): one pipelined MULTI/EXEC per drain instead of one round trip per entry. Every read
through this actor writes what is collected first, so it sees every write told before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pykka
import structlog

from actors.mailbox import next_calls
from domain.activation import state_hash
from messages.activation import ActivationEntry
from storage.activation_store import DeleteWorld, ProjectionWrite, PutEntry, ReplaceWorld

log = structlog.get_logger("worldservice.activation_store")
_MAX_BATCH = 500
_COLLECTING = frozenset({"put_entry", "replace", "delete"})  # the calls that collect a write


@dataclass
class ProjectionHealth:
    """What ``/metrics``, ``/readyz`` and the guard read without a round trip through the actor (which may
    be inside a Redis call): plain attributes, written only by the actor."""

    degraded: bool = False  # the projection cannot be written or read: writes are dropped, SQL serves
    dirty: int = 0  # worlds known to lag SQL


class ActivationStoreActor(pykka.ThreadingActor):
    def __init__(self, store: Any, health: ProjectionHealth | None = None) -> None:
        super().__init__()
        self.store = store
        self.health = health if health is not None else ProjectionHealth()
        self.dirty: set[str] = set()
        self._rebuild = False  # set when Redis returns: what it holds may predate the outage
        self._collected: list[ProjectionWrite] = []

    def put_entry(self, world_id: str, counter: int, strategy_id: str, side: str, entry: ActivationEntry) -> bool:
        return self._collect(PutEntry(world_id, counter, strategy_id, side, entry))

    def replace(self, world_id: str, counter: int, entries: dict[str, dict[str, ActivationEntry]]) -> bool:
        # copied now: it is written later, and the caller's dicts are not ours
        return self._collect(ReplaceWorld(world_id, counter, {sid: dict(sides) for sid, sides in entries.items()}))

    def delete(self, world_id: str) -> bool:
        return self._collect(DeleteWorld(world_id))

    def get(self, world_id: str) -> tuple[int, dict[str, dict[str, ActivationEntry]]] | None:
        self._write_collected()
        return self.store.get(world_id)

    def projection_hash(self, world_id: str) -> str | None:
        self._write_collected()
        found = self.store.get(world_id)
        return state_hash(*found) if found else None

    def flush_all(self) -> None:
        """Drop every projection (a rebuild starts from nothing); what was collected goes first."""
        self._write_collected()
        self.store.flush_all()

    def mark_complete(self) -> bool:
        """``False`` (nothing marked) when a write failed meanwhile: the next guard round rebuilds again."""
        if not self._write_collected() or self.health.degraded:
            return False
        self.store.mark_complete()
        self._rebuild = False
        return True

    def flag_rebuild(self) -> None:
        self._rebuild = True

    def degrade(self, error: str) -> None:
        """Redis does not answer: from now on writes only mark their worlds dirty (no call, no log line per
        write) until the guard's probe sees Redis again and the projection is rebuilt from SQL."""
        if not self.health.degraded:
            log.error("activation_projection_degraded", error=error)
        self.health.degraded = True

    def recovered(self) -> None:
        """The guard's probe answered: writes go to Redis again (the rebuild that follows repairs the rest)."""
        self.health.degraded = False

    def needs_rebuild(self) -> bool:
        """The completeness marker is gone (the store was flushed or replaced) or a write failed."""
        self._write_collected()
        try:
            return self._rebuild or bool(self.dirty) or not self.store.is_marked_complete()
        except Exception as exc:  # noqa: BLE001 - unreachable now: the guard probes until it answers
            self.degrade(repr(exc))
            return False

    def dirty_count(self) -> int:
        """Worlds whose projection is known to lag SQL; the startup check (or a replace) repairs them."""
        self._write_collected()
        return len(self.dirty)

    def _collect(self, write: ProjectionWrite) -> bool:
        """``True`` once written, or while it waits for the writes queued right behind it (only they come
        back here to write what was collected: ``actors.mailbox``)."""
        self._collected.append(write)
        if not next_calls(self, _COLLECTING) or len(self._collected) >= _MAX_BATCH:
            return self._write_collected()
        return True

    def _write_collected(self) -> bool:
        """SQL already committed: a failed projection write is recorded for repair, never raised."""
        writes, self._collected = self._collected, []
        if not writes:
            return True
        if self.health.degraded:  # the rebuild after Redis returns writes these worlds from SQL
            self._lagging(writes)
            return False
        try:
            self.store.write_many(writes)
        except Exception as exc:  # noqa: BLE001 - all or none of a MULTI/EXEC: every world in it lags
            worlds = self._lagging(writes)
            log.error("activation_projection_write_failed", world_id=worlds[0], worlds=len(worlds), error=repr(exc))
            self.degrade(repr(exc))
            return False
        self.dirty.difference_update(w.world_id for w in writes if isinstance(w, (ReplaceWorld, DeleteWorld)))
        self.health.dirty = len(self.dirty)
        return True

    def _lagging(self, writes: list[ProjectionWrite]) -> list[str]:
        worlds = sorted({w.world_id for w in writes})
        self.dirty.update(worlds)
        self.health.dirty = len(self.dirty)
        return worlds

    def on_stop(self) -> None:
        self._write_collected()  # degraded: only marks; the next start's check repairs the projection
        self.store.close()
