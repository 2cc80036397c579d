"""Evaluation runs in SQL: one appended row per revision, loaded back as ``strategy -> run -> revisions``."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa

from domain.effects import SaveEvaluationRun
from messages.evaluation import EvaluationRun
from storage import schema as t


def evaluation_row(world_id: str, effect: SaveEvaluationRun) -> dict[str, Any]:
    run = effect.run
    return {"world_id": world_id, "strategy_id": run.strategy_id, "run_id": run.run_id, "revision": run.revision,
            "recorded_at": run.updated_at, "record": msgspec.to_builtins(run)}


def load_evaluations(conn: sa.Connection, world_id: str) -> dict[str, dict[str, list[EvaluationRun]]]:
    e = t.evaluation_runs
    runs: dict[str, dict[str, list[EvaluationRun]]] = {}
    for r in conn.execute(sa.select(e.c.strategy_id, e.c.run_id, e.c.record).where(e.c.world_id == world_id)
                          .order_by(e.c.strategy_id, e.c.run_id, e.c.revision)):
        runs.setdefault(r.strategy_id, {}).setdefault(r.run_id, []).append(msgspec.convert(r.record, EvaluationRun))
    return runs
