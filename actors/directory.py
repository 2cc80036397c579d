"""Directory: world_id -> WorldActor. Creates actors on first use, passivates idle ones and caps how
many are resident (each is a thread), so a daemon with many worlds keeps a bounded footprint.

Resident actors are published in ``Routes``, through which the edges reach them directly; the Directory
sees only the requests of worlds that are not resident (or are being passivated)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pykka
import structlog

from actors.bridge import Request, error_reply
from actors.routes import Routes
from actors.directory_messages import (
    ResidentWorlds, RunOpen, Sweep, TickOpenRuns, WorldMailboxes, WorldStopped, WorldVacant, noop_reply,
)
from messages.commands import ApplyTick

log = structlog.get_logger("worldservice.directory")


class Directory(pykka.ThreadingActor):
    def __init__(self, spawn: Callable[[str], pykka.ActorRef], clock: Callable[[], float],
                 idle_timeout_s: float, max_resident: int, stop_timeout_s: float = 30.0,
                 routes: Routes | None = None) -> None:
        super().__init__()
        self._spawn = spawn
        self._clock = clock
        self.routes = routes if routes is not None else Routes(clock)
        self._idle_timeout_s = idle_timeout_s
        self._max_resident = max_resident
        self._stop_timeout_s = stop_timeout_s
        self._actors: dict[str, pykka.ActorRef] = {}
        self._open_runs: set[str] = set()  # pinned: never passivated while a run waits in their actor
        self.draining = False

    def on_receive(self, message: object) -> object:
        handler = self._HANDLERS.get(type(message))
        return handler(self, message) if handler is not None else None

    def _resident(self, _: ResidentWorlds) -> list[str]:
        return sorted(self._actors)

    def _world_mailboxes(self, _: WorldMailboxes) -> int:
        return sum(ref.actor_inbox.qsize() for ref in self._actors.values())

    def _tick_open_runs(self, _: TickOpenRuns) -> None:
        for world_id in sorted(self._open_runs):
            self._route(Request(command=ApplyTick(world_id=world_id), reply=noop_reply))

    def _track_run(self, status: RunOpen) -> None:
        ref = self._actors.get(status.world_id)
        if ref is None or ref.actor_urn != status.actor_urn:
            return
        if status.open:
            self._open_runs.add(status.world_id)
        else:
            self._open_runs.discard(status.world_id)

    def _route_detour(self, request: Request) -> None:
        """A request the edge could not deliver directly (counted in ``Routes`` until delivered here)."""
        try:
            self._route(request)
        finally:
            self.routes.detour_done(request.command.world_id)

    def _route(self, request: Request) -> None:
        world_id = request.command.world_id
        try:
            ref = self._actor_for(world_id)
            ref.tell(request)
        except pykka.ActorDeadError:  # stopped itself between lookup and tell: start a fresh one
            self._actors.pop(world_id, None)
            self._actor_for(world_id).tell(request)
        except Exception as exc:  # noqa: BLE001 - the caller must always get an answer
            log.exception("route_failed", world_id=world_id, error=repr(exc))
            request.reply(error_reply(503, "world unavailable; retry"))

    def _actor_for(self, world_id: str) -> pykka.ActorRef:
        ref = self._actors.get(world_id)
        if ref is None:
            self._make_room()
            ref = self._spawn(world_id)
            self._actors[world_id] = ref
        self.routes.publish(world_id, ref)  # again each time: a dead entry the edge dropped comes back
        self.routes.touch(world_id)
        return ref

    def _make_room(self) -> None:
        """Least recently used first: the edges record use in ``Routes`` as they deliver."""
        while len(self._actors) >= self._max_resident:
            idle = [w for w in self._actors if w not in self._open_runs]
            if not idle:
                return  # every resident world runs an apply: exceed the cap rather than drop a run's timers
            self._passivate(min(idle, key=self.routes.last_used))

    def _sweep(self) -> None:
        deadline = self._clock() - self._idle_timeout_s
        idle = [w for w in self._actors if self.routes.last_used(w) <= deadline and w not in self._open_runs]
        for world_id in idle:
            self._passivate(world_id)

    def _passivate(self, world_id: str) -> None:
        """Blocking stop: the actor finishes what is already in its mailbox (and waits for its commits)
        before it goes. Withdrawn from ``Routes`` first, so nothing new can reach it meanwhile: a request
        sent now waits in this directory's mailbox for the next actor."""
        ref = self._actors.pop(world_id)
        self.routes.withdraw(world_id)
        self._open_runs.discard(world_id)
        try:
            ref.stop(block=True, timeout=self._stop_timeout_s)
        except pykka.Timeout:
            log.error("passivation_timeout", world_id=world_id)
        log.debug("world_passivated", world_id=world_id)

    def _passivate_if_same(self, vacant: WorldVacant) -> None:
        """A command queued behind the vacancy (say, the create) is still served: passivation drains."""
        ref = self._actors.get(vacant.world_id)
        if ref is not None and ref.actor_urn == vacant.actor_urn:
            self._passivate(vacant.world_id)

    def _stop_if_same(self, stopped: WorldStopped) -> None:
        """A world fenced off by another writer: stopped here, like a passivation, so no request is lost."""
        ref = self._actors.get(stopped.world_id)
        if ref is not None and ref.actor_urn == stopped.actor_urn:
            self._passivate(stopped.world_id)

    def on_stop(self) -> None:
        for world_id in list(self._actors):
            self._passivate(world_id)

    _HANDLERS: dict[type, Callable[[Directory, Any], object]] = {
        Request: _route_detour, Sweep: lambda self, _: self._sweep(), ResidentWorlds: _resident,
        WorldMailboxes: _world_mailboxes, WorldStopped: _stop_if_same, WorldVacant: _passivate_if_same,
        RunOpen: _track_run, TickOpenRuns: _tick_open_runs,
    }
