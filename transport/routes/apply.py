"""Policy evaluation and the 2-phase apply of a world, and the record of one apply run (reference §1.4)."""

from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody

from messages import commands as c
from messages.apply import ApplyAck, ApplyRequest, ApplyRunOut, EvaluateRequest, EvaluateResponse
from transport.auth import needs
from transport.edge import checked_path_id, respond, run


class ApplyController(Controller):
    path = "/worlds/{world_id:str}"
    tags = ["apply"]

    @post("/evaluate", status_code=200, opt=needs(c.Evaluate))
    async def evaluate(self, request: Request, world_id: FromPath[str],
                       data: JSONBody[EvaluateRequest]) -> Response[EvaluateResponse]:
        """The active set an apply of these metrics would choose, recorded as an evaluation run of the named
        strategy (else the first with metrics); activation and decisions do not change."""
        return respond(request, await run(request, c.Evaluate, world_id, body=data))

    @post("/apply", status_code=200, opt=needs(c.StartApply),
          responses={202: ResponseSpec(data_container=ApplyAck, description="held awaiting Gateway ACKs")})
    async def apply(self, request: Request, world_id: FromPath[str], data: JSONBody[ApplyRequest]) -> Response[ApplyAck]:
        """Freeze -> switch -> unfreeze. Answers when the run completed (200), rolled back (500; a repeat
        of the run id then answers 200 ``ok: false``), or is held awaiting Gateway ACKs (202)."""
        return respond(request, await run(request, c.StartApply, world_id, body=data))

    @get("/apply/{run_id:str}", opt=needs(c.GetApplyRun))
    async def get_run(self, request: Request, world_id: FromPath[str], run_id: FromPath[str]) -> Response[ApplyRunOut]:
        return respond(request, await run(request, c.GetApplyRun, world_id, run_id=checked_path_id(run_id, "run_id")))
