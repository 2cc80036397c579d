"""World View Graph rules (spec §1-A, §4-B): node references per execution domain, edge overrides, and the
validation cache keyed by EvalKey.

Nodes and cached validations live in buckets ``node_id -> execution domain -> record``; removing a bucket's
last record removes the bucket, so a world never keeps empty shells of nodes it forgot.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import msgspec
from msgspec import UNSET

from domain.default_safe import LIVE, refused, world_refusals
from domain.domains import EVERY_DOMAIN, normalise_domain, resolve_domain
from domain.effects import (
    AuditRecord, Effect, OutboxEvent, RemoveNode, RemoveValidations, SaveEdge, SaveNode, SaveValidation,
)
from domain.evalkey import eval_key
from domain.events import cloudevent
from domain.state import Outcome, WorldState, require_world
from domain.timefmt import iso_z, parse_iso
from messages.apply import EdgeOverride
from messages.commands import (
    DeleteNode, DeleteValidation, GetNode, ListEdgeOverrides, ListNodes, LookupValidation, PutEdgeOverride,
    PutNode, StoreValidation,
)
from messages.errors import Result, not_found, unprocessable
from messages.worlds import VALIDATION_CONTEXT_FIELDS, WorldRecord
from messages.wvg import (
    EdgeOverrideOut, ValidationCacheResponse, ValidationContext, ValidationEntry, WorldNodeRef,
)

# Logical event family; ``worldservice.controlbus.topics.edges`` names its Kafka topic (control.edges).
EDGE_TOPIC = "edges"
# Created with every world (reference DEFAULT_EDGE_OVERRIDES): live stays unreachable from backtest until a
# gating policy enables it after promotion.
DEFAULT_EDGES = (("domain:backtest", "domain:live", False, "auto:cross-domain-block"),)

# A bound strategy's anchor in the graph (spec §2 WSB, §9): named by the strategy id, in backtest so a
# binding alone can never make anything reachable in live.
ROOT_DOMAIN = "backtest"

T = TypeVar("T")
Buckets = dict[str, dict[str, T]]


def _put(buckets: Buckets[T], node_id: str, domain: str, value: T) -> Buckets[T]:
    return {**buckets, node_id: {**buckets.get(node_id, {}), domain: value}}


def _drop(buckets: Buckets[T], node_id: str, domain: str | None) -> Buckets[T]:
    """Without one domain of a node (or the whole node when ``domain`` is None); empty buckets go too."""
    rest = {d: v for d, v in buckets.get(node_id, {}).items() if domain is not None and d != domain}
    out = {n: b for n, b in buckets.items() if n != node_id}
    return {**out, node_id: rest} if rest else out


def _ok(state: WorldState, reply: Any, result: Result = Result.OK) -> Outcome:
    """An answer that changes nothing: the actor skips the SQL round trip for an outcome without effects."""
    return Outcome(state=state, effects=[], reply=reply, result=result)


# --- nodes -------------------------------------------------------------------------------------------


def put_node(state: WorldState, cmd: PutNode, now: datetime) -> Outcome:
    require_world(state)
    body = cmd.body
    domain = normalise_domain(body.execution_domain)
    old = state.nodes.get(cmd.node_id, {}).get(domain) or WorldNodeRef(
        world_id=state.world_id, node_id=cmd.node_id, execution_domain=domain, status=body.status)
    node = msgspec.structs.replace(
        old, status=body.status,
        last_eval_key=body.last_eval_key if body.last_eval_key is not UNSET else old.last_eval_key,
        annotations=body.annotations if body.annotations is not UNSET else old.annotations,
    )
    audit = AuditRecord(event="world_node_upserted", request=msgspec.to_builtins(body),
                        result=msgspec.to_builtins(node))
    effects: list[Effect] = [SaveNode(node=node), audit]
    new_state = msgspec.structs.replace(state, nodes=_put(state.nodes, cmd.node_id, domain, node))
    return Outcome(state=new_state, effects=effects, reply=node)


def ensure_roots(state: WorldState, strategy_ids: list[str]) -> tuple[Buckets[WorldNodeRef], list[Effect]]:
    """The root ``WorldNodeRef`` of every strategy that has no node of its id yet (in any domain), with its
    effects; an existing node, root or not, is never overwritten by a re-binding."""
    nodes, effects = state.nodes, []
    for sid in strategy_ids:
        if sid in nodes:
            continue
        node = WorldNodeRef(world_id=state.world_id, node_id=sid, execution_domain=ROOT_DOMAIN, status="unknown",
                            annotations={"root": True, "strategy_id": sid})
        nodes = _put(nodes, sid, ROOT_DOMAIN, node)
        effects += [SaveNode(node=node),
                    AuditRecord(event="world_node_upserted", request={"binding": sid},
                                result=msgspec.to_builtins(node))]
    return nodes, effects


def delete_node(state: WorldState, cmd: DeleteNode, now: datetime) -> Outcome:
    """Idempotent: deleting an absent node answers 204 and writes nothing."""
    require_world(state)
    domain = normalise_domain(cmd.execution_domain)
    if domain not in state.nodes.get(cmd.node_id, {}):
        return _ok(state, None, Result.NO_CONTENT)
    effects: list[Effect] = [RemoveNode(node_id=cmd.node_id, execution_domain=domain),
                             AuditRecord(event="world_node_deleted", request=None,
                                         result={"node_id": cmd.node_id, "execution_domain": domain})]
    new_state = msgspec.structs.replace(state, nodes=_drop(state.nodes, cmd.node_id, domain))
    return Outcome(state=new_state, effects=effects, reply=None, result=Result.NO_CONTENT)


def list_nodes(state: WorldState, query: ListNodes, now: datetime) -> list[WorldNodeRef]:
    """No domain, ``*`` or ``all``: every domain (the reference's backends disagreed on the default)."""
    require_world(state)
    raw = query.execution_domain
    wanted = None if raw is None or raw.strip().lower() in EVERY_DOMAIN else normalise_domain(raw)
    return [node for node_id in sorted(state.nodes) for domain, node in sorted(state.nodes[node_id].items())
            if wanted is None or domain == wanted]


def get_node(state: WorldState, query: GetNode, now: datetime) -> WorldNodeRef:
    require_world(state)
    node = state.nodes.get(query.node_id, {}).get(normalise_domain(query.execution_domain))
    if node is None:
        raise not_found("world node")
    return node


# --- edge overrides ------------------------------------------------------------------------------------


def edge_key(src: str, dst: str) -> str:
    return f"{src}->{dst}"


def edge_out(world_id: str, edge: EdgeOverride) -> EdgeOverrideOut:
    return EdgeOverrideOut(world_id=world_id, src_node_id=edge.src, dst_node_id=edge.dst, active=edge.active,
                           reason=edge.reason, updated_at=edge.updated_at)


def edge_event(state: WorldState, edge: EdgeOverride, correlation_id: str | None, now: datetime,
               event_type: str = "edge_override_upserted") -> OutboxEvent:
    """The spec's "WS emits WVG changes via ControlBus". The idempotency key names the commit that made the
    change (the world's next row version, which only grows), so two changes in one second stay distinct."""
    world_id = state.world_id
    data = {**msgspec.to_builtins(edge_out(world_id, edge)), "version": 1}
    key = f"{event_type}:{world_id}:{edge_key(edge.src, edge.dst)}:{state.row_version + 1}"
    return cloudevent(EDGE_TOPIC, event_type, world_id, data, key,
                      correlation_id or f"edge:{world_id}:{edge_key(edge.src, edge.dst)}", now)


def default_edges(state: WorldState, correlation_id: str | None,
                  now: datetime) -> tuple[dict[str, EdgeOverride], list[Effect]]:
    """The edges every new world starts with, stored and announced in the creating transaction."""
    edges, effects = dict(state.edges), []
    for src, dst, active, reason in DEFAULT_EDGES:
        edge = EdgeOverride(src=src, dst=dst, active=active, reason=reason, updated_at=iso_z(now))
        edges[edge_key(src, dst)] = edge
        effects += [SaveEdge(edge=edge), edge_event(state, edge, correlation_id, now)]
    return edges, effects


def edge_into_live(state: WorldState, edge: EdgeOverride) -> bool:
    """An edge whose destination is the live domain, or a node the world keeps in its live bucket."""
    if edge.dst.startswith("domain:"):
        return resolve_domain(edge.dst.removeprefix("domain:")) == LIVE
    return LIVE in state.nodes.get(edge.dst, {})


def put_edge(state: WorldState, cmd: PutEdgeOverride, now: datetime) -> Outcome:
    """Leaving ``reason`` out keeps the stored reason (the reference's persistent backend cleared it). An
    edge into live opens only on a world that is live and may stay so (seed §4: cross-domain edges stay
    disabled until a policy enables them post-promotion)."""
    world = require_world(state)
    key = edge_key(cmd.src_node_id, cmd.dst_node_id)
    old = state.edges.get(key)
    reason = cmd.body.reason if cmd.body.reason is not UNSET else (old.reason if old else None)
    edge = EdgeOverride(src=cmd.src_node_id, dst=cmd.dst_node_id, active=cmd.body.active, reason=reason,
                        updated_at=iso_z(now))
    refusals = world_refusals(world) if edge.active and edge_into_live(state, edge) else []
    if refusals:
        return refused(state, "edge into live", refusals, msgspec.to_builtins(cmd.body))
    reply = edge_out(state.world_id, edge)
    effects: list[Effect] = [
        SaveEdge(edge=edge),
        AuditRecord(event="edge_override_upserted", request=msgspec.to_builtins(cmd.body),
                    result=msgspec.to_builtins(reply)),
        edge_event(state, edge, cmd.correlation_id, now),
    ]
    new_state = msgspec.structs.replace(state, edges={**state.edges, key: edge})
    return Outcome(state=new_state, effects=effects, reply=reply)


def list_edges(state: WorldState, query: ListEdgeOverrides, now: datetime) -> list[EdgeOverrideOut]:
    require_world(state)
    return [edge_out(state.world_id, state.edges[key]) for key in sorted(state.edges)]


# --- validation cache ----------------------------------------------------------------------------------


def _context_key(state: WorldState, ctx: ValidationContext, domain: str) -> str:
    return eval_key(ctx.node_id, state.world_id, domain, ctx.contract_id, ctx.dataset_fingerprint,
                    ctx.code_version, ctx.resource_policy)


def _hit(entry: ValidationEntry) -> ValidationCacheResponse:
    return ValidationCacheResponse(cached=True, eval_key=entry.eval_key, result=entry.result,
                                   metrics=entry.metrics, timestamp=entry.timestamp)


def lookup_validation(state: WorldState, cmd: LookupValidation, now: datetime) -> Outcome:
    """A hit or a plain miss writes nothing; an entry made under another context is evicted (it can never
    be served again) and the miss is audited with both keys."""
    require_world(state)
    ctx = cmd.body
    domain = normalise_domain(ctx.execution_domain)
    expected = _context_key(state, ctx, domain)
    stored = state.validations.get(ctx.node_id, {}).get(domain)
    if stored is None:
        return _ok(state, ValidationCacheResponse(cached=False))
    if stored.eval_key == expected:
        return _ok(state, _hit(stored))
    result = {"reason": "context_mismatch", "node_id": ctx.node_id, "execution_domain": domain,
              "stored_eval_key": stored.eval_key, "expected_eval_key": expected}
    effects: list[Effect] = [RemoveValidations(node_id=ctx.node_id, execution_domain=domain),
                             AuditRecord(event="validation_cache_invalidated", request=None, result=result)]
    new_state = msgspec.structs.replace(state, validations=_drop(state.validations, ctx.node_id, domain))
    return Outcome(state=new_state, effects=effects, reply=ValidationCacheResponse(cached=False))


def _timestamp(raw: str | None, now: datetime) -> str:
    if raw is None:
        return iso_z(now)
    try:
        parse_iso(raw)
    except ValueError:
        raise unprocessable("invalid timestamp; expected ISO-8601") from None
    return raw


def store_validation(state: WorldState, cmd: StoreValidation, now: datetime) -> Outcome:
    require_world(state)
    body = cmd.body
    domain = normalise_domain(body.execution_domain)
    entry = ValidationEntry(
        eval_key=_context_key(state, body, domain), node_id=body.node_id, execution_domain=domain,
        contract_id=body.contract_id, dataset_fingerprint=body.dataset_fingerprint,
        code_version=body.code_version, resource_policy=body.resource_policy, result=body.result,
        metrics=body.metrics, timestamp=_timestamp(body.timestamp, now),
    )
    result = {"node_id": body.node_id, "execution_domain": domain, "eval_key": entry.eval_key,
              "result": body.result}
    effects: list[Effect] = [SaveValidation(entry=entry),
                             AuditRecord(event="validation_cache_updated", request=None, result=result)]
    validations = _put(state.validations, body.node_id, domain, entry)
    new_state = msgspec.structs.replace(state, validations=validations)
    return Outcome(state=new_state, effects=effects, reply=_hit(entry))


def delete_validation(state: WorldState, cmd: DeleteValidation, now: datetime) -> Outcome:
    """One domain of a node, or every domain of it without ``execution_domain``; absent entries: 204."""
    require_world(state)
    domain = normalise_domain(cmd.execution_domain) if cmd.execution_domain is not None else None
    bucket = state.validations.get(cmd.node_id, {})
    gone = sorted(e.eval_key for d, e in bucket.items() if domain is None or d == domain)
    if not gone:
        return _ok(state, None, Result.NO_CONTENT)
    result = {"reason": "deleted", "node_id": cmd.node_id, "execution_domain": domain, "eval_keys": gone}
    effects: list[Effect] = [RemoveValidations(node_id=cmd.node_id, execution_domain=domain),
                             AuditRecord(event="validation_cache_invalidated", request=None, result=result)]
    new_state = msgspec.structs.replace(state, validations=_drop(state.validations, cmd.node_id, domain))
    return Outcome(state=new_state, effects=effects, reply=None, result=Result.NO_CONTENT)


def invalidate_all(state: WorldState, reason: str, **detail: Any) -> list[Effect]:
    """Effects emptying the world's whole cache (nothing when it is empty already); the caller also clears
    ``validations`` in its new state."""
    if not state.validations:
        return []
    count = sum(len(bucket) for bucket in state.validations.values())
    return [RemoveValidations(),
            AuditRecord(event="validation_cache_invalidated", request=None,
                        result={"reason": reason, "entries": count, **detail})]


def context_changes(world: WorldRecord, changes: dict[str, Any]) -> list[str]:
    """The validation-context fields (contract, dataset, resources, code) an update really changes."""
    return [f for f in VALIDATION_CONTEXT_FIELDS if f in changes and changes[f] != getattr(world, f)]
