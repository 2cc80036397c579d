"""A restart on a schema already at head skips Alembic (its import and script loading) altogether."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from storage import migrate

ROOT = Path(__file__).resolve().parent.parent


def test_the_cheap_head_is_alembics_head() -> None:
    assert migrate.files_head() == migrate.head_revision() is not None


def test_a_start_at_head_never_imports_alembic(tmp_path: Path) -> None:
    script = ("import sys\n"
              "from storage import migrate\n"
              "from storage.engine import create_engine\n"
              f"engine = create_engine('sqlite:///{tmp_path}/ws.db')\n"
              "migrate.upgrade(engine)\n"
              "print(migrate.is_current(engine), 'alembic' in sys.modules)\n")
    first = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    again = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["True", "True"]  # created: Alembic ran
    assert again.stdout.split() == ["True", "False"]  # at head: one SELECT, no Alembic


# What a start on the embedded default must not import: each costs tens of milliseconds of start-up and
# is needed only when its setting is on (Redis URL, Kafka brokers, an executor URL, JWT auth) or at the
# first extended validation (numpy).
ONLY_WHEN_CONFIGURED = ("redis", "aiokafka", "httpx", "jwt", "numpy")


def _loaded_after_start(tmp_path: Path, settings: str) -> list[str]:
    script = ("import sys\n"
              "import daemon\n"
              "from config import load_config\n"
              "from transport.http import Edge, RebalanceFlags, create_app\n"
              f"config = load_config(None, overrides={{'worldservice': {{'data_dir': {str(tmp_path)!r}{settings}}}}})\n"
              "runtime = daemon.build_runtime(config)\n"
              "create_app(Edge(system=runtime.system), config.server.auth, RebalanceFlags(False, False))\n"
              "runtime.system.verify_projection()\n"
              "runtime.close()\n"
              f"print(' '.join(m for m in {ONLY_WHEN_CONFIGURED!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_the_embedded_default_starts_without_the_optional_clients(tmp_path: Path) -> None:
    assert _loaded_after_start(tmp_path, "") == []


def test_a_configured_redis_is_imported_at_start(tmp_path: Path) -> None:
    from tests import services

    prefix = f"test-startup-{uuid.uuid4().hex}:"  # the shared Redis: keys of this test's own
    loaded = _loaded_after_start(tmp_path, f", 'server': {{'redis': {services.REDIS_URL!r}, 'redis_prefix': {prefix!r}}}")
    import redis

    with redis.Redis.from_url(services.REDIS_URL) as client:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
    assert loaded == ["redis"]
