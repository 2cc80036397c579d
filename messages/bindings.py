"""Bindings and decisions: a world's strategy sets."""

from __future__ import annotations

import msgspec

from messages.types import Identifier


class StrategiesRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``DecisionsRequest``: entries must be non-empty; order is kept and duplicates dropped."""

    strategies: list[Identifier]


class StrategiesOut(msgspec.Struct):
    strategies: list[str]
