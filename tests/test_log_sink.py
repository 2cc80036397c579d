"""Log lines leave the command path through the sink's thread: still one whole JSON object per line, none
lost when the process ends cleanly."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import structlog

from transport.log_sink import LogSink, stamp_time, to_queue


def test_lines_from_many_threads_are_whole_and_none_is_lost_at_stop() -> None:
    stream = io.StringIO()
    sink = LogSink(stream).start()
    log = structlog.wrap_logger(sink.logger_factory(), processors=[
        structlog.processors.add_log_level, stamp_time, structlog.processors.format_exc_info, to_queue])

    def write(thread: int) -> None:
        bound = log.bind(world_id=f"w{thread}", kind="PutActivation")
        for n in range(500):
            bound.info("command", status=200, n=n)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logging.getLogger("lib").addHandler(handler := sink.stdlib_handler(logging.Formatter("%(message)s")))
    try:
        logging.getLogger("lib").warning(json.dumps({"event": "from_a_library"}))
    finally:
        logging.getLogger("lib").removeHandler(handler)
    sink.stop()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    commands = [r for r in records if r["event"] == "command"]
    assert len(commands) == 2000 and records[-1] == {"event": "from_a_library"}
    for t in range(4):  # each thread's lines in the order it logged them
        assert [r["n"] for r in commands if r["world_id"] == f"w{t}"] == list(range(500))
    assert commands[0]["level"] == "info" and commands[0]["timestamp"].endswith("Z")
    log.info("after_stop")  # an actor still stopping: written at once
    assert json.loads(stream.getvalue().splitlines()[-1])["event"] == "after_stop"


def test_a_process_that_exits_writes_every_queued_line() -> None:
    script = ("import structlog, daemon\n"
              "daemon.configure_logging('info')\n"
              "log = structlog.get_logger('t')\n"
              "for n in range(3000):\n"
              "    log.info('command', n=n)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert [json.loads(line)["n"] for line in out.stdout.splitlines()] == list(range(3000))


def _logger(sink: LogSink) -> structlog.typing.FilteringBoundLogger:
    return structlog.wrap_logger(sink.logger_factory(), processors=[
        structlog.processors.add_log_level, stamp_time, to_queue])


def test_repeated_errors_are_one_line_per_interval_then_a_count() -> None:
    stream = io.StringIO()
    sink = LogSink(stream, repeat_interval_s=0.2).start()
    log = _logger(sink)
    for n in range(2000):  # a Redis outage: one failed projection write per command
        log.error("activation_projection_write_failed", n=n)
        log.info("command", n=n)  # info lines are never held back
    deadline = time.monotonic() + 10
    while "suppressed" not in stream.getvalue():  # the interval ends without another error: still counted
        assert time.monotonic() < deadline, stream.getvalue()[-500:]
        time.sleep(0.01)
    log.error("activation_projection_write_failed", n=2000)  # a new interval: written at once
    sink.stop()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    errors = [r for r in records if r["event"] == "activation_projection_write_failed"]
    assert sum(r["event"] == "command" for r in records) == 2000
    assert [(r["n"], r.get("suppressed")) for r in errors] == [(0, None), (1999, 1999), (2000, None)]


def test_a_killed_process_never_leaves_half_a_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Lines that a buffered stream would cut (several per 8 KiB buffer), a SIGKILL at a random moment,
    three times into the same file: every line in it is a whole JSON object (the next start's lines never
    glue onto a cut one). Lines stay under a page: the kernel may cut a longer write(2) at a page boundary
    when SIGKILL lands in it."""
    script = ("import structlog, daemon, sys\n"
              "daemon.configure_logging('info')\n"
              "log = structlog.get_logger('t')\n"
              "print('started', file=sys.stderr, flush=True)\n"
              "n = 0\n"
              "while True:\n"
              "    log.info('command', n=n, pad='x' * 3000)\n"
              "    n += 1\n")
    out = tmp_path / "out.log"
    for _ in range(3):
        with open(out, "ab") as sink:
            proc = subprocess.Popen([sys.executable, "-c", script], stdout=sink, stderr=subprocess.PIPE)
            assert proc.stderr is not None and proc.stderr.readline() == b"started\n"
            deadline = time.monotonic() + 20
            while out.stat().st_size < 2_000_000:  # well into a stream of long lines
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b""  # the file ends with a newline
    assert all(json.loads(line)["pad"] == "x" * 3000 for line in lines[:-1])
