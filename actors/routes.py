"""Routes: the edges' direct way to resident world actors, published by the Directory.

The Directory still decides residency (it activates and passivates); it publishes each resident world's
actor here so that a request reaches its world in one hand-off instead of two. Everything is under one
lock, which is what makes passivation safe without blocking routing: the Directory withdraws a world
before it stops its actor, so every direct delivery is either in the mailbox before the stop (and served)
or goes to the Directory (and reaches the next actor). While any request of a world is on its way through
the Directory, that world's later requests follow it there, so a sender's requests never overtake each
other (the Kafka intake sends a partition's commands without waiting between them).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pykka

from actors.bridge import Request


class Routes:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._actors: dict[str, pykka.ActorRef] = {}
        self._detours: Counter[str] = Counter()  # requests of a world queued at the Directory
        self._last_used: dict[str, float] = {}

    def deliver(self, request: Request) -> bool:
        """Tell the world's resident actor directly; ``False`` means: send it to the Directory (it is
        counted as on its way there until the Directory calls ``detour_done``)."""
        world_id = request.command.world_id
        with self._lock:
            ref = None if self._detours[world_id] else self._actors.get(world_id)
            if ref is not None:
                try:
                    ref.tell(request)
                    self._last_used[world_id] = self._clock()
                    return True
                except pykka.ActorDeadError:  # died unexpectedly: the Directory starts a fresh one
                    self._actors.pop(world_id, None)
            self._detours[world_id] += 1
            return False

    def detour_done(self, world_id: str) -> None:
        with self._lock:
            self._detours[world_id] -= 1
            if self._detours[world_id] <= 0:
                del self._detours[world_id]

    def publish(self, world_id: str, ref: pykka.ActorRef) -> None:
        with self._lock:
            self._actors[world_id] = ref

    def withdraw(self, world_id: str) -> None:
        """After this returns, no direct delivery reaches the world's current actor."""
        with self._lock:
            self._actors.pop(world_id, None)
            self._last_used.pop(world_id, None)

    def touch(self, world_id: str) -> None:
        with self._lock:
            self._last_used[world_id] = self._clock()

    def last_used(self, world_id: str) -> float:
        return self._last_used.get(world_id, 0.0)
