"""Command ids: a repeat of a command gets its first reply, never a second application; the same id on
other content is a conflict, never answered with the first command's reply (which would tell a caller its
different change was made)."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from domain.hashing import blake3_hex, canonical_json
from messages.commands import Command
from messages.errors import Answer, conflict

# Who sent it, under which correlation and which id: the same command retried may differ in these.
_NOT_CONTENT = frozenset({"command_id", "correlation_id", "actor"})


class StoredReply(NamedTuple):
    result: Answer
    reply: Any
    content_hash: str | None  # None: remembered before content hashes were kept


def command_hash(command: Command) -> str:
    """Kind, world and every field that changes the outcome, canonically encoded."""
    content = {k: v for k, v in msgspec.to_builtins(command).items() if k not in _NOT_CONTENT}
    return blake3_hex(canonical_json(content))


def replayed(command_id: str, stored: StoredReply, content_hash: str) -> tuple[Answer, Any]:
    """The first outcome of a command id; a conflict when it was applied with other content. A row from before
    content hashes cannot be compared, so it keeps the old behaviour (its stored reply)."""
    if stored.content_hash is not None and stored.content_hash != content_hash:
        raise conflict(f"command_id {command_id!r} was already used with different content")
    return stored.result, stored.reply
