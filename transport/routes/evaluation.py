"""Evaluation runs and cohort evaluation (reference §1.4, §1.8): every read and change goes through the
world's actor, so a run's revisions serialize with that world's apply and activation writes."""

from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody

from messages import commands as c
from messages.apply import CohortEvaluateRequest, CohortEvaluateResponse
from messages.errors import CodedErrorBody
from messages.evaluation import EvaluationMetrics, EvaluationOverride, EvaluationRun, ExPostFailureRecord, RunRevision
from transport.auth import needs
from transport.edge import checked_path_id, respond, run


def _ids(strategy_id: str, run_id: str | None = None) -> dict[str, str]:
    ids = {"strategy_id": checked_path_id(strategy_id, "strategy_id")}
    if run_id is not None:
        ids["run_id"] = checked_path_id(run_id, "run_id")
    return ids


class CohortController(Controller):
    path = "/worlds/{world_id:str}"
    tags = ["evaluation runs"]

    @post("/evaluate-cohort", status_code=200, opt=needs(c.EvaluateCohort))
    async def evaluate_cohort(self, request: Request, world_id: FromPath[str],
                              data: JSONBody[CohortEvaluateRequest]) -> Response[CohortEvaluateResponse]:
        """One selection over every candidate; one run per candidate under one run id and campaign id."""
        return respond(request, await run(request, c.EvaluateCohort, world_id, body=data))


class EvaluationRunsController(Controller):
    path = "/worlds/{world_id:str}/strategies/{strategy_id:str}/runs"
    tags = ["evaluation runs"]

    @get("/", opt=needs(c.ListRuns))
    async def list_runs(self, request: Request, world_id: FromPath[str],
                        strategy_id: FromPath[str]) -> Response[list[EvaluationRun]]:
        """The strategy's runs, oldest first (an unknown strategy has none: ``[]``)."""
        return respond(request, await run(request, c.ListRuns, world_id, **_ids(strategy_id)))

    @get("/{run_id:str}", opt=needs(c.GetRun))
    async def get_run(self, request: Request, world_id: FromPath[str], strategy_id: FromPath[str],
                      run_id: FromPath[str]) -> Response[EvaluationRun]:
        return respond(request, await run(request, c.GetRun, world_id, **_ids(strategy_id, run_id)))

    @get("/{run_id:str}/metrics", opt=needs(c.GetRunMetrics), responses={409: ResponseSpec(
        data_container=CodedErrorBody, description="E_RUN_NOT_EVALUATED: the run has no metrics yet")})
    async def get_metrics(self, request: Request, world_id: FromPath[str], strategy_id: FromPath[str],
                          run_id: FromPath[str]) -> Response[EvaluationMetrics]:
        return respond(request, await run(request, c.GetRunMetrics, world_id, **_ids(strategy_id, run_id)))

    @get("/{run_id:str}/history", opt=needs(c.GetRunHistory))
    async def get_history(self, request: Request, world_id: FromPath[str], strategy_id: FromPath[str],
                          run_id: FromPath[str]) -> Response[list[RunRevision]]:
        """Every revision of the run, oldest first, each with the run as it was then."""
        return respond(request, await run(request, c.GetRunHistory, world_id, **_ids(strategy_id, run_id)))

    @post("/{run_id:str}/override", status_code=200, opt=needs(c.OverrideRun))
    async def override(self, request: Request, world_id: FromPath[str], strategy_id: FromPath[str],
                       run_id: FromPath[str], data: JSONBody[EvaluationOverride]) -> Response[EvaluationRun]:
        """``approved`` needs reason, actor and timestamp (else 422); the same override again changes nothing."""
        return respond(request, await run(request, c.OverrideRun, world_id, **_ids(strategy_id, run_id), body=data))

    @post("/{run_id:str}/ex-post-failures", status_code=200, opt=needs(c.RecordExPostFailure))
    async def ex_post_failure(self, request: Request, world_id: FromPath[str], strategy_id: FromPath[str],
                              run_id: FromPath[str], data: JSONBody[ExPostFailureRecord]) -> Response[EvaluationRun]:
        """Appends to ``summary.ex_post_failures``; ``recorded_at`` defaults to when it arrived."""
        return respond(request, await run(request, c.RecordExPostFailure, world_id,
                                          **_ids(strategy_id, run_id), body=data))
