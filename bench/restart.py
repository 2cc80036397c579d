"""Time to healthy over repeated restarts: spawn ``python -m daemon serve`` and poll ``/healthz`` until it
answers 200, then SIGTERM it and start again on the same data directory.

    uv run python bench/restart.py                      # 10 restarts each, SQLite, in-memory projection
    uv run python bench/restart.py --redis redis://127.0.0.1:6379/0 --restarts 5

Two modes, each with a bytecode cache of its own (``PYTHONPYCACHEPREFIX``, a temporary directory, so the
venv is never written): ``source`` sets ``PYTHONDONTWRITEBYTECODE=1`` as this machine does, so every start
compiles every module it imports; ``bytecode`` lets the first (unmeasured) start write the cache and the
measured starts read it, as an install compiled at install time does. The first start of the data
directory (which creates the schema) is never measured. Prints median and worst per mode.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(cache: Path, write_bytecode: bool, redis_url: str | None, dsn: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORLDSERVICE__")}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    if redis_url:
        env["WORLDSERVICE__SERVER__REDIS"] = redis_url
    if dsn:
        env["WORLDSERVICE__SERVER__DSN"] = dsn
    return env


def time_to_healthy(data_dir: Path, env: dict[str, str], timeout_s: float = 60.0) -> float:
    """Seconds from spawn to the first 200 of ``/healthz``; the daemon is stopped (SIGTERM) afterwards."""
    port = _free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "serve", "--data-dir", str(data_dir), "--port", str(port)],
                            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=1.0) as client:
            while time.perf_counter() - started < timeout_s:
                if proc.poll() is not None:
                    raise RuntimeError(f"daemon exited with {proc.returncode}")
                try:
                    if client.get("/healthz").status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.005)
        raise RuntimeError("daemon not healthy in time")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_mode(name: str, restarts: int, redis_url: str | None, dsn: str | None) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="ws-restart-") as tmp:
        cache, data = Path(tmp) / "pycache", Path(tmp) / "data"
        env = _env(cache, name == "bytecode", redis_url, dsn)
        time_to_healthy(data, env)  # creates the schema (and, in bytecode mode, the cache): not measured
        return [time_to_healthy(data, env) for _ in range(restarts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--redis", help="activation projection in this Redis (default: in memory)")
    parser.add_argument("--dsn", help="SQL database (default: SQLite under a temporary data dir)")
    parser.add_argument("--modes", default="source,bytecode")
    args = parser.parse_args()
    print(f"restarts={args.restarts} redis={args.redis or 'memory'} dsn={args.dsn or 'sqlite'}")
    print(f"{'mode':<10} {'median s':>9} {'worst s':>8} {'best s':>7}")
    for mode in args.modes.split(","):
        times = run_mode(mode, args.restarts, args.redis, args.dsn)
        print(f"{mode:<10} {statistics.median(times):>9.3f} {max(times):>8.3f} {min(times):>7.3f}", flush=True)


if __name__ == "__main__":
    main()
