"""Risk Signal Hub snapshots (reference §1.13, §3.3): validation, the content hash, blob offloading and the
world's acceptance rule, as pure functions (time is passed in).

- Valid: ``as_of`` an ISO timestamp; ``weights`` non-empty, summing to 1 within ``WEIGHT_TOLERANCE``;
  ``ttl_sec`` defaults to 900 s and lies in ``1..ttl_sec_max`` (86,400 s); a covariance key names two
  assets (``"a,b"`` or ``"a:b"``); realized returns are finite numbers (a list, or lists by strategy),
  at most ``returns_max_points_per_series`` (200,000) per series and ``returns_max_points_total``
  (1,000,000) in all (the reference's caps against multi-megabyte inline payloads).
- The producer (``X-Actor``) and stage (``X-Stage``) are the provenance's; a body provenance naming others
  is refused, and so is an actor or stage outside ``allowed_actors`` / ``allowed_stages`` when those are
  configured (exact names, as the reference: 422 ``actor 'x' not allowed``).
- Expired when ``now > created_at + ttl_sec`` (``created_at`` is when the hub first saw it, or the
  producer's own stamp on a re-send); an expired snapshot is refused.
- ``hash`` is ``sha256:`` over the canonical JSON (sorted keys, no whitespace) of the content without
  ``hash`` and ``created_at``, computed *before* large parts are offloaded, so a retry hashes the same
  whether its covariance travelled inline or not. A producer's own ``hash`` is not trusted.
- Large parts (a covariance of more than ``inline_cov_threshold`` entries, any part over
  ``inline_max_bytes``) are stored in the blob store under a content address (``blob:sha256:<hex>``) and
  replaced by their reference.
- A world accepts a version once: the same version with the same hash is a duplicate (answered, nothing
  written, no event); with another hash it is a conflict. Every accepted snapshot is stored and announced
  with ``risk_snapshot_updated`` in the same commit; the world remembers the newest one (by ``as_of``, then
  ``created_at``) for the live-promotion gate.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

from domain.effects import AuditRecord, Effect, SaveRiskSnapshot
from domain.events import cloudevent
from domain.governance import RiskSnapshotStamp
from domain.state import Outcome, WorldState, require_world
from domain.timefmt import iso_z, parse_iso, refuse_future
from messages.errors import conflict, unprocessable
from messages.risk_hub import RiskSnapshot, RiskSnapshotIn

RISK_TOPIC = "risk_snapshot"  # logical family; ``controlbus.topics.risk_snapshot`` names its Kafka topic
EVENT_TYPE = "risk_snapshot_updated"
WEIGHT_TOLERANCE = 1e-3
EXPIRED = "snapshot is expired"
_PARTS = ("covariance", "realized_returns", "stress")


@dataclass(frozen=True, slots=True)
class HubLimits:
    ttl_sec_default: int = 900
    ttl_sec_max: int = 86_400
    inline_cov_threshold: int = 100
    inline_max_bytes: int = 65_536
    allowed_actors: frozenset[str] | None = None  # None: any producer
    allowed_stages: frozenset[str] | None = None
    returns_max_points_per_series: int = 200_000
    returns_max_points_total: int = 1_000_000


class SnapshotAccepted(msgspec.Struct, kw_only=True):
    """The world's answer to a push: the snapshot, and whether it was a duplicate of a stored one."""

    snapshot: RiskSnapshot
    deduped: bool


def canonical(value: Any) -> bytes:
    return msgspec.json.encode(msgspec.to_builtins(value), order="sorted")


def content_hash(snapshot: RiskSnapshot) -> str:
    content = msgspec.to_builtins(snapshot)
    content.pop("hash", None)
    content.pop("created_at", None)
    return "sha256:" + hashlib.sha256(canonical(content)).hexdigest()


def blob_ref(payload: Any) -> str:
    return "blob:sha256:" + hashlib.sha256(canonical(payload)).hexdigest()


def expires_at(created_at: str, ttl_sec: int) -> datetime:
    return parse_iso(created_at) + timedelta(seconds=ttl_sec)


def is_expired(snapshot: RiskSnapshot, now: datetime) -> bool:
    return now > expires_at(snapshot.created_at, snapshot.ttl_sec)


def order_key(as_of: str, created_at: str) -> str:
    """Sortable text of (as_of, created_at) in UTC with microseconds: what "latest" means everywhere."""
    def fmt(text: str) -> str:
        return parse_iso(text).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{fmt(as_of)}|{fmt(created_at)}"


