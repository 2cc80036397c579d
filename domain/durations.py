"""The reference's duration syntax for campaign windows and promotion cooldowns: a number and one unit of
``s``, ``m``, ``h`` or ``d`` (``"24h"``, ``"1.5d"``); blanks around it and the unit's case are tolerated."""

from __future__ import annotations

import re

from messages.errors import unprocessable

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str | None, where: str = "") -> int | None:
    """``"2d"`` -> 172800, fractions truncated to whole seconds; none or blank -> ``None``; anything else is
    a 422 ``{where}invalid duration: '…'``."""
    stripped = str(text).strip() if text is not None else ""
    if not stripped:
        return None
    match = _DURATION.match(stripped)
    if match is None:
        raise unprocessable(f"{where}invalid duration: {stripped!r}")
    return max(0, int(float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]))
