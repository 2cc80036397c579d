"""Named crash and fault points for the crash tests.

``WORLDSERVICE_CRASH_AT=apply.after_freeze`` makes the process kill itself (SIGKILL, no cleanup) when it
reaches that point; ``WORLDSERVICE_FAIL_AT=apply.switch`` raises there instead, so a test can watch the
rollback path. Both take comma-separated names. Unset (production) they cost one set lookup.
"""

from __future__ import annotations

import os
import signal


class InjectedFault(RuntimeError):
    """A failure raised on purpose at a named fault point."""


def _names(variable: str) -> set[str]:
    return {n.strip() for n in os.environ.get(variable, "").split(",") if n.strip()}


_crash_at = _names("WORLDSERVICE_CRASH_AT")
_fail_at = _names("WORLDSERVICE_FAIL_AT")


def crash_point(name: str) -> None:
    if name in _crash_at:
        os.kill(os.getpid(), signal.SIGKILL)


def fault_point(name: str) -> None:
    if name in _fail_at:
        raise InjectedFault(f"injected fault at {name}")


def fail_at(*names: str) -> None:
    """In-process tests arm fault points directly (and disarm them with no names)."""
    _fail_at.clear()
    _fail_at.update(names)
