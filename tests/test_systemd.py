"""sd_notify: READY after recovery, WATCHDOG while the actors answer, STOPPING on SIGTERM, in that order."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.daemon_process import DaemonProcess


def _messages(sock: socket.socket, until: str, limit: int = 200) -> list[str]:
    seen: list[str] = []
    while until not in seen and len(seen) < limit:
        seen.append(sock.recv(4096).decode())  # the socket's timeout bounds each wait
    return seen


def test_notify_ready_then_watchdog_then_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(20)
        env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}
        with DaemonProcess(tmp_path / "d", tmp_path / "d.log", env=env) as daemon:
            daemon.start()
            first = _messages(sock, "WATCHDOG=1")
            assert first[0] == "READY=1" and first[-1] == "WATCHDOG=1", daemon.log_tail()
            daemon.send_signal(signal.SIGTERM)
            rest = _messages(sock, "STOPPING=1")
            assert set(rest) <= {"WATCHDOG=1", "STOPPING=1"} and rest[-1] == "STOPPING=1"
            assert daemon.wait(timeout=30) == 0
