"""Error envelopes, what a command's answer says happened (``Result``, ``Refusal``), and the one exception a
command handler raises to refuse a command.

The domain says what happened in these words; only the edges (``actors.bridge.STATUS``) turn them into
HTTP status codes, so a rule never knows which protocol answers it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec


class ValidationIssue(msgspec.Struct, frozen=True):
    """One validation failure, shaped like FastAPI's so existing clients parse it."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None


class ValidationErrorBody(msgspec.Struct, frozen=True):
    detail: list[ValidationIssue]


class ErrorBody(msgspec.Struct, frozen=True):
    detail: str


class ErrorCode(msgspec.Struct, frozen=True):
    code: str
    message: str


class CodedErrorBody(msgspec.Struct, frozen=True):
    """``{"detail": {"code", "message"}}``: an error a client branches on by code."""

    detail: ErrorCode


class Result(StrEnum):
    """A command that succeeded: what it did. The values are persisted (remembered command outcomes)."""

    OK = "ok"  # answered (a read, or a change whose answer is the changed record)
    CREATED = "created"  # a new resource
    NO_CONTENT = "no_content"  # done; nothing to answer with
    ACCEPTED = "accepted"  # taken on, not finished (an apply run held awaiting ACKs, a recorded ACK)


class Refusal(StrEnum):
    """Why a command was not done. The values are persisted, so they never change meaning."""

    INVALID = "invalid"  # the request cannot be understood as asked (a schema version it must name)
    FORBIDDEN_BY_POLICY = "forbidden_by_policy"  # the world's own policy refuses this caller
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # the world's current state refuses it (already exists, a run in progress, a gate)
    PRECONDITION_FAILED = "precondition_failed"  # the caller's precondition (an If-Match etag) is stale
    UNPROCESSABLE = "unprocessable"  # well formed, but a rule rejects its content
    FAILED = "failed"  # taken on and then failed inside (an apply run that rolled back)
    NOT_IMPLEMENTED = "not_implemented"  # a mode the service does not offer
    UPSTREAM_FAILED = "upstream_failed"  # a system called on the caller's behalf failed
    UNAVAILABLE = "unavailable"  # not now (storage, a stopped actor, a missing executor); retry may help


Answer = Result | Refusal  # what an outcome says happened, either way


def answer_named(value: str) -> Answer:
    """The ``Result`` or ``Refusal`` whose value is ``value`` (the values of the two never overlap)."""
    try:
        return Result(value)
    except ValueError:
        return Refusal(value)


class CommandRejected(Exception):
    """A command refused by a rule: says why (``refusal``) with a stable ``detail`` string."""

    def __init__(self, refusal: Refusal, detail: str, body: Any = None) -> None:
        super().__init__(detail)
        self.refusal = refusal
        self.detail = detail
        self.body = body  # a structured answer instead of ``{"detail": detail}`` (a machine-readable code)

    def __reduce__(self) -> tuple[type, tuple[Refusal, str]]:
        return (type(self), (self.refusal, self.detail))


def not_found(what: str) -> CommandRejected:
    return CommandRejected(Refusal.NOT_FOUND, f"{what} not found")


def forbidden(detail: str) -> CommandRejected:
    """A rule of the world's own policy refuses this caller (not the role table: that is the edge's 403)."""
    return CommandRejected(Refusal.FORBIDDEN_BY_POLICY, detail)


def conflict(detail: str) -> CommandRejected:
    return CommandRejected(Refusal.CONFLICT, detail)


def unprocessable(detail: str) -> CommandRejected:
    return CommandRejected(Refusal.UNPROCESSABLE, detail)
