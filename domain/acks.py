"""Which Gateway ACKs a run takes, and what is irregular about the others.

Pure: the verdict names a bounded reason and the world actor (or the ACK intake, for the reasons it sees
first) counts and logs it. Nothing here decides an apply's outcome: a run completes on the set of its
acknowledged events, whatever order they came in.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from domain.state import Outcome
from messages.apply import ApplyRun
from messages.commands import AckActivation

AckAnomaly = Literal["invalid", "duplicate", "unknown_run", "run_finished", "unknown_sequence", "out_of_order"]
# Every label value the anomaly counter can take (so dashboards see each at 0 from the start).
ACK_ANOMALIES: tuple[AckAnomaly, ...] = ("invalid", "duplicate", "unknown_run", "run_finished", "unknown_sequence",
                                         "out_of_order")


class AckVerdict(NamedTuple):
    event_index: int | None  # the run event to mark acknowledged; None: the ACK changes nothing
    anomaly: AckAnomaly | None  # why it is noted: refused, or (out_of_order) taken but early


def ack_verdict(run: ApplyRun | None, ack: AckActivation) -> AckVerdict:
    if run is None:
        return AckVerdict(None, "unknown_run")
    if not run.is_open:
        return AckVerdict(None, "run_finished")
    index = _event_index(run, ack)
    if index is None:
        return AckVerdict(None, "unknown_sequence")
    if run.events[index].acked:
        return AckVerdict(None, "duplicate")
    return AckVerdict(index, "out_of_order" if _overtakes(run, ack) else None)


def _event_index(run: ApplyRun, ack: AckActivation) -> int | None:
    return next((i for i, e in enumerate(run.events) if e.sequence == ack.sequence and e.phase == ack.phase), None)


def _overtakes(run: ApplyRun, ack: AckActivation) -> bool:
    """A lower sequence of the same phase is still unacknowledged: taken, since the run completes on the
    set of ACKs, but a Gateway that acknowledges out of order may also apply out of order."""
    return any(e.phase == ack.phase and e.sequence < ack.sequence and not e.acked for e in run.events)


class AckRecorded(NamedTuple):
    outcome: Outcome | None  # None: nothing changes (see ``anomaly``)
    anomaly: AckAnomaly | None
