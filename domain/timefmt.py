"""Timestamps on the wire: ISO-8601 UTC with second precision and a ``Z`` suffix, as the reference."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from messages.errors import unprocessable

# Seed §6 Clock Discipline: how far ahead of the server's clock a client's timestamp may be. Anything later
# is a client clock out of discipline (or a look-ahead), never evidence to act on.
MAX_CLIENT_SKEW = timedelta(seconds=2)


def iso_z(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp; a naive one is taken as UTC. Raises ValueError when malformed."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def refuse_future(name: str, text: str | None, now: datetime) -> None:
    """422 when the timestamp ``text`` is later than ``now`` plus the tolerated client skew. Unparsable or
    absent timestamps pass: the caller's own check names those."""
    if text is None:
        return
    try:
        moment = parse_iso(text)
    except ValueError:
        return
    ahead = (moment - now).total_seconds()
    if ahead > MAX_CLIENT_SKEW.total_seconds():
        raise unprocessable(f"{name} is {ahead:.3f}s ahead of the server clock; at most "
                            f"{MAX_CLIENT_SKEW.total_seconds():g}s of client clock skew is tolerated")
