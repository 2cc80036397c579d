"""The world actor's part of the Risk Hub: accepting a validated snapshot (``StoreRiskSnapshot``).

The version rule needs the snapshot already stored under the version, read here inside the world's mailbox:
every snapshot of a world is written by this actor, so nothing can slip in between the read and the
commit of this one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from actors.bridge import Reply, Request, outcome_reply
from domain import risk_snapshots
from messages.commands import StoreRiskSnapshot
from storage.risk_rows import RiskSnapshotReads


def store_snapshot(world: Any, request: Request, now: datetime) -> Reply:
    command = request.command
    assert isinstance(command, StoreRiskSnapshot)
    state = world._state
    stored = RiskSnapshotReads(world._store.engine).stored(world.world_id, command.snapshot.version)
    outcome = risk_snapshots.accept(state, command.snapshot, stored, now, command.correlation_id)
    world._persist(outcome, command.actor, command.correlation_id, now)
    return outcome_reply(outcome)
