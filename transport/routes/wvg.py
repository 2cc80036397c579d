"""The World View Graph: world nodes, edge overrides and the validation cache (reference §1.1, §1.7)."""

from typing import Annotated

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from domain.evalkey import eval_key
from messages import commands as c
from messages.wvg import (
    EdgeOverrideOut, EdgeOverrideUpsertRequest, ValidationCacheResponse, ValidationContext,
    ValidationInvariantsReport, ValidationStoreRequest, WorldNodeRef, WorldNodeUpsertRequest,
)
from transport.auth import needs
from transport.edge import checked_id, checked_path_id, edge_of, respond, run


DomainQuery = Annotated[str | None, QueryParameter(max_length=32)]


class WorldViewGraphController(Controller):
    """World nodes, edge overrides and the validation cache. Execution domains take the reference's
    aliases (case-insensitive); an unknown one is 422 with the accepted names."""

    path = "/worlds/{world_id:str}"
    tags = ["world view graph"]

    @get("/nodes", opt=needs(c.ListNodes))
    async def list_nodes(self, request: Request, world_id: FromPath[str],
                         execution_domain: DomainQuery = None) -> Response[list[WorldNodeRef]]:
        """No ``execution_domain`` (or ``*`` / ``all``): the nodes of every domain."""
        return respond(request, await run(request, c.ListNodes, world_id, execution_domain=execution_domain))

    @get("/nodes/{node_id:str}", opt=needs(c.GetNode))
    async def get_node(self, request: Request, world_id: FromPath[str], node_id: FromPath[str],
                       execution_domain: DomainQuery = None) -> Response[WorldNodeRef]:
        """No ``execution_domain``: backtest."""
        return respond(request, await run(request, c.GetNode, world_id, node_id=checked_path_id(node_id, "node_id"),
                                            execution_domain=execution_domain))

    @put("/nodes/{node_id:str}", status_code=200, opt=needs(c.PutNode))
    async def put_node(self, request: Request, world_id: FromPath[str], node_id: FromPath[str],
                       data: JSONBody[WorldNodeUpsertRequest]) -> Response[WorldNodeRef]:
        """Fields left out (``last_eval_key``, ``annotations``) keep their stored value."""
        return respond(request, await run(request, c.PutNode, world_id, node_id=checked_path_id(node_id, "node_id"),
                                            body=data))

    @delete("/nodes/{node_id:str}", status_code=204, opt=needs(c.DeleteNode))
    async def delete_node(self, request: Request, world_id: FromPath[str], node_id: FromPath[str],
                          execution_domain: DomainQuery = None) -> Response[None]:
        return respond(request, await run(request, c.DeleteNode, world_id, node_id=checked_path_id(node_id, "node_id"),
                                            execution_domain=execution_domain))

    @get("/edges/overrides", opt=needs(c.ListEdgeOverrides))
    async def list_edges(self, request: Request, world_id: FromPath[str]) -> Response[list[EdgeOverrideOut]]:
        return respond(request, await run(request, c.ListEdgeOverrides, world_id))

    @put("/edges/{src_node_id:str}/{dst_node_id:str}", status_code=200, opt=needs(c.PutEdgeOverride))
    async def put_edge(self, request: Request, world_id: FromPath[str], src_node_id: FromPath[str],
                       dst_node_id: FromPath[str], data: JSONBody[EdgeOverrideUpsertRequest]) -> Response[EdgeOverrideOut]:
        """Leaving ``reason`` out keeps the stored reason. Every change is announced on the ControlBus
        (``edge_override_upserted``, topic ``control.edges``)."""
        return respond(request, await run(request, c.PutEdgeOverride, world_id,
                                            src_node_id=checked_path_id(src_node_id, "src_node_id"),
                                            dst_node_id=checked_path_id(dst_node_id, "dst_node_id"), body=data))

    @post("/validations/cache/lookup", status_code=200, opt=needs(c.LookupValidation))
    async def lookup_validation(self, request: Request, world_id: FromPath[str],
                                data: JSONBody[ValidationContext]) -> Response[ValidationCacheResponse]:
        """A read for the caller (reader role); an entry cached under another context is evicted."""
        reply = await run(request, c.LookupValidation, world_id, body=data)
        if reply.ok:
            expected = eval_key(data.node_id, world_id, data.execution_domain, data.contract_id,
                                data.dataset_fingerprint, data.code_version, data.resource_policy)
            edge_of(request).metrics.observe_cache_lookup(reply.body.eval_key if reply.body.cached else None, expected)
        return respond(request, reply)

    @post("/validations/cache", status_code=200, opt=needs(c.StoreValidation))
    async def store_validation(self, request: Request, world_id: FromPath[str],
                               data: JSONBody[ValidationStoreRequest]) -> Response[ValidationCacheResponse]:
        return respond(request, await run(request, c.StoreValidation, world_id, body=data))

    @get("/validations/invariants", opt=needs(c.GetValidationInvariants))
    async def validation_invariants(self, request: Request, world_id: FromPath[str],
                                    strategy_id: FromQuery[str | None] = None
                                    ) -> Response[ValidationInvariantsReport]:
        """The reference's invariants report. Only ``fail_closed_violations`` can be found today: the other
        lists are computed from evaluation runs, which this daemon does not keep yet, so they are empty (see
        ``domain.invariants``). An unknown world is 404."""
        return respond(request, await run(request, c.GetValidationInvariants, world_id,
                                          strategy_id=checked_id(strategy_id, "strategy_id")))

    @delete("/validations/invariants", status_code=204, opt=needs(c.DeleteValidation), include_in_schema=False)
    async def delete_invariants_node(self, request: Request, world_id: FromPath[str],
                                     execution_domain: DomainQuery = None) -> Response[None]:
        """The static GET above would shadow the delete below for a node named ``invariants`` (405)."""
        return await _delete_validation(request, world_id, "invariants", execution_domain)

    @delete("/validations/{node_id:str}", status_code=204, opt=needs(c.DeleteValidation))
    async def delete_validation(self, request: Request, world_id: FromPath[str], node_id: FromPath[str],
                                execution_domain: DomainQuery = None) -> Response[None]:
        """No ``execution_domain``: every domain of the node."""
        return await _delete_validation(request, world_id, node_id, execution_domain)


async def _delete_validation(request: Request, world_id: str, node_id: str,
                             execution_domain: str | None) -> Response:
    return respond(request, await run(request, c.DeleteValidation, world_id,
                                      node_id=checked_path_id(node_id, "node_id"),
                                      execution_domain=execution_domain))
