"""Messages to and from the Directory: the timers' and probes' asks, and what world actors tell it about
themselves (stopped, vacant, open run). Their own module, so world actors and the directory share them
without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from actors.bridge import Reply


@dataclass(frozen=True, slots=True)
class Sweep:
    """Passivate every world idle for longer than the timeout (sent by the daemon's timer)."""


@dataclass(frozen=True, slots=True)
class TickOpenRuns:
    """Timer: every world with an open apply run checks its ACK wait, deadline and re-sends."""


@dataclass(frozen=True, slots=True)
class WorldMailboxes:
    """Ask: messages waiting in all resident world actors' mailboxes together."""


@dataclass(frozen=True, slots=True)
class ResidentWorlds:
    """Ask: the ids of the worlds that currently have an actor (thread)."""


class WorldStopped(msgspec.Struct, frozen=True):
    """Told to the Directory when a world actor stops itself (fencing), so it is not routed to again."""

    world_id: str
    actor_urn: str


class WorldVacant(msgspec.Struct, frozen=True):
    """Told to the Directory after serving a world that does not exist (never created, or deleted), so
    requests for unknown ids cannot fill the resident set."""

    world_id: str
    actor_urn: str


class RunOpen(msgspec.Struct, frozen=True):
    """Told to the Directory when a world's open-run status changes: a world with an open run gets timer
    ticks and is never passivated (its ACK wait and deadline live in that world's actor)."""

    world_id: str
    actor_urn: str
    open: bool


def noop_reply(reply: Reply) -> None:
    """Reply hook of internal messages (ACKs, ticks): nobody waits for them."""
