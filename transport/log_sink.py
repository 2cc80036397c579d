"""The daemon's log output: one JSON object per line, written by a thread of its own.

Whoever logs (a world actor answering a command, say) only stamps the time and queues the event: a
microsecond or two instead of rendering JSON and writing to stdout on the command's path. The writer
thread renders what is queued and writes it in one write and flush per wake-up. Libraries' stdlib
logging (uvicorn, alembic) goes through the same queue (``logging.handlers.QueueHandler``), so one thread
owns the stream and lines never interleave. ``stop`` (at the end of ``main`` and at interpreter exit)
writes everything still queued: a clean shutdown, SIGTERM's included, loses no line. A SIGKILL loses at
most what was queued in that instant.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

_STOP = object()


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


class LogSink:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
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


    def _run(self) -> None:
        while True:
            items = [self._queue.get(), *_drain(self._queue)]
            self._write([item for item in items if item is not _STOP])
            if any(item is _STOP for item in items):
                return

    def _write(self, items: list[Any]) -> None:
        lines = "".join(self._line(item) for item in items)
        if not lines:
            return
        with self._write_lock:
            try:
                self._stream.write(lines)
                self._stream.flush()
            except (OSError, ValueError):  # stdout closed or gone: nothing better to do with a log line
                pass

    def _line(self, item: Any) -> str:
        if isinstance(item, logging.LogRecord):
            return f"{item.getMessage()}\n"
        stamp = item.get("timestamp")
        if isinstance(stamp, float):
            item["timestamp"] = datetime.fromtimestamp(stamp, timezone.utc).isoformat().replace("+00:00", "Z")
        return f"{self._render(None, '', item)}\n"


def _drain(q: queue.SimpleQueue[Any]) -> list[Any]:
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items
