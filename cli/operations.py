"""Policies, activation, decisions, evaluation, allocations and the audit log, as CLI commands."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from cli import render
from cli.app import OutputChoice, app, read_document, state
from cli.client import Api, UsageProblem

policy = typer.Typer(no_args_is_help=True, help="A world's policy versions and its default.")
activation = typer.Typer(no_args_is_help=True, help="A world's activation set, one entry or all of it.")
app.add_typer(policy, name="policy")
app.add_typer(activation, name="activation")


@policy.command("upload")
def policy_upload(ctx: typer.Context, world_id: str,
                  file: Annotated[Path | None, typer.Argument(help="policy document, YAML or JSON")] = None,
                  preset: Annotated[str | None, typer.Option(help="a built-in preset instead of a file")] = None,
                  set_default: Annotated[bool, typer.Option(help="make the new version the default")] = False,
                  output: OutputChoice = None) -> None:
    """Store a new policy version (a file or a preset)."""
    if (file is None) == (preset is None):
        raise UsageProblem("give a policy FILE or --preset, not both")
    api, out = state(ctx, output)
    body: dict[str, Any] = {"preset": preset} if preset else {"policy": _policy_text(file)}
    response = api.send("POST", f"/worlds/{world_id}/policies", body)
    if set_default:
        api.send("POST", f"/worlds/{world_id}/set-default", {"version": response.json()["version"]})
    title = "stored" + (" and made default" if set_default else "")
    render.show(out, response, lambda body: render.fields(body, title=f"policy {title}"))


def _policy_text(path: Path | None) -> str:
    assert path is not None
    try:
        return path.read_text()
    except OSError as exc:
        raise UsageProblem(f"{path}: {exc}") from None


@policy.command("list")
def policy_list(ctx: typer.Context, world_id: str, output: OutputChoice = None) -> None:
    """The stored versions with their registry metadata (status, checksum, author)."""
    api, out = state(ctx, output)
    response = api.get(f"/worlds/{world_id}/policies")
    if out == "json":
        render.raw(response)
        return
    default = api.get(f"/worlds/{world_id}").json().get("default_policy_version")
    metas = [{**api.get(f"/worlds/{world_id}/policies/{ref['version']}/meta").json(),
              "default": ref["version"] == default} for ref in response.json()]
    render.console().print(render.rows(f"policies of {world_id}", ("version", "default", "status", "checksum",
                                                                    "created_by", "created_at", "preset"), metas))


@policy.command("show")
def policy_show(ctx: typer.Context, world_id: str, version: int, output: OutputChoice = None) -> None:
    """One stored policy document."""
    api, out = state(ctx, output)
    render.show(out, api.get(f"/worlds/{world_id}/policies/{version}"),
                lambda body: render.fields(body, title=f"policy {version} of {world_id}"))


@policy.command("set-default")
def policy_set_default(ctx: typer.Context, world_id: str, version: int, output: OutputChoice = None) -> None:
    """Make a stored version the world's default."""
    api, out = state(ctx, output)
    render.show(out, api.send("POST", f"/worlds/{world_id}/set-default", {"version": version}),
                f"default policy of {world_id} is now {version}")


ENTRY_COLUMNS = ("strategy_id", "side", "active", "weight", "freeze", "drain", "effective_mode", "etag", "run_id")


@activation.command("get")
def activation_get(ctx: typer.Context, world_id: str,
                   strategy_id: Annotated[str | None, typer.Option("--strategy", "-s")] = None,
                   side: Annotated[Literal["long", "short"] | None, typer.Option()] = None,
                   output: OutputChoice = None) -> None:
    """One entry (--strategy and --side), or the whole set with its version and state hash."""
    if strategy_id is not None and side is None:
        side = "long"
    if side is not None and strategy_id is None:
        raise UsageProblem("--side needs --strategy")
    api, out = state(ctx, output)
    response = api.get(f"/worlds/{world_id}/activation", strategy_id=strategy_id, side=side)
    render.show(out, response, _entry_table if strategy_id else _set_table)


def _entry_table(body: dict[str, Any]) -> Any:
    return render.fields(body, title=f"activation {body['strategy_id']}/{body['side']} of {body['world_id']}")


def _set_table(body: dict[str, Any]) -> Any:
    entries = [{"strategy_id": sid, "side": side, **entry}
               for sid, sides in sorted(body["state"].items()) for side, entry in sorted(sides.items())]
    title = f"activation of {body['world_id']}: version {body['version']}, state_hash {body['state_hash']}"
    return render.rows(title, ENTRY_COLUMNS, entries)


