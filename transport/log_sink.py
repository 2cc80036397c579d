"""The daemon's log output: one JSON object per line, written by a thread of its own.

Whoever logs (a world actor answering a command, say) only stamps the time and queues the event: a
microsecond or two instead of rendering JSON and writing to stdout on the command's path. The writer
thread renders what is queued and writes it in one write and flush per wake-up. Libraries' stdlib
logging (uvicorn, alembic) goes through the same queue (``logging.handlers.QueueHandler``), so one thread
owns the stream and lines never interleave. ``stop`` (at the end of ``main`` and at interpreter exit)
writes everything still queued: a clean shutdown, SIGTERM's included, loses no line. A SIGKILL loses at
most what was queued in that instant.

Every line is written whole: one ``write(2)`` per line, newline included, straight to the file descriptor
(a buffered stream would split a long batch at its buffer size, and a kill between two of those writes
left half a line glued to the next start's first one). Repeated warnings and errors are rate-limited on
the writer thread: per ``(level, event)`` the first line of each ``repeat_interval_s`` is written, the
rest are counted, and when the interval is over one line with ``suppressed=N`` says how many were not.
"""

from __future__ import annotations

import atexit
import logging
import os
import logging.handlers
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

_STOP = object()
_LIMITED_LEVELS = frozenset({"warning", "error", "critical", "exception"})
REPEAT_INTERVAL_S = 10.0


def stamp_time(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The moment of the event, as a float: turned into ISO 8601 by the writer thread."""
    event_dict["timestamp"] = time.time()
    return event_dict


def to_queue(_: WrappedLogger, __: str, event_dict: EventDict) -> tuple[tuple[EventDict], dict[str, Any]]:
    """The last processor: the event dict itself goes to the sink, rendered later."""
    return (event_dict,), {}


class _QueuedLogger:
    """What structlog's bound loggers call: every level just queues the event."""

    def __init__(self, sink: LogSink) -> None:
        self._put = sink.put

    def msg(self, event_dict: EventDict) -> None:
        self._put(event_dict)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _Repeats:
    """Per ``(level, event)``: when its interval opened and how many lines were held back since. Used by
    the writer thread only (no lock)."""

    def __init__(self, interval_s: float, clock: Any = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._open: dict[tuple[str, str], list[Any]] = {}  # key -> [opened_at, suppressed, last event]

    def admit(self, item: EventDict) -> bool:
        level = str(item.get("level", ""))
        if level not in _LIMITED_LEVELS:
            return True
        key = (level, str(item.get("event", "")))
        window = self._open.get(key)
        if window is None:
            self._open[key] = [self._clock(), 0, item]
            return True
        window[1] += 1
        window[2] = item
        return False

    def expired(self, final: bool = False) -> list[EventDict]:
        """Summary lines of the intervals that are over (all of them when ``final``): the last held-back
        event with ``suppressed`` (how many were not written); a quiet interval just closes."""
        now, lines = self._clock(), []
        for key, (opened, suppressed, last) in list(self._open.items()):
            if final or now - opened >= self.interval_s:
                del self._open[key]
                if suppressed:
                    lines.append({**last, "suppressed": suppressed})
        return lines

    def next_deadline_s(self) -> float | None:
        if not self._open:
            return None
        return max(0.0, min(opened for opened, _, _ in self._open.values()) + self.interval_s - self._clock())


class LogSink:
    def __init__(self, stream: TextIO, repeat_interval_s: float = REPEAT_INTERVAL_S) -> None:
        self._stream = stream
        self._repeats = _Repeats(repeat_interval_s)
        self._fd = _fileno(stream)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._render = structlog.processors.JSONRenderer()
        self._write_lock = threading.Lock()  # the writer thread, and direct writes once stopped
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)

    def start(self) -> LogSink:
        self._thread.start()
        atexit.register(self.stop)
        return self

    def logger_factory(self, *_: Any) -> _QueuedLogger:
        return _QueuedLogger(self)

    def stdlib_handler(self, formatter: logging.Formatter) -> logging.Handler:
        """Records are formatted where they are logged (rare: libraries' lines), written by the thread."""
        handler = logging.handlers.QueueHandler(self._queue)  # type: ignore[arg-type]
        handler.setFormatter(formatter)
        return handler

    def put(self, item: Any) -> None:
        if self._stopped:  # late lines (an actor still stopping) are written at once
            self._write([item])
        else:
            self._queue.put(item)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write everything queued, then write any later line directly."""
        if self._stopped:
            return
        self._stopped = True
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._write(_drain(self._queue))  # whatever was put while ``_stopped`` was being set
        self._write(self._repeats.expired(final=True))

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._repeats.next_deadline_s())
            except queue.Empty:  # an interval with held-back lines is over: say how many
                self._write(self._repeats.expired())
                continue
            items = [first, *_drain(self._queue)]
            self._write([item for item in items if item is not _STOP and self._admit(item)])
            self._write(self._repeats.expired())
            if any(item is _STOP for item in items):
                return

    def _admit(self, item: Any) -> bool:
        return isinstance(item, logging.LogRecord) or self._repeats.admit(item)

    def _write(self, items: list[Any]) -> None:
        if not items:
            return
        lines = [self._line(item) for item in items]
        with self._write_lock:
            try:
                if self._fd is None:  # a stream without a descriptor (tests): whole strings all the same
                    for line in lines:
                        self._stream.write(line)
                    self._stream.flush()
                    return
                for line in lines:
                    _write_whole(self._fd, line.encode())
            except (OSError, ValueError):  # stdout closed or gone: nothing better to do with a log line
                pass

    def _line(self, item: Any) -> str:
        if isinstance(item, logging.LogRecord):
            return f"{item.getMessage()}\n"
        stamp = item.get("timestamp")
        if isinstance(stamp, float):
            item["timestamp"] = datetime.fromtimestamp(stamp, timezone.utc).isoformat().replace("+00:00", "Z")
        return f"{self._render(None, '', item)}\n"


def _fileno(stream: TextIO) -> int | None:
    try:
        stream.flush()  # whatever the stream buffered goes before our direct writes
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _write_whole(fd: int, data: bytes) -> None:
    """One ``write(2)`` for the line; a short write (a full pipe, a signal) carries on with the rest, so
    the line still ends with its own newline before the next one starts."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _drain(q: queue.SimpleQueue[Any]) -> list[Any]:
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items
