"""The base of every command (``messages.commands`` derives the unions): its own module so each message
family can declare its commands next to its shapes."""

from __future__ import annotations

import msgspec

from messages.types import Identifier, WorldId


class Command(msgspec.Struct, tag_field="kind", forbid_unknown_fields=True, kw_only=True):
    world_id: WorldId
    actor: str | None = None
    correlation_id: str | None = None
    command_id: Identifier | None = None
