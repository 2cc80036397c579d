"""How a remembered command's first outcome is stored: the ``Result``/``Refusal`` value in ``outcome``.

Rows written before revision 0007 hold the HTTP status the edge answered with in ``status`` instead; they
are read back through ``LEGACY_STATUS``, a frozen record of what those numbers meant when they were
written (not the edge's mapping, which may change: a replay must answer what the first reply said).
"""

from __future__ import annotations

from messages.errors import Answer, Refusal, Result, answer_named

LEGACY_STATUS: dict[int, Answer] = {
    200: Result.OK, 201: Result.CREATED, 202: Result.ACCEPTED, 204: Result.NO_CONTENT,
    400: Refusal.INVALID, 403: Refusal.FORBIDDEN_BY_POLICY, 404: Refusal.NOT_FOUND, 409: Refusal.CONFLICT,
    412: Refusal.PRECONDITION_FAILED, 422: Refusal.UNPROCESSABLE, 500: Refusal.FAILED,
    501: Refusal.NOT_IMPLEMENTED, 502: Refusal.UPSTREAM_FAILED, 503: Refusal.UNAVAILABLE,
}


def stored_answer(outcome: str | None, legacy_status: int | None) -> Answer:
    """The answer of one ``processed_commands`` row, whichever revision wrote it."""
    if outcome is not None:
        return answer_named(outcome)
    if legacy_status is None or legacy_status not in LEGACY_STATUS:
        raise ValueError(f"remembered command row without a readable outcome (status {legacy_status!r})")
    return LEGACY_STATUS[legacy_status]
