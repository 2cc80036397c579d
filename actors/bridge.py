"""Messages between the asyncio edges and the actors, and the reply hook that crosses back.

The loop never waits on a pykka future (that would block it): it sends a ``Request`` carrying a reply
callable, and the actor's answer is handed back to the loop with ``call_soon_threadsafe``.

This is also where what the domain says happened (``Result``, ``Refusal``) becomes a status code: ``STATUS``
is the one table, shared by the HTTP edge and the Kafka replies (which carry the same numbers).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain.state import Outcome
from messages.commands import Command
from messages.errors import Answer, CommandRejected, ErrorBody, Refusal, Result


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


# The reference's number for each answer (its FastAPI routes), for the HTTP edge and the Kafka replies alike.
STATUS: dict[Answer, int] = {
    Result.OK: 200, Result.CREATED: 201, Result.ACCEPTED: 202, Result.NO_CONTENT: 204,
    Refusal.INVALID: 400, Refusal.FORBIDDEN_BY_POLICY: 403, Refusal.NOT_FOUND: 404, Refusal.CONFLICT: 409,
    Refusal.PRECONDITION_FAILED: 412, Refusal.UNPROCESSABLE: 422, Refusal.FAILED: 500,
    Refusal.NOT_IMPLEMENTED: 501, Refusal.UPSTREAM_FAILED: 502, Refusal.UNAVAILABLE: 503,
}


def answer_reply(answer: Answer, body: Any, ttl: int | None = None) -> Reply:
    return Reply(status=STATUS[answer], body=body, ttl=ttl)


def refusal_reply(exc: CommandRejected, permanent: bool = False) -> Reply:
    """A refused command: its structured body if it has one, else ``{"detail": ...}``."""
    body = ErrorBody(detail=exc.detail) if exc.body is None else exc.body
    return Reply(status=STATUS[exc.refusal], body=body, permanent=permanent)


def outcome_reply(outcome: Outcome) -> Reply:
    if isinstance(outcome.reply, tuple):  # decide: (envelope, ttl)
        envelope, ttl = outcome.reply
        return answer_reply(Result.OK, envelope, ttl)
    return answer_reply(outcome.result, outcome.reply)


ReplyHook = Callable[[Reply], None]


@dataclass(frozen=True, slots=True)
class Request:
    command: Command
    reply: ReplyHook


class _ReplyInbox:
    """Replies from actor threads to one event loop, handed over per burst: a commit answers its whole
    batch at once, and one loop wake-up (``call_soon_threadsafe`` writes the loop's self-pipe) for the
    burst replaces one per reply. The append comes before the flag test and the drain clears the flag
    before it empties the queue, so a reply is never left waiting without a drain scheduled."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: deque[tuple[asyncio.Future[Reply], Reply]] = deque()
        self._scheduled = False

    def put(self, future: asyncio.Future[Reply], reply: Reply) -> None:
        self._queue.append((future, reply))
        if not self._scheduled:
            self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: the caller is gone, nobody is left to answer
                self._scheduled = False

    def _drain(self) -> None:
        self._scheduled = False
        queue = self._queue
        while queue:
            future, reply = queue.popleft()
            if not future.done():
                future.set_result(reply)


_INBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ReplyInbox] = weakref.WeakKeyDictionary()


def asyncio_hook(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Future[Reply], ReplyHook]:
    """A future on ``loop`` and the thread-safe hook that resolves it from an actor thread."""
    future: asyncio.Future[Reply] = loop.create_future()
    inbox = _INBOXES.get(loop)
    if inbox is None:  # only the loop's own thread creates hooks for it, so no race on the first one
        inbox = _INBOXES[loop] = _ReplyInbox(loop)
    put = inbox.put

    def hook(reply: Reply) -> None:
        put(future, reply)

    return future, hook
