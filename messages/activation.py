"""Activation messages: the manual override body and the envelope served and announced."""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from messages.types import EffectiveMode, Identifier, Side, Weight


class ActivationRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``PUT /worlds/{id}/activation``.

    Optional fields left out keep the entry's stored value (a new entry gets weight 1.0, no freeze, no
    drain), so a partial override never silently resets a freeze.
    """

    strategy_id: Identifier
    side: Side
    active: bool
    weight: Weight | UnsetType = UNSET
    freeze: bool | UnsetType = UNSET
    drain: bool | UnsetType = UNSET
    effective_mode: EffectiveMode | None | UnsetType = UNSET
    run_id: Identifier | None = None
    ts: str | None = None


class ActivationEntry(msgspec.Struct, kw_only=True):
    """One (strategy, side) entry of a world's activation set, as stored and hashed."""

    active: bool
    weight: float = 1.0
    freeze: bool = False
    drain: bool = False
    effective_mode: str | None = None
    run_id: str | None = None
    ts: str
    etag: str


class ActivationEnvelope(msgspec.Struct, kw_only=True):
    world_id: str
    strategy_id: str
    side: str
    active: bool
    weight: float
    freeze: bool
    drain: bool
    effective_mode: str | None
    etag: str
    run_id: str | None
    ts: str
    state_hash: str | None = None
    phase: str | None = None
    requires_ack: bool | None = None
    sequence: int | None = None


class StateHashOut(msgspec.Struct):
    state_hash: str


class ActivationSetOut(msgspec.Struct, kw_only=True):
    """``GET /worlds/{id}/activation`` without ``strategy_id``: the whole set, for a Gateway reconciling
    after an ACK gap. ``version`` and ``state`` are exactly the document ``state_hash`` is taken over, so a
    client can check the hash against what it holds; ``etag`` is derived from it."""

    world_id: str
    version: int
    state: dict[str, dict[str, ActivationEntry]]
    state_hash: str
    etag: str
