"""Messages between the asyncio edges and the actors, and the reply hook that crosses back.

The loop never waits on a pykka future (that would block it): it sends a ``Request`` carrying a reply
callable, and the actor's answer is handed back to the loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from messages.commands import Command
from messages.errors import ErrorBody


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any = None
    ttl: int | None = None  # decide's TTL, for Cache-Control
    # A refusal no retry can change, whatever its status (a 503 for a missing executor): a log consumer
    # answers it and moves on instead of redelivering it forever.
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.status < 400


def error_reply(status: int, detail: str, permanent: bool = False) -> Reply:
    return Reply(status=status, body=ErrorBody(detail=detail), permanent=permanent)


ReplyHook = Callable[[Reply], None]


@dataclass(frozen=True, slots=True)
class Request:
    command: Command
    reply: ReplyHook


def asyncio_hook(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Future[Reply], ReplyHook]:
    """A future on ``loop`` and the thread-safe hook that resolves it from an actor thread."""
    future: asyncio.Future[Reply] = loop.create_future()

    def resolve(reply: Reply) -> None:
        if not future.done():
            future.set_result(reply)

    def hook(reply: Reply) -> None:
        try:
            loop.call_soon_threadsafe(resolve, reply)
        except RuntimeError:  # the loop is closed: the caller is gone, nobody is left to answer
            pass

    return future, hook