# --- validation ------------------------------------------------------------------------------------


def _checked_as_of(text: str) -> str:
    try:
        parse_iso(text)
    except ValueError:
        raise unprocessable(f"invalid as_of timestamp: {text}") from None
    return text


def _checked_weights(weights: dict[str, float]) -> dict[str, float]:
    if not weights:
        raise unprocessable("weights are required")
    total = math.fsum(weights.values())
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise unprocessable(f"weights must sum to 1 within {WEIGHT_TOLERANCE:g} (sum {total:.6g})")
    return dict(weights)


def _checked_ttl(ttl: int | None, limits: HubLimits) -> int:
    value = limits.ttl_sec_default if ttl is None else ttl
    if value <= 0:
        raise unprocessable("ttl_sec must be positive")
    if value > limits.ttl_sec_max:
        raise unprocessable(f"ttl_sec must be <= {limits.ttl_sec_max}")
    return value


def _checked_covariance(cov: dict[str, float] | None) -> dict[str, float] | None:
    if cov is None:
        return None
    for key in cov:
        if asset_pair(key) is None:
            raise unprocessable(f"covariance key {key!r} must name two assets as 'a,b'")
    return dict(cov)


def asset_pair(key: str) -> tuple[str, str] | None:
    for sep in (",", ":"):
        a, found, b = key.partition(sep)
        if found and a and b:
            return a, b
    return None


