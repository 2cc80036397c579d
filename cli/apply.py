"""``apply <id> --run-id R``: start a 2-phase apply and follow it live until its final phase (phases, the
ACK of every sequenced event, a progress bar, the verdict); ``apply status <id> <run>`` reads a run.

The POST that starts a run answers only once the run completed, rolled back or is held awaiting ACKs, so
it runs on a thread while the main thread polls ``GET /worlds/{id}/apply/{run}``. Ctrl-C stops watching;
the run carries on in the daemon."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from cli import render
from cli.app import OutputChoice, app, read_document, state
from cli.client import EXIT_OK, EXIT_REFUSED, Api, Refused, UsageProblem

PHASES = ("freezing", "switching", "unfreezing", "completed")
FINAL = ("completed", "rolled_back")
EXIT_INTERRUPTED = 130
# Keys of an apply request other than ``plan``: a plan file holding any of them is the whole request body.
REQUEST_KEYS = {"plan", "metrics", "policy", "previous", "correlations", "series", "stage", "gating_policy",
                "strategy_id", "risk_tier", "model_card_version", "override"}


class ApplyGroup(TyperGroup):
    """``apply <id> …`` starts a run, ``apply status <id> <run>`` reads one: anything that is not a
    subcommand's name goes to the hidden ``start``."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


apply_app = typer.Typer(cls=ApplyGroup, no_args_is_help=True,
                        help="Start a 2-phase apply and follow it (apply ID --run-id R), or read one (apply status).")
app.add_typer(apply_app, name="apply")


