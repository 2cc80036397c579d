"""Live promotions of evaluation runs (reference §1.10), governed by ``governance.live_promotion`` of the
world's default policy. Every route goes through the world's actor: an apply is an ordinary 2-phase apply
run of that world, through the default-safe rule."""

from typing import Annotated

from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from messages import commands as c
from messages.apply import ApplyAck
from messages.evaluation import EvaluationRun
from messages.promotions import (
    LivePromotionApplyRequest, LivePromotionApproveRequest, LivePromotionAutoApplyResponse, LivePromotionCandidates,
    LivePromotionPlan, LivePromotionRejectRequest,
)
from transport.auth import needs
from transport.edge import checked_id, respond, run

_HELD = {202: ResponseSpec(data_container=ApplyAck, description="the apply is held awaiting Gateway ACKs")}


class PromotionsController(Controller):
    path = "/worlds/{world_id:str}/promotions/live"
    tags = ["live promotions"]

    @post("/approve", status_code=200, opt=needs(c.ApprovePromotion))
    async def approve(self, request: Request, world_id: FromPath[str],
                      data: JSONBody[LivePromotionApproveRequest]) -> Response[EvaluationRun]:
        """Record an ``approved`` override on the run. 409 when the policy disables live promotion; with an
        ``approvers`` list, 422 without an actor and 403 for anyone else."""
        return respond(request, await run(request, c.ApprovePromotion, world_id, body=data))

    @post("/reject", status_code=200, opt=needs(c.RejectPromotion))
    async def reject(self, request: Request, world_id: FromPath[str],
                     data: JSONBody[LivePromotionRejectRequest]) -> Response[EvaluationRun]:
        return respond(request, await run(request, c.RejectPromotion, world_id, body=data))

    @get("/plan", opt=needs(c.GetPromotionPlan))
    async def plan(self, request: Request, world_id: FromPath[str], strategy_id: FromQuery[str],
                   run_id: FromQuery[str]) -> Response[LivePromotionPlan]:
        """The run's ``summary.active_set`` against the world's decisions, and every reason it may not be
        promoted now (the gates, then the default-safe rule)."""
        return respond(request, await run(request, c.GetPromotionPlan, world_id,
                                          strategy_id=checked_id(strategy_id, "strategy_id"),
                                          run_id=checked_id(run_id, "run_id")))

    @post("/apply", status_code=200, responses=_HELD, opt=needs(c.ApplyPromotion))
    async def apply(self, request: Request, world_id: FromPath[str],
                    data: JSONBody[LivePromotionApplyRequest]) -> Response[EvaluationRun]:
        """Apply the run's active set to live as apply run ``apply_run_id``; 409 names the gate or the
        default-safe rules that refuse it. Answers the evaluation run once the apply completed."""
        return respond(request, await run(request, c.ApplyPromotion, world_id, body=data))

    @post("/auto-apply", status_code=200, responses=_HELD, opt=needs(c.AutoApplyPromotion))
    async def auto_apply(self, request: Request, world_id: FromPath[str]) -> Response[LivePromotionAutoApplyResponse]:
        """Promote the freshest paper run when the policy's mode is ``auto_apply`` (else 409) and the
        gates, the default-safe rule and the canary let it; ``applied: false`` says why not."""
        return respond(request, await run(request, c.AutoApplyPromotion, world_id))

    @get("/candidates", opt=needs(c.ListPromotionCandidates))
    async def candidates(self, request: Request, world_id: FromPath[str],
                         limit: Annotated[int, QueryParameter(ge=0, le=1000)] = 20,
                         include_plan: FromQuery[bool] = False) -> Response[LivePromotionCandidates]:
        """The freshest paper run of each strategy (``limit`` of them, 0: all) that passed or warned."""
        return respond(request, await run(request, c.ListPromotionCandidates, world_id, limit=limit,
                                          include_plan=include_plan))
