"""Turns framework validation failures into the reference's 422 ``{"detail": [...]}`` bodies."""

from __future__ import annotations

import re

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY

from messages.errors import ValidationErrorBody, ValidationIssue


# msgspec names the offending field inside the message when it is missing or not allowed.
_NAMED_FIELD = re.compile(r"^Object (missing required|contains unknown) field `([^`]+)`")


def _issue(item: dict) -> ValidationIssue:
    source = item.get("source") or "body"
    key = item.get("key")
    message = item.get("message", "invalid value")
    parts = re.split(r"[.\[\]]", key) if key else []
    loc: list[str | int] = [source] + [int(p) if p.isdigit() else p for p in parts if p and p != "data"]
    named = _NAMED_FIELD.match(message)
    if named is None:
        return ValidationIssue(type="validation_error", loc=loc, msg=message)
    missing = named.group(1) == "missing required"
    return ValidationIssue(type="missing" if missing else "extra_forbidden", loc=[*loc, named.group(2)],
                           msg="Field required" if missing else "Extra inputs are not permitted")


def _missing_parameter(detail: str) -> ValidationIssue:
    """Litestar reports a missing parameter only in prose: "Missing required query parameter 'x' ..."."""
    name = detail.split("'")[1] if "'" in detail else "parameter"
    source = next((s for s in ("query", "header", "cookie") if s in detail), "path")
    return ValidationIssue(type="missing", loc=[source, name], msg="Field required")


def validation_issues(exc: HTTPException) -> list[ValidationIssue]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    issues = [_issue(item) for item in extra if isinstance(item, dict)]
    if issues:
        return issues
    detail = exc.detail or "invalid request"
    if "Missing required" in detail and "parameter" in detail:
        return [_missing_parameter(detail)]
    kind = "json_invalid" if "JSON" in detail or "malformed" in detail else "value_error"
    return [ValidationIssue(type=kind, loc=["body"], msg=detail)]


def client_error_handler(request: Request, exc: HTTPException) -> Response:
    """Litestar raises 400 for bodies and parameters it cannot decode; the wire contract says 422."""
    if exc.status_code != 400 and not isinstance(exc, ValidationException):
        return Response(content={"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    body = ValidationErrorBody(detail=validation_issues(exc))
    return Response(content=body, status_code=HTTP_422_UNPROCESSABLE_ENTITY)
