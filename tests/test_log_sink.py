"""Log lines leave the command path through the sink's thread: still one whole JSON object per line, none
lost when the process ends cleanly."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading

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
