"""Directory: world_id -> WorldActor. Creates actors on first use, passivates idle ones and caps how
many are resident (each is a thread), so a daemon with many worlds keeps a bounded footprint."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pykka
import structlog

from actors.bridge import Request, error_reply
from actors.directory_messages import (
    ResidentWorlds, RunOpen, Sweep, TickOpenRuns, WorldMailboxes, WorldStopped, WorldVacant, noop_reply,
)
from messages.commands import ApplyTick

log = structlog.get_logger("worldservice.directory")


class Directory(pykka.ThreadingActor):
    def __init__(self, spawn: Callable[[str], pykka.ActorRef], clock: Callable[[], float],
                 idle_timeout_s: float, max_resident: int, stop_timeout_s: float = 30.0) -> None:
        super().__init__()
        self._spawn = spawn
        self._clock = clock
        self._idle_timeout_s = idle_timeout_s
        self._max_resident = max_resident
        self._stop_timeout_s = stop_timeout_s
        self._actors: OrderedDict[str, pykka.ActorRef] = OrderedDict()  # least recently used first
        self._last_used: dict[str, float] = {}
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
        self._last_used[world_id] = self._clock()
        ref = self._actors.get(world_id)
        if ref is not None:
            self._actors.move_to_end(world_id)
            return ref
        while len(self._actors) >= self._max_resident:
            idle = next((w for w in self._actors if w not in self._open_runs), None)
            if idle is None:
                break  # every resident world runs an apply: exceed the cap rather than drop a run's timers
            self._passivate(idle)
        ref = self._spawn(world_id)
        self._actors[world_id] = ref
        return ref

    def _sweep(self) -> None:
        deadline = self._clock() - self._idle_timeout_s
        idle = [w for w in self._actors if self._last_used.get(w, 0.0) <= deadline and w not in self._open_runs]
        for world_id in idle:
            self._passivate(world_id)

    def _passivate(self, world_id: str) -> None:
        """Blocking stop: the actor finishes what is already in its mailbox before it goes, and nothing
        new can reach it meanwhile because only this (single-threaded) directory routes to it."""
        ref = self._actors.pop(world_id)
        self._last_used.pop(world_id, None)
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

    def _forget_if_same(self, stopped: WorldStopped) -> None:
        ref = self._actors.get(stopped.world_id)
        if ref is not None and ref.actor_urn == stopped.actor_urn:
            self._actors.pop(stopped.world_id)
            self._open_runs.discard(stopped.world_id)

    def on_stop(self) -> None:
        for world_id in list(self._actors):
            self._passivate(world_id)

    _HANDLERS: dict[type, Callable[[Directory, Any], object]] = {
        Request: _route, Sweep: lambda self, _: self._sweep(), ResidentWorlds: _resident,
        WorldMailboxes: _world_mailboxes, WorldStopped: _forget_if_same, WorldVacant: _passivate_if_same,
        RunOpen: _track_run, TickOpenRuns: _tick_open_runs,
    }
