"""A restart on a schema already at head skips Alembic (its import and script loading) altogether."""

from __future__ import annotations

import subprocess
import sys
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
