"""systemd integration: READY after recovery, WATCHDOG while the critical actors answer, STOPPING on
SIGTERM. Without ``NOTIFY_SOCKET`` (not under systemd) every call is a no-op."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import sdnotify
import structlog

log = structlog.get_logger("worldservice.systemd")


class Systemd:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None

    def notify(self, state: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(state)

    def watchdog_interval_s(self) -> float | None:
        """Half of systemd's ``WatchdogSec`` (``WATCHDOG_USEC``), as sd_watchdog_enabled advises."""
        usec = os.environ.get("WATCHDOG_USEC", "")
        if not (self.enabled and usec.isdigit() and int(usec) > 0):
            return None
        pid = os.environ.get("WATCHDOG_PID", "")
        if pid.isdigit() and int(pid) != os.getpid():
            return None
        return int(usec) / 2_000_000

    async def watchdog(self, alive: Callable[[float], bool]) -> None:
        """Pet the watchdog only after a round trip through the actors: a wedged actor stops the pets,
        and systemd restarts the daemon."""
        interval = self.watchdog_interval_s()
        if interval is None:
            return
        while True:
            if await asyncio.to_thread(alive, interval):
                self.notify("WATCHDOG=1")
            else:
                log.error("watchdog_round_trip_failed")
            await asyncio.sleep(interval)
