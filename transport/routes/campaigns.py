"""Campaign status and tick of a world (reference §1.9): reads over its evaluation runs and default policy,
answered by the world's actor. ``tick`` is a POST that writes nothing: it recommends the next steps."""

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery

from messages import commands as c
from messages.campaigns import CampaignStatusResponse, CampaignTickResponse
from transport.auth import needs
from transport.edge import checked_id, respond, run


def _strategy(strategy_id: str | None) -> str | None:
    """The ``strategy_id`` filter gets an identifier's checks (422 naming the query parameter)."""
    return checked_id(strategy_id, "strategy_id")  # type: ignore[no-any-return]


class CampaignsController(Controller):
    path = "/worlds/{world_id:str}/campaign"
    tags = ["campaigns"]

    @get("/status", opt=needs(c.GetCampaignStatus))
    async def status(self, request: Request, world_id: FromPath[str],
                     strategy_id: FromQuery[str | None] = None) -> Response[CampaignStatusResponse]:
        """Each strategy's phase, window progress, evidence and promotability (422 when the policy's
        ``campaign`` windows are not durations like ``2d``, ``12h``, ``30m``, ``90s``)."""
        return respond(request, await run(request, c.GetCampaignStatus, world_id, strategy_id=_strategy(strategy_id)))

    @post("/tick", status_code=200, opt=needs(c.CampaignTick))
    async def tick(self, request: Request, world_id: FromPath[str],
                   strategy_id: FromQuery[str | None] = None) -> Response[CampaignTickResponse]:
        """The next step for each strategy (``evaluate``, ``auto_apply_live``, ``manual_approval_required``,
        ``observe_live``) with an idempotency key and a request template; nothing is written or emitted."""
        return respond(request, await run(request, c.CampaignTick, world_id, strategy_id=_strategy(strategy_id)))
