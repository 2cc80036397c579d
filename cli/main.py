"""Entry point of ``worldservice world``: every command module registered on one app."""

from __future__ import annotations

from cli import apply, operations  # noqa: F401 - their commands register on ``app``
from cli.app import app
from cli.client import EXIT_USAGE


def run(argv: list[str] | None = None) -> int:
    """``worldservice world ARGS``: the exit code (0 ok, 1 refused, 2 usage, 3 unreachable, 130 Ctrl-C
    while watching an apply)."""
    try:
        app(args=argv, prog_name="worldservice world")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    return 0
