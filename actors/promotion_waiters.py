"""Callers of a live promotion wait on the apply run it started, like any apply caller, but are answered
in the promotion's terms: the run's completion becomes the promotion's answer (the evaluation run, or
``applied: true``); anything else (held awaiting ACKs, rolled back, a repeat of a rolled-back run) is passed
through as the apply answered it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors.bridge import Reply, Request
from messages.apply import ApplyAck
from messages.commands import StartApply


@dataclass(frozen=True, slots=True)
class Translated(Request):
    """``reply`` translates the run's answer; ``origin`` is the caller's own request, so a reset of the
    world answers that caller exactly once."""

    origin: Request


def origin_of(request: Request) -> Request:
    return request.origin if isinstance(request, Translated) else request


def completed(reply: Reply) -> bool:
    body = reply.body
    return reply.status == 200 and isinstance(body, ApplyAck) and body.ok and body.phase == "completed"


def translated(origin: Request, start: StartApply, success: Any, failed: Callable[[str], None]) -> Translated:
    """The waiter parked on ``start``'s run for ``origin``; ``failed("apply_failed")`` when it rolls back."""
    def reply(settled: Reply) -> None:
        if completed(settled):
            origin.reply(Reply(status=200, body=success))
            return
        if settled.status >= 500:
            failed("apply_failed")
        origin.reply(settled)

    return Translated(command=start, reply=reply, origin=origin)
