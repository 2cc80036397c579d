"""Running ``worldservice world …`` in tests: in-process (fast, output captured) or as a child process
(for Ctrl-C and for reading its output while it runs)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass

import pytest

from cli.main import run
from tests.daemon_process import PROJECT_ROOT


@dataclass
class Result:
    code: int
    out: str
    err: str


class Cli:
    """``cli("list", "-o", "json")`` against one daemon URL; the captured output of that call only."""

    def __init__(self, capsys: pytest.CaptureFixture[str], url: str, *globals_: str) -> None:
        self.capsys, self.url, self.globals = capsys, url, globals_

    def __call__(self, *args: str) -> Result:
        self.capsys.readouterr()
        code = run(["--url", self.url, *self.globals, *args])
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORLDSERVICE")}
    return {**env, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


class ChildCli:
    """``worldservice world ARGS`` as a process whose stdout is read line by line while it runs."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "daemon", "world", *args], cwd=PROJECT_ROOT,
                                     env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._ended = False  # the pump's end marker was taken off the queue
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self._queue.put(line)
        self._queue.put(None)

    def wait_for_line(self, needle: str, timeout_s: float = 30.0) -> str:
        """The first line (from now on) that contains ``needle``; fails when the output ends first."""
        while True:
            line = self._queue.get(timeout=timeout_s)
            if line is None:
                self._ended = True
                raise AssertionError(f"output ended without {needle!r}: {''.join(self.lines)}")
            self.lines.append(line)
            if needle in line:
                return line

    def finish(self, timeout_s: float = 60.0) -> Result:
        code = self.proc.wait(timeout=timeout_s)
        while not self._ended and (line := self._queue.get(timeout=timeout_s)) is not None:
            self.lines.append(line)
        self._ended = True
        assert self.proc.stderr is not None
        with self.proc.stderr:
            return Result(code, "".join(self.lines), self.proc.stderr.read())

    def kill(self) -> None:
        """Reap the child however the test went (a no-op after ``finish``)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        while not self._ended and self._queue.get(timeout=30) is not None:
            pass
        self._ended = True
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.proc.stderr.close()
