"""CloudEvents 1.0 envelopes for the ControlBus, built deterministically from their idempotency key."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from domain.effects import OutboxEvent

SOURCE = "worldservice"
_EVENT_NAMESPACE = uuid.UUID("6f0b4c8e-2b1a-4f7e-9a53-2d7c1e0f5a10")


def cloudevent(topic: str, event_type: str, world_id: str, data: dict[str, Any], idempotency_key: str,
               correlation_id: str, now: datetime) -> OutboxEvent:
    """The event id is derived from the idempotency key, so a re-sent event is recognisably the same."""
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid5(_EVENT_NAMESPACE, idempotency_key)),
        "source": SOURCE,
        "type": event_type,
        "time": now.astimezone(timezone.utc).isoformat(),
        "datacontenttype": "application/json",
        "data": {**data, "idempotency_key": idempotency_key},
        "correlation_id": correlation_id,
    }
    return OutboxEvent(topic=topic, key=world_id, cloudevent=envelope)