@activation.command("set")
def activation_set(ctx: typer.Context, world_id: str, strategy_id: Annotated[str, typer.Option("--strategy", "-s")],
                   active: Annotated[bool, typer.Option("--active/--inactive")],
                   side: Annotated[Literal["long", "short"], typer.Option()] = "long",
                   weight: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
                   freeze: Annotated[bool | None, typer.Option()] = None,
                   drain: Annotated[bool | None, typer.Option()] = None,
                   effective_mode: Annotated[str | None, typer.Option()] = None,
                   if_match: Annotated[str | None, typer.Option(help="refuse (412) unless this is the etag")] = None,
                   output: OutputChoice = None) -> None:
    """Write one entry; fields not given keep their stored value."""
    api, out = state(ctx, output)
    given = {"weight": weight, "freeze": freeze, "drain": drain, "effective_mode": effective_mode}
    body = {"strategy_id": strategy_id, "side": side, "active": active,
            **{key: value for key, value in given.items() if value is not None}}
    headers = {"If-Match": f'"{if_match}"'} if if_match else {}
    render.show(out, api.send("PUT", f"/worlds/{world_id}/activation", body, headers=headers), _entry_table)


@app.command()
def decide(ctx: typer.Context, world_id: str,
           as_of: Annotated[str | None, typer.Option(help="ISO-8601; default now")] = None,
           output: OutputChoice = None) -> None:
    """The world's decision envelope (effective mode, reason, ttl)."""
    api, out = state(ctx, output)
    render.show(out, api.get(f"/worlds/{world_id}/decide", as_of=as_of),
                lambda body: render.fields(body, title=f"decision of {world_id}"))


@app.command()
def evaluate(ctx: typer.Context, world_id: str,
             file: Annotated[Path, typer.Argument(help="the request body (metrics, policy, ...), YAML or JSON")],
             run_id: Annotated[str | None, typer.Option()] = None,
             strategy_id: Annotated[str | None, typer.Option("--strategy", "-s")] = None,
             stage: Annotated[str | None, typer.Option()] = None,
             output: OutputChoice = None) -> None:
    """Run the policy over the metrics and record an evaluation run; activation does not change."""
    body = read_document(file)
    if not isinstance(body, dict):
        raise UsageProblem(f"{file}: the request body must be a mapping")
    body.update({k: v for k, v in (("run_id", run_id), ("strategy_id", strategy_id), ("stage", stage)) if v})
    api, out = state(ctx, output)
    render.show(out, api.send("POST", f"/worlds/{world_id}/evaluate", body),
                lambda body: render.fields(body, ("active", "evaluation_run_id", "evaluation_run_url",
                                                  "ruleset_hash", "notes", "decision"), title=f"evaluation of {world_id}"))


@app.command()
def allocations(ctx: typer.Context,
                world_id: Annotated[str | None, typer.Option("--world", "-w", help="one world (default: all)")] = None,
                output: OutputChoice = None) -> None:
    """Each world's latest allocation, and whether it is stale."""
    api, out = state(ctx, output)
    render.show(out, api.get("/allocations", world_id=world_id), lambda body: render.rows(
        "allocations", ("world_id", "allocation", "stale", "ttl", "run_id", "updated_at", "strategy_alloc_total"),
        body["allocations"].values()))


AUDIT_COLUMNS = ("id", "created_at", "event", "actor", "correlation_id")


@app.command()
def audit(ctx: typer.Context, world_id: str,
          after: Annotated[int, typer.Option(min=0, help="entries after this id")] = 0,
          limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
          follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new entries (Ctrl-C ends)")] = False,
          interval: Annotated[float, typer.Option(min=0.05, help="seconds between polls with --follow")] = 1.0,
          output: OutputChoice = None) -> None:
    """A page of the audit log; with --follow every new entry as it is written (json: one per line)."""
    api, out = state(ctx, output)
    if not follow:
        response = api.get(f"/worlds/{world_id}/audit", after=after, limit=limit)
        render.show(out, response, lambda body: render.rows(f"audit of {world_id}", AUDIT_COLUMNS, body))
        if out == "table" and "X-Next-After" in response.headers:
            render.errors().print(f"more: --after {response.headers['X-Next-After']}")
        return
    try:
        _follow(api, world_id, after, out, interval)
    except KeyboardInterrupt:
        return


def _follow(api: Api, world_id: str, cursor: int, out: str, interval: float) -> None:
    while True:
        entries = api.get(f"/worlds/{world_id}/audit", after=cursor, limit=1000).json()
        for entry in entries:
            if out == "json":
                print(json.dumps(entry, separators=(",", ":")), flush=True)
            else:
                print("  ".join(render.cell(entry.get(column)) for column in AUDIT_COLUMNS), flush=True)
            cursor = max(cursor, entry["id"])
        if len(entries) < 1000:
            time.sleep(interval)
