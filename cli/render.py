"""What the CLI prints: ``--output json`` is the daemon's body byte for byte; ``table`` is a rich table
of the fields an operator reads first."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import httpx
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

OUTPUTS = ("table", "json")


def console() -> Console:
    """Made per call, so whatever ``sys.stdout`` is at that moment (a pipe, a test's capture) is used."""
    return Console(highlight=False, soft_wrap=False)


def errors() -> Console:
    return Console(stderr=True, highlight=False)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True) if value else "-"
    return str(value)


def raw(response: httpx.Response) -> None:
    """The exact body; nothing at all for an empty one (a 204)."""
    if response.content:
        print(response.text)


def titled(title: str | None, table: Table) -> Any:
    """A title on its own line: a table's caption would wrap to the table's width."""
    return Group(Text(title), table) if title else table


def rows(title: str | None, columns: Sequence[str], records: Iterable[dict[str, Any]]) -> Any:
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(*(cell(record.get(column)) for column in columns))
    return titled(title, table)


def fields(record: dict[str, Any], keys: Sequence[str] | None = None, title: str | None = None) -> Any:
    """One record as ``field | value`` lines; ``keys`` picks and orders them (default: all)."""
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key in keys or list(record):
        if key in record:
            table.add_row(key, cell(record[key]))
    return titled(title, table)


def show(output: str, response: httpx.Response, table: Any) -> None:
    """Print ``response`` as asked; ``table`` is a renderable or a function of the decoded body."""
    if output == "json":
        raw(response)
        return
    console().print(table(response.json()) if callable(table) else table)
