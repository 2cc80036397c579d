"""What follows from the default-safe rule (``domain.default_safe``, which also builds a refusal): a change
of the world's execution domain, and the demotion of a live world that may no longer be live.

A domain change is one set of effects wherever it happens (apply's Switch, its rollback, a demotion): the
world record, an audit entry for the timeline, and ``execution_domain_updated`` on the ControlBus naming the
world's queue namespace ``{world_id}.{execution_domain}`` (seed §4), so consumers rebind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from domain.activation import activation_etag, activation_event, entry_written, state_hash
from domain.default_safe import BACKTEST, LIVE, capped_mode
from domain.effects import AuditRecord, Effect, SaveEdge, SaveWorld
from domain.events import cloudevent
from domain.state import WorldState
from domain.timefmt import iso_z
from domain.wvg import edge_event, edge_into_live, invalidate_all
from messages.worlds import WorldRecord

# Logical event family; ``worldservice.controlbus.topics.domains`` names its Kafka topic (control.domains).
DOMAIN_TOPIC = "domains"


def queue_namespace(world_id: str, domain: str) -> str:
    return f"{world_id}.{domain}"


def _domain_event(state: WorldState, before: WorldRecord, after: WorldRecord, cause: dict[str, Any],
                  now: datetime) -> Effect:
    data = {"world_id": state.world_id, "execution_domain": after.execution_domain,
            "previous_domain": before.execution_domain, "dataset_fingerprint": after.dataset_fingerprint,
            "queue_namespace": queue_namespace(state.world_id, after.execution_domain), **cause, "version": 1}
    # The next row version names the commit, so two changes between the same domains stay distinct events.
    key = f"execution_domain_updated:{state.world_id}:{after.execution_domain}:{state.row_version + 1}"
    return cloudevent(DOMAIN_TOPIC, "execution_domain_updated", state.world_id, data, key,
                      f"domain:{state.world_id}", now)


def domain_changed(state: WorldState, after: WorldRecord, cause: dict[str, Any],
                   now: datetime) -> tuple[WorldState, list[Effect]]:
    """Store ``after`` as the world; when its domain or pinned fingerprint moved, audit and announce it. A new
    pinned fingerprint is a new validation context, so the world's validation cache goes with it."""
    before = state.world
    assert before is not None
    effects: list[Effect] = [SaveWorld(record=after)]
    moved = (before.execution_domain, before.dataset_fingerprint) != (after.execution_domain,
                                                                       after.dataset_fingerprint)
    if moved:
        effects.append(AuditRecord(event="execution_domain_changed", request=None, result={
            "from": before.execution_domain, "to": after.execution_domain,
            "dataset_fingerprint": after.dataset_fingerprint,
            "queue_namespace": queue_namespace(state.world_id, after.execution_domain), **cause}))
        effects.append(_domain_event(state, before, after, cause, now))
    validations = state.validations
    if before.dataset_fingerprint != after.dataset_fingerprint:
        effects += invalidate_all(state, "world_context_changed", fields=["dataset_fingerprint"])
        validations = {}
    return msgspec.structs.replace(state, world=after, validations=validations), effects


# --- demotion ---------------------------------------------------------------------------------------------


def _compute_only_entries(state: WorldState, correlation: str, now: datetime) -> tuple[WorldState, list[Effect]]:
    """Every live entry rewritten compute-only under a new etag and announced, so Gateways gate orders off."""
    entries = {sid: dict(sides) for sid, sides in state.activation.items()}
    counter, effects = state.activation_counter, []
    for sid in sorted(entries):
        for side in sorted(entries[sid]):
            entry = entries[sid][side]
            if entry.effective_mode != LIVE:
                continue
            counter += 1
            entry = msgspec.structs.replace(entry, effective_mode=capped_mode(entry.effective_mode, False),
                                            etag=activation_etag(state.world_id, sid, side, counter),
                                            ts=iso_z(now))
            entries[sid][side] = entry
            event = activation_event(state.world_id, sid, side, entry, state_hash(counter, entries), counter,
                                     correlation, now)
            effects += entry_written(sid, side, entry, counter, event)
    return msgspec.structs.replace(state, activation=entries, activation_counter=counter), effects


def _live_edges_closed(state: WorldState, reason: str, correlation: str,
                       now: datetime) -> tuple[WorldState, list[Effect]]:
    edges, effects = dict(state.edges), []
    for key in sorted(edges):
        edge = edges[key]
        if edge.active and edge_into_live(state, edge):
            edges[key] = msgspec.structs.replace(edge, active=False, reason=reason, updated_at=iso_z(now))
            effects += [SaveEdge(edge=edges[key]), edge_event(state, edges[key], correlation, now)]
    return msgspec.structs.replace(state, edges=edges), effects


def demote(state: WorldState, after: WorldRecord, refusals: list[str], correlation: str | None,
           now: datetime) -> tuple[WorldState, list[Effect]]:
    """Take a live world out of live at once, in the transaction of the change that requires it: its domain
    goes to backtest, its live entries to compute-only and its edges into live are closed, each announced."""
    reason = f"demoted:{','.join(refusals)}"
    correlation = correlation or f"demotion:{state.world_id}"
    demoted = msgspec.structs.replace(after, execution_domain=BACKTEST)
    audit = AuditRecord(event="world_demoted", request=None, result={
        "from": LIVE, "to": BACKTEST, "refusals": refusals, "outcome": "demoted"})
    state, world_effects = domain_changed(state, demoted, {"reason": reason}, now)
    state, entry_effects = _compute_only_entries(state, correlation, now)
    state, edge_effects = _live_edges_closed(state, reason, correlation, now)
    return state, [audit, *world_effects, *entry_effects, *edge_effects]