def request_body(run_id: str, plan_file: Path | None, activate: list[str], deactivate: list[str],
                 weights: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if plan_file is not None:
        document = read_document(plan_file)
        if not isinstance(document, dict):
            raise UsageProblem(f"{plan_file}: a plan file holds a mapping")
        body = dict(document) if REQUEST_KEYS & document.keys() else {"plan": document}
    if activate or deactivate or weights:
        plan = dict(body.get("plan") or {})
        plan["activate"] = [*plan.get("activate", []), *activate]
        plan["deactivate"] = [*plan.get("deactivate", []), *deactivate]
        plan["weights"] = {**plan.get("weights", {}), **_weights(weights)}
        body["plan"] = plan
    if "plan" not in body and "metrics" not in body:
        raise UsageProblem("nothing to apply: give --plan-file or --activate/--deactivate")
    return {**body, "run_id": run_id}


def _weights(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        sid, sep, value = pair.partition("=")
        try:
            out[sid] = float(value)
        except ValueError:
            sep = ""
        if not sep or not sid:
            raise UsageProblem(f"--weight takes STRATEGY=WEIGHT, not {pair!r}")
    return out


@apply_app.command("start")
def start(ctx: typer.Context, world_id: str, run_id: Annotated[str, typer.Option(help="the run's id (idempotent)")],
          plan_file: Annotated[Path | None, typer.Option(help="the plan (or the whole request), YAML or JSON")] = None,
          activate: Annotated[list[str] | None, typer.Option("--activate", help="strategy to activate; repeat")] = None,
          deactivate: Annotated[list[str] | None, typer.Option("--deactivate", help="strategy to deactivate")] = None,
          weight: Annotated[list[str] | None, typer.Option("--weight", help="STRATEGY=WEIGHT; repeat")] = None,
          interval: Annotated[float, typer.Option(min=0.05, help="seconds between status polls")] = 0.2,
          output: OutputChoice = None) -> None:
    """Start a run and follow it until it completes (exit 0) or rolls back or is refused (exit 1)."""
    body = request_body(run_id, plan_file, activate or [], deactivate or [], weight or [])
    api, out = state(ctx, output)
    watch = Watch(api, world_id, run_id, interval)
    try:
        code = watch.json(body) if out == "json" else watch.live(body)
    except KeyboardInterrupt:
        render.errors().print(f"stopped watching; run {run_id} carries on in the daemon: "
                              f"worldservice world apply status {world_id} {run_id}", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        watch.poller.close()
    raise typer.Exit(code)


@apply_app.command("status")
def status(ctx: typer.Context, world_id: str, run_id: str, output: OutputChoice = None) -> None:
    """A run's phase, its sequenced events and their ACKs."""
    api, out = state(ctx, output)
    render.show(out, api.get(f"/worlds/{world_id}/apply/{run_id}"), run_view)


class Watch:
    """One run being started and followed."""

    def __init__(self, api: Api, world_id: str, run_id: str, interval: float) -> None:
        self.api, self.world_id, self.run_id, self.interval = api, world_id, run_id, interval
        self.poller = Api(api.url, api.token, timeout_s=10.0)  # its own connection: the POST holds one
        self.answer: dict[str, Any] = {}
        self.answered = threading.Event()

    def _post(self, body: dict[str, Any]) -> None:
        try:
            self.answer["response"] = self.api.send("POST", f"/worlds/{self.world_id}/apply", body)
        except Exception as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            self.answer["error"] = exc
        finally:
            self.answered.set()

    def begin(self, body: dict[str, Any]) -> None:
        threading.Thread(target=self._post, args=(body,), daemon=True, name="apply-post").start()

    def run_record(self) -> dict[str, Any] | None:
        try:
            return self.poller.get(f"/worlds/{self.world_id}/apply/{self.run_id}").json()
        except Refused as exc:
            if exc.status == 404:  # not created yet
                return None
            raise

    def settled(self) -> tuple[int, dict[str, Any] | None]:
        """The POST's answer: (status, body); a refusal other than a rollback is raised as it came."""
        if "error" in self.answer:
            error = self.answer["error"]
            if isinstance(error, Refused) and error.status == 500 and self.run_record() is not None:
                return 500, None
            raise error
        response = self.answer["response"]
        return response.status_code, response.json()

    def json(self, body: dict[str, Any]) -> int:
        """No live view: the POST's body, or once a held run (202) is final, the run's record."""
        self.begin(body)
        self.answered.wait()
        status, _ = self.settled()
        if status != 202:
            render.raw(self.answer.get("response") or self.answer["error"].response)
            return EXIT_OK if status == 200 and self.answer["response"].json().get("ok") else EXIT_REFUSED
        record = self._until_final(lambda record: None)
        render.raw(self.poller.get(f"/worlds/{self.world_id}/apply/{self.run_id}"))
        return EXIT_OK if record["state"] == "completed" else EXIT_REFUSED

    def live(self, body: dict[str, Any]) -> int:
        console = render.console()
        log = Changes(console)
        with Live(Text(f"starting run {self.run_id} on {self.world_id} …"), console=console,
                  refresh_per_second=8, transient=False) as live:
            def show(record: dict[str, Any] | None) -> None:
                if record is not None:
                    log.note(record)
                    live.update(run_view(record))
            self.begin(body)
            while not self.answered.wait(self.interval):
                show(self.run_record())
            status, _ = self.settled()
            if status == 202:
                console.print("held: Gateways have not acknowledged yet; still watching (Ctrl-C stops watching)")
            record = self._until_final(show)
            show(record)
        return self._verdict(console, record)

    def _until_final(self, show: Any) -> dict[str, Any]:
        while True:
            record = self.run_record()
            show(record)
            if record is not None and record["state"] in FINAL:
                return record
            self.answered.wait(self.interval)  # already set: this paces the polls without a sleep loop

    def _verdict(self, console: Any, record: dict[str, Any]) -> int:
        if not console.is_terminal:
            console.line()  # off a terminal, Live leaves its last frame without a line end
        if record["state"] == "completed":
            console.print(f"run {self.run_id} completed: active {', '.join(record['active']) or '(none)'}")
            return EXIT_OK
        console.print(f"run {self.run_id} rolled back: {record.get('error') or 'see the audit log'}", markup=False)
        return EXIT_REFUSED


class Changes:
    """One line per phase change and per new ACK, so a log or a non-terminal keeps the run's story."""

    def __init__(self, console: Any) -> None:
        self.console, self.phase, self.acked = console, None, set()

    def note(self, record: dict[str, Any]) -> None:
        if record["phase"] != self.phase:
            self.phase = record["phase"]
            self.console.print(f"phase {self.phase}", markup=False)
        for event in record["events"]:
            key = (event["sequence"], event["phase"])
            if event["acked"] and key not in self.acked:
                self.acked.add(key)
                self.console.print(f"ack #{event['sequence']} {event['phase']} {event['strategy_id']}/{event['side']}",
                                   markup=False)


def run_view(record: dict[str, Any]) -> Group:
    events = record["events"]
    acked = sum(event["acked"] for event in events)
    steps = " → ".join(f"[bold reverse]{p}[/]" if p == record["state"] else p for p in PHASES)
    if record["state"] == "rolled_back":
        steps += " → [bold red reverse]rolled_back[/]"
    header = render.fields(record, ("world_id", "run_id", "phase", "awaiting", "active", "previous",
                                    "execution_domain", "downgraded", "error", "resends", "started_at",
                                    "updated_at", "deadline"), title=f"apply run {record['run_id']}")
    table = Table()
    for column in ("sequence", "phase", "strategy_id", "side", "acked", "acked_at"):
        table.add_column(column)
    for event in events:
        table.add_row(*(render.cell(event[c]) for c in ("sequence", "phase", "strategy_id", "side", "acked", "acked_at")))
    progress = Table.grid(padding=(0, 1))
    progress.add_row(Text("ACKs received"), ProgressBar(total=max(len(events), 1), completed=acked, width=30),
                     Text(f"{acked}/{len(events)}"))
    return Group(Text.from_markup(steps), header, progress, render.titled("events", table))
