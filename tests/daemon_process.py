"""The WorldService daemon as a real child process, for tests that need to kill it (``kill -9``).

``DaemonProcess`` starts ``python -m daemon serve --data-dir DIR --port PORT`` (dev profile: SQLite file in
DIR, in-memory activation projection), waits until ``/readyz`` answers 200, and can SIGKILL it and start it
again on the same data directory. The child's stdout and stderr go to a log file (never a pipe that could
fill up and stall it); the file's tail is quoted in every startup failure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Self

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


class DaemonStartError(RuntimeError):
    """The daemon exited or did not become ready in time; the message carries its log's tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the daemon binds it itself, so there is a small race;
    ``DaemonProcess.start`` retries on a fresh port when the bind fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _child_env() -> dict[str, str]:
    """The caller's environment without ``WORLDSERVICE__*`` settings, so a developer's shell (say a
    PostgreSQL DSN or a Redis URL) cannot change what the test runs against."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORLDSERVICE__")}
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the file before a SIGKILL
    return env


class DaemonProcess:
    """One daemon on one data directory; ``start``/``kill``/``restart``/``stop``. Use as a context manager
    so the child is always reaped and the log file closed."""

    def __init__(self, data_dir: Path, log_path: Path, *, host: str = "127.0.0.1",
                 startup_timeout_s: float = STARTUP_TIMEOUT_S, env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.env = dict(env or {})  # applied on top of the cleaned environment; may change between starts
        self.log_path = Path(log_path)
        self.host = host
        self.port: int | None = None
        self.startup_timeout_s = startup_timeout_s
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("daemon not started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("daemon not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start on the previous port when there is one (so clients keep their URL), else a free one;
        when the bind fails (the port was taken meanwhile) try again on a fresh port."""
        if self._proc is not None:
            raise RuntimeError("daemon already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = self.port or free_port(self.host)
        for attempt in range(3):
            self._spawn(port)
            try:
                self._wait_ready()
                self.port = port
                self.starts += 1
                return
            except DaemonStartError as exc:
                exited = self._proc is not None and self._proc.poll() is not None
                self._reap()
                if not (exited and "address already in use" in str(exc).lower()) or attempt == 2:
                    raise
                port = free_port(self.host)

    def kill(self) -> None:
        """``kill -9``: no drain, no shutdown hooks; then reap the child and close its log file."""
        if self._proc is None:
            raise RuntimeError("daemon not running")
        if self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
        self._reap()

    def restart(self) -> None:
        """Start again on the same data directory (killing the current process first if it runs)."""
        if self._proc is not None:
            self.kill()
        self.start()

    def stop(self) -> None:
        """Graceful stop (SIGTERM, the daemon drains); SIGKILL if it does not exit in time. Idempotent."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._reap()

    def send_signal(self, sig: int) -> None:
        """Deliver ``sig`` (say SIGTERM) to the running child and return at once; ``wait`` reaps it."""
        if self._proc is None:
            raise RuntimeError("daemon not running")
        self._proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the child to exit by itself, then reap it and close its log file; its exit code
        (negative: killed by that signal). ``subprocess.TimeoutExpired`` when it is still running after
        ``timeout`` seconds; the child is left running (``stop``/``kill``/``__exit__`` end it)."""
        if self._proc is None:
            raise RuntimeError("daemon not running")
        code = self._proc.wait(timeout=timeout)
        self._reap()
        return code

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "<no log>"
        return text[-max_chars:]

    # --- internals -------------------------------------------------------------------------------

    def _spawn(self, port: int) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap
        self._log.write(f"--- start #{self.starts + 1} on port {port} ---\n".encode())
        self._log.flush()
        command = [sys.executable, "-m", "daemon", "serve", "--data-dir", str(self.data_dir),
                   "--host", self.host, "--port", str(port)]
        self._proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env={**_child_env(), **self.env}, stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT)
        self.port = port

    def _wait_ready(self) -> None:
        """Poll ``/readyz`` until it answers 200; bounded by ``startup_timeout_s``; fails early when the
        child exits."""
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        last_error = "no answer yet"
        with httpx.Client(base_url=self.url, timeout=1.0) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise DaemonStartError(f"daemon exited with code {code} during startup; log tail:\n"
                                           f"{self.log_tail()}")
                try:
                    response = client.get("/readyz")
                    if response.status_code == 200:
                        return
                    last_error = f"/readyz answered {response.status_code}"
                except httpx.TransportError as exc:
                    last_error = repr(exc)
                if time.monotonic() >= deadline:
                    self._proc.kill()
                    raise DaemonStartError(f"daemon not ready after {self.startup_timeout_s:.0f} s "
                                           f"({last_error}); log tail:\n{self.log_tail()}")
                time.sleep(0.05)

    def _reap(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
