"""Error envelopes and the one exception a command handler raises to refuse a command."""

from __future__ import annotations

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


class CommandRejected(Exception):
    """A command refused by a rule: carries the HTTP-like status and a stable ``detail`` string."""

    def __init__(self, status: int, detail: str, body: Any = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.body = body  # a structured answer instead of ``{"detail": detail}`` (a machine-readable code)

    def __reduce__(self) -> tuple[type, tuple[int, str]]:
        return (type(self), (self.status, self.detail))


def not_found(what: str) -> CommandRejected:
    return CommandRejected(404, f"{what} not found")


def forbidden(detail: str) -> CommandRejected:
    """A rule of the world's own policy refuses this caller (not the role table: that is the edge's 403)."""
    return CommandRejected(403, detail)


def conflict(detail: str) -> CommandRejected:
    return CommandRejected(409, detail)


def unprocessable(detail: str) -> CommandRejected:
    return CommandRejected(422, detail)
