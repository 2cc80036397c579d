"""The ``worldservice world`` command tree, its global options, the world registry commands, and the one
place where a refusal, a missing daemon or bad input becomes an exit code."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import yaml
from typer.core import TyperGroup

from cli import render
from cli.client import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, Api, Refused, Unreachable, UsageProblem, resolve_target


class WorldGroup(TyperGroup):
    """Turns the CLI's three failures into their exit codes, printing the reason on stderr."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Refused as exc:
            render.errors().print(f"refused ({exc.status}): {exc.detail}", markup=False)
            raise typer.Exit(EXIT_REFUSED) from None
        except Unreachable as exc:
            render.errors().print(str(exc), markup=False)
            raise typer.Exit(EXIT_UNREACHABLE) from None
        except UsageProblem as exc:
            render.errors().print(f"usage: {exc}", markup=False)
            raise typer.Exit(EXIT_USAGE) from None


@dataclass
class State:
    url: str | None
    token: str | None
    config: str | None
    output: str
    _api: Api | None = field(default=None, repr=False)

    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = Api(*resolve_target(self.url, self.token, self.config))
        return self._api


app = typer.Typer(cls=WorldGroup, name="world", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, help="Operate a running WorldService daemon over its HTTP API.")

OutputChoice = Annotated[Literal["table", "json"] | None, typer.Option("--output", "-o",
                                                  help="table (default) or json: the daemon's exact body")]


@app.callback()
def _root(ctx: typer.Context,
          url: Annotated[str | None, typer.Option(envvar="WORLDSERVICE_URL", help="daemon base URL")] = None,
          token: Annotated[str | None, typer.Option(envvar="WORLDSERVICE_TOKEN", help="bearer token")] = None,
          config: Annotated[str | None, typer.Option("--config", envvar="WORLDSERVICE__CONFIG",
                                                     help="the daemon's config file (its address and service token)")] = None,
          output: Annotated[Literal["table", "json"], typer.Option("--output", "-o", envvar="WORLDSERVICE_OUTPUT")] = "table") -> None:
    ctx.obj = State(url=url, token=token, config=config, output=output)
    ctx.call_on_close(lambda: ctx.obj._api.close() if ctx.obj._api else None)


def state(ctx: typer.Context, output: str | None = None) -> tuple[Api, str]:
    """The daemon and the output format of this command (its own ``-o`` wins over the global one)."""
    root: State = ctx.find_root().obj
    return root.api, output or root.output


def read_document(path: Path) -> Any:
    """A JSON or YAML file (JSON is YAML)."""
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageProblem(f"{path}: {exc}") from None


def json_option(text: str | None, name: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageProblem(f"{name} is not JSON: {exc}") from None


WORLD_COLUMNS = ("id", "name", "state", "execution_domain", "allow_live", "circuit_breaker", "default_policy_version")


@app.command("list")
def list_worlds(ctx: typer.Context, output: OutputChoice = None) -> None:
    """Every world the caller may read."""
    api, out = state(ctx, output)
    render.show(out, api.get("/worlds"), lambda body: render.rows("worlds", WORLD_COLUMNS, body))


@app.command()
def show(ctx: typer.Context, world_id: str, output: OutputChoice = None) -> None:
    """One world's record."""
    api, out = state(ctx, output)
    render.show(out, api.get(f"/worlds/{world_id}"), lambda body: render.fields(body, title=f"world {world_id}"))


@app.command()
def describe(ctx: typer.Context, world_id: str, output: OutputChoice = None) -> None:
    """The world with its default policy and preset metadata."""
    api, out = state(ctx, output)
    render.show(out, api.get(f"/worlds/{world_id}/describe"), lambda body: render.fields(body, title=f"world {world_id}"))


NameOpt = Annotated[str | None, typer.Option(help="display name")]
TextOpt = Annotated[str | None, typer.Option()]
LabelOpt = Annotated[list[str] | None, typer.Option("--label", help="repeat for several")]
StateOpt = Annotated[Literal["ACTIVE", "SUSPENDED"] | None, typer.Option("--state")]
FlagOpt = Annotated[bool | None, typer.Option()]
MetadataOpt = Annotated[str | None, typer.Option(help="JSON object")]


def _world_fields(**given: Any) -> dict[str, Any]:
    """The options that were given, as body fields (``None``: not given, so not sent)."""
    body = {key: value for key, value in given.items() if value is not None and key != "metadata"}
    if given.get("metadata") is not None:
        body["metadata"] = json_option(given["metadata"], "--metadata")
    return body


@app.command()
def create(ctx: typer.Context, world_id: str, name: Annotated[str, typer.Option(help="display name")],
           description: TextOpt = None, owner: TextOpt = None, label: LabelOpt = None, state_: StateOpt = None,
           allow_live: FlagOpt = None, circuit_breaker: FlagOpt = None, contract_id: TextOpt = None,
           dataset_fingerprint: TextOpt = None, resource_policy: TextOpt = None, code_version: TextOpt = None,
           metadata: MetadataOpt = None, output: OutputChoice = None) -> None:
    """Create a world (409 when the id exists)."""
    api, out = state(ctx, output)
    body = {"id": world_id, **_world_fields(
        name=name, description=description, owner=owner, labels=label, state=state_, allow_live=allow_live,
        circuit_breaker=circuit_breaker, contract_id=contract_id, dataset_fingerprint=dataset_fingerprint,
        resource_policy=resource_policy, code_version=code_version, metadata=metadata)}
    render.show(out, api.send("POST", "/worlds", body), lambda body: render.fields(body, title=f"created {world_id}"))


@app.command()
def update(ctx: typer.Context, world_id: str, name: NameOpt = None, description: TextOpt = None, owner: TextOpt = None,
           label: LabelOpt = None, state_: StateOpt = None, allow_live: FlagOpt = None, circuit_breaker: FlagOpt = None,
           contract_id: TextOpt = None, dataset_fingerprint: TextOpt = None, resource_policy: TextOpt = None,
           code_version: TextOpt = None, default_policy_version: Annotated[int | None, typer.Option()] = None,
           metadata: MetadataOpt = None, output: OutputChoice = None) -> None:
    """Change only the fields given."""
    api, out = state(ctx, output)
    body = _world_fields(name=name, description=description, owner=owner, labels=label, state=state_,
                         allow_live=allow_live, circuit_breaker=circuit_breaker, contract_id=contract_id,
                         dataset_fingerprint=dataset_fingerprint, resource_policy=resource_policy,
                         code_version=code_version, default_policy_version=default_policy_version, metadata=metadata)
    if not body:
        raise UsageProblem("nothing to update: give at least one field option")
    render.show(out, api.send("PUT", f"/worlds/{world_id}", body), lambda body: render.fields(body, title=f"updated {world_id}"))


@app.command()
def delete(ctx: typer.Context, world_id: str,
           force: Annotated[bool, typer.Option(help="also when strategies are active")] = False,
           output: OutputChoice = None) -> None:
    """Delete a world (refused while strategies are active, unless --force)."""
    api, out = state(ctx, output)
    response = api.call("DELETE", f"/worlds/{world_id}", params={"force": "true"} if force else None)
    render.show(out, response, f"deleted {world_id}")
