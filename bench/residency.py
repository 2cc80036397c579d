"""Memory with many worlds: RSS of the daemon's actor system with N registered worlds of which M stay
resident (the Directory passivates the rest), on SQLite or PostgreSQL.

    uv run python bench/residency.py                          # 10,000 worlds, 5,000 resident, SQLite
    uv run python bench/residency.py --worlds 2000 --resident 1000
    uv run python bench/residency.py --dsn postgresql+psycopg://postgres@127.0.0.1:5432/test

Each world is created with one policy, 10 bindings and 10 activation entries, through the actor system
itself (no HTTP, so the numbers are the actors' and their state's, not the web stack's). Prints RSS before
seeding, after seeding (only the residency cap's worlds resident), and per resident world. Not a timed
test: it prints numbers.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

import pykka

from actors.bridge import Request
from daemon import build_runtime
from messages.commands import external_command_decoder
from config import load_config

STRATEGIES = [f"s{i}" for i in range(10)]
POLICY = {"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.5}}}


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _command(kind: str, world_id: str, **fields: Any) -> Any:
    import msgspec
    return external_command_decoder.decode(msgspec.json.encode({"kind": kind, "world_id": world_id, **fields}))


def _send(system: Any, command: Any) -> pykka.ThreadingFuture:
    answer: pykka.ThreadingFuture = pykka.ThreadingFuture()
    system.send(Request(command=command, reply=answer.set))
    return answer


def _world_commands(world_id: str) -> list[Any]:
    commands = [_command("create_world", world_id, body={"id": world_id}),
                _command("add_policy", world_id, body={"policy": POLICY}),
                _command("add_bindings", world_id, body={"strategies": STRATEGIES})]
    commands += [_command("put_activation", world_id, body={"strategy_id": sid, "side": "long", "active": True,
                                                            "weight": 0.1}) for sid in STRATEGIES]
    return commands


def seed(system: Any, n_worlds: int, window: int = 64) -> None:
    """Every world's commands in order, ``window`` worlds in flight at once."""
    worlds = [f"w{i:05d}" for i in range(n_worlds)]
    for start in range(0, n_worlds, window):
        batch = worlds[start:start + window]
        pending = {w: _world_commands(w) for w in batch}
        while pending:
            answers = [(_send(system, cmds.pop(0)), w) for w, cmds in pending.items()]
            for answer, world_id in answers:
                reply = answer.get(timeout=60)
                if reply.status >= 400:
                    raise SystemExit(f"seeding {world_id} failed: {reply.status} {reply.body}")
            pending = {w: cmds for w, cmds in pending.items() if cmds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worlds", type=int, default=10_000)
    p.add_argument("--resident", type=int, default=5_000)
    p.add_argument("--dsn", help="SQL DSN (default: SQLite in a temp dir)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        ws = {"data_dir": data_dir, "server": {"dsn": args.dsn},
              "actors": {"max_resident_worlds": args.resident, "sweep_interval_s": 3600}}
        runtime = build_runtime(load_config(environ={}, overrides={"worldservice": ws}))
        try:
            gc.collect()
            before = rss_mib()
            started = time.perf_counter()
            seed(runtime.system, args.worlds)
            seconds = time.perf_counter() - started
            runtime.system.sweep()
            gc.collect()
            after = rss_mib()
            resident = len(runtime.system.resident_worlds())
        finally:
            runtime.close()
    backend = "PostgreSQL" if args.dsn and args.dsn.startswith("postgres") else "SQLite"
    print(f"backend {backend}: {args.worlds} worlds seeded in {seconds:.1f} s "
          f"({args.worlds * (3 + len(STRATEGIES)) / seconds:.0f} commands/s)")
    print(f"RSS before seeding {before:.1f} MiB, after {after:.1f} MiB with {resident} resident worlds "
          f"({(after - before) * 1024 / max(resident, 1):.1f} KiB per resident world)")


if __name__ == "__main__":
    main()