def _finite_series(series: Any, where: str) -> list[float]:
    if not isinstance(series, list) or not series:
        raise unprocessable(f"{where} must be a non-empty list of numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in series):
        raise unprocessable(f"{where} must hold finite numbers only")
    return [float(v) for v in series]


def _checked_returns(returns: Any, limits: HubLimits) -> Any:
    if returns is None:
        return None
    if not isinstance(returns, dict):
        series = _finite_series(returns, "realized_returns")
        if len(series) > limits.returns_max_points_total:
            raise unprocessable(f"realized_returns series too long (at most {limits.returns_max_points_total} points)")
        return series
    if not returns:
        raise unprocessable("realized_returns must not be empty")
    checked = {str(k): _finite_series(v, f"realized_returns.{k}") for k, v in returns.items()}
    for key, series in checked.items():
        if len(series) > limits.returns_max_points_per_series:
            raise unprocessable(f"realized_returns series too long for {key!r} "
                                f"(at most {limits.returns_max_points_per_series} points)")
    if sum(map(len, checked.values())) > limits.returns_max_points_total:
        raise unprocessable(f"realized_returns total points exceed limit ({limits.returns_max_points_total})")
    return checked


def _checked_provenance(given: dict[str, Any] | None, actor: str, stage: str, limits: HubLimits) -> dict[str, Any]:
    """The headers' producer and stage in the provenance (a body naming others is refused), each allowed."""
    provenance = {**(given or {})}
    for key, value, allowed in (("actor", actor, limits.allowed_actors), ("stage", stage, limits.allowed_stages)):
        if value and str(provenance.setdefault(key, value)) != value:
            raise unprocessable(f"{key} mismatch between payload and header")
        if allowed is not None and str(provenance.get(key) or "") not in allowed:
            raise unprocessable(f"{key} {str(provenance.get(key) or '')!r} not allowed")
    return provenance


def _checked_created_at(text: str | None, now: datetime) -> str:
    if text is None:
        return iso_z(now)
    try:
        parse_iso(text)
    except ValueError:
        raise unprocessable(f"invalid created_at timestamp: {text}") from None
    refuse_future("created_at", text, now)  # a future stamp would stretch the snapshot's freshness
    return text


def validated(world_id: str, body: RiskSnapshotIn, actor: str, stage: str, now: datetime,
              limits: HubLimits) -> RiskSnapshot:
    """The snapshot as the hub accepts it (all parts inline, hashed), or 422 with the reason."""
    provenance = _checked_provenance(body.provenance, actor, stage, limits)
    snapshot = RiskSnapshot(
        world_id=world_id, as_of=_checked_as_of(body.as_of), version=body.version,
        weights=_checked_weights(body.weights), provenance=provenance,
        created_at=_checked_created_at(body.created_at, now), hash="", ttl_sec=_checked_ttl(body.ttl_sec, limits),
        covariance=_checked_covariance(body.covariance), covariance_ref=body.covariance_ref,
        realized_returns=_checked_returns(body.realized_returns, limits), realized_returns_ref=body.realized_returns_ref,
        stress=body.stress, stress_ref=body.stress_ref, constraints=body.constraints)
    if is_expired(snapshot, now):
        raise unprocessable(EXPIRED)
    return msgspec.structs.replace(snapshot, hash=content_hash(snapshot))


def revalidated(snapshot: RiskSnapshot, now: datetime, limits: HubLimits) -> RiskSnapshot:
    """A snapshot from the ControlBus (any producer's ``risk_snapshot_updated``) checked by the push's rules
    (422 reasons alike; its provenance is its own). Its hash is ours when every part travelled inline (what a
    push of the same content would get); with parts by reference it stays the producer's, computed before
    that producer offloaded them (this hub's own events)."""
    body = msgspec.convert(msgspec.to_builtins(snapshot), RiskSnapshotIn)
    checked = validated(snapshot.world_id, body, "", "", now, limits)
    by_reference = any(getattr(snapshot, f"{part}_ref") for part in _PARTS)
    return msgspec.structs.replace(checked, hash=snapshot.hash) if by_reference else checked


def offloaded(snapshot: RiskSnapshot, limits: HubLimits) -> tuple[RiskSnapshot, dict[str, Any]]:
    """The snapshot with its large parts replaced by blob references, and the blobs to store (by ref)."""
    blobs: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    for part in _PARTS:
        payload = getattr(snapshot, part)
        if payload is None or not _too_large(part, payload, limits):
            continue
        ref = blob_ref(payload)
        blobs[ref] = payload
        changes[part], changes[f"{part}_ref"] = None, ref
    return (msgspec.structs.replace(snapshot, **changes) if changes else snapshot), blobs


def _too_large(part: str, payload: Any, limits: HubLimits) -> bool:
    if part == "covariance" and len(payload) > limits.inline_cov_threshold:
        return True
    return len(canonical(payload)) > limits.inline_max_bytes


# --- the world's acceptance ------------------------------------------------------------------------


def stamp_of(snapshot: RiskSnapshot) -> RiskSnapshotStamp:
    return RiskSnapshotStamp(version=snapshot.version, created_at=snapshot.created_at, ttl_sec=snapshot.ttl_sec,
                             as_of=snapshot.as_of)


def _newer(snapshot: RiskSnapshot, current: RiskSnapshotStamp | None) -> bool:
    if current is None:
        return True
    return order_key(snapshot.as_of, snapshot.created_at) >= order_key(current.as_of, current.created_at)


def accept(state: WorldState, snapshot: RiskSnapshot, stored: RiskSnapshot | None, now: datetime,
           correlation_id: str | None) -> Outcome:
    """``stored``: the snapshot already stored under this version for the world (``None``: a new version);
    a duplicate is answered with it (its first ``created_at``), not with the copy just pushed."""
    require_world(state)
    if stored is not None:
        if stored.hash != snapshot.hash:
            raise conflict(f"snapshot version collision for world_id={state.world_id} version={snapshot.version}")
        return Outcome(state=state, effects=[], reply=SnapshotAccepted(snapshot=stored, deduped=True))
    effects: list[Effect] = [
        SaveRiskSnapshot(snapshot=snapshot),
        AuditRecord(event="risk_snapshot_accepted", request=None,
                    result={"version": snapshot.version, "hash": snapshot.hash, "as_of": snapshot.as_of,
                            "stage": snapshot.stage, "ttl_sec": snapshot.ttl_sec}),
        snapshot_event(snapshot, now, correlation_id)]
    latest = stamp_of(snapshot) if _newer(snapshot, state.risk_snapshot) else state.risk_snapshot
    return Outcome(state=msgspec.structs.replace(state, risk_snapshot=latest), effects=effects,
                   reply=SnapshotAccepted(snapshot=snapshot, deduped=False))


def snapshot_event(snapshot: RiskSnapshot, now: datetime, correlation_id: str | None) -> Effect:
    """The reference's event: the snapshot (large parts by reference) plus ``event_version`` 1."""
    data = {**msgspec.to_builtins(snapshot), "event_version": 1}
    key = f"{EVENT_TYPE}:{snapshot.world_id}:{snapshot.hash}:1"  # the reference's key (the hash covers the version)
    return cloudevent(RISK_TOPIC, EVENT_TYPE, snapshot.world_id, data, key,
                      correlation_id or f"risk_snapshot:{snapshot.world_id}:{snapshot.hash}", now)
