"""Schema migrations (Alembic), driven programmatically so no alembic.ini has to be found on disk.

Alembic is imported only when a migration has to run: a start on a schema already at head checks the
revision with one SELECT against the versions' files (``revision = "…"`` lines), which saves Alembic's
import and script loading (a few hundred ms) on every restart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION = re.compile(r'^(down_revision|revision)\s*=\s*["\']?([\w]+)["\']?', re.MULTILINE)


def files_head() -> str | None:
    """The one revision no version file names as its ``down_revision``, read from the files alone."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for key, value in _REVISION.findall(path.read_text()):
            (revisions if key == "revision" else parents).add(value)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def stored_revision(engine: sa.Engine) -> str | None:
    """``alembic_version`` read with plain SQL; ``None`` when the table does not exist yet."""
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.DBAPIError:
        return None


def _config(connection: sa.Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    if revision == "head" and is_current(engine):
        return  # already at head: no Alembic at all
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_config(conn), revision)


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_current(engine: sa.Engine) -> bool:
    head = files_head()
    return head is not None and stored_revision(engine) == head


def downgrade(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(_config(conn), revision)
