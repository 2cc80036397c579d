"""The OpenAPI document the daemon serves (``GET /openapi.json``), completed from the declarations that the
validation and the answers themselves come from, so the document cannot drift from what the daemon does.

Litestar writes the paths; three things are then taken from their one source instead of Litestar's guess:

- **Bodies**: every component that is a msgspec Struct of ``messages`` gets msgspec's own JSON Schema of it:
  the ``Meta`` constraints the decoder enforces (patterns, lengths, bounds, enums) and
  ``additionalProperties: false`` where unknown fields are refused. (Litestar drops a bound of 0, so it lost
  ``weight``'s minimum, and it never wrote ``additionalProperties``.)
- **Identifier parameters** (path and query): the type each name is checked against at the edge
  (``transport.edge.ID_PARAMETERS``).
- **Refusals**: each route names the command kinds it sends (``opt["sends"]``, from ``transport.auth.needs``)
  or, for a route that answers by itself, the refusals it can give (``opt["refusals"]``); each kind declares
  its refusals (``messages.kinds``) and ``actors.bridge.STATUS`` numbers them. Added to those: 401/403 where
  authentication applies, 422 with the validation body where anything is validated, and 504 where an actor
  is waited on. A response a route declares itself (a structured body, a route-local status) is kept.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

import messages
from actors.bridge import STATUS
from messages.errors import ErrorBody, Refusal, ValidationErrorBody
from messages.kinds import kind_of
from transport.edge import ID_PARAMETERS

REF = "#/components/schemas/{name}"
_METHODS = ("get", "put", "post", "delete", "patch")
# Why each refusal is answered, as the document says it.
_WHY: dict[Refusal, str] = {
    Refusal.INVALID: "the request cannot be understood as asked",
    Refusal.FORBIDDEN_BY_POLICY: "the world's policy refuses this caller",
    Refusal.NOT_FOUND: "unknown world, or the resource it names does not exist",
    Refusal.CONFLICT: "the world's state refuses it (exists already, an apply run in progress, a gate), or an "
                      "Idempotency-Key reused with another request",
    Refusal.PRECONDITION_FAILED: "the If-Match etag is not the current one",
    Refusal.UNPROCESSABLE: "well formed, but a rule rejects its content",
    Refusal.FAILED: "taken on and failed (an apply run rolled back)",
    Refusal.NOT_IMPLEMENTED: "a mode this service does not offer",
    Refusal.UPSTREAM_FAILED: "a system called on the caller's behalf failed",
    Refusal.UNAVAILABLE: "not now (storage, a stopped actor, a draining instance); a retry may succeed",
}
_UNAUTHENTICATED = "no token, or one that does not verify (with authentication on)"
_NO_ROLE = "the token lacks the role this needs on the world (with authentication on)"
_TIMEOUT = "the world did not answer in time; the outcome is unknown"
_INVALID_INPUT = "a parameter or the body fails validation"


def document(app: Litestar) -> dict[str, Any]:
    """The completed document, built once per app (the routes do not change after start)."""
    built = getattr(app.state, "openapi_document", None)
    if built is None:
        built = _complete(app)
        app.state.openapi_document = built
    return built


def _complete(app: Litestar) -> dict[str, Any]:
    # Litestar's examples are Structs: encoded the way a route encodes them, so the document is plain JSON.
    schema: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(app.openapi_schema.to_schema()))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(_struct_components([*components, ErrorBody.__name__, ValidationErrorBody.__name__]))
    handlers = _handlers(app)
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method in _METHODS:
                handler = handlers[(path, method.upper())]
                _typed_id_parameters(operation)
                operation["responses"] = _responses(handler, operation, operation.get("responses", {}))
    schema["paths"] = _any_of(schema.get("paths", {}))
    return schema


def _any_of(node: Any) -> Any:
    """A Python union is satisfied by any of its members, which may overlap (two envelopes that share their
    fields): ``anyOf``, as msgspec writes it, not Litestar's ``oneOf`` (exactly one)."""
    if isinstance(node, dict):
        return {("anyOf" if key == "oneOf" else key): _any_of(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_any_of(value) for value in node]
    return node


def _message_structs() -> dict[str, type]:
    """Every msgspec Struct of the ``messages`` package, by name (a component is named after its Struct)."""
    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(messages.__path__, "messages."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, msgspec.Struct) and value.__module__ == module.__name__:
                if found.setdefault(name, value) is not value:
                    raise TypeError(f"two message Structs are named {name}: their components would collide")
    return found


def _struct_components(names: list[str]) -> dict[str, Any]:
    structs = _message_structs()
    wanted = [structs[name] for name in dict.fromkeys(names) if name in structs]
    _, components = msgspec.json.schema_components(wanted, ref_template=REF)
    return components


def _handlers(app: Litestar) -> dict[tuple[str, str], HTTPRouteHandler]:
    found: dict[tuple[str, str], HTTPRouteHandler] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            for method in getattr(handler, "http_methods", ()):
                found[(route.path_format, method)] = handler
    return found


def _typed_id_parameters(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        checked = ID_PARAMETERS.get(parameter["name"]) if parameter.get("in") in ("path", "query") else None
        if checked is not None:
            parameter["schema"] = {**msgspec.json.schema(checked), **_described(parameter)}


def _described(parameter: dict[str, Any]) -> dict[str, Any]:
    """The route's own words about the parameter, kept over the type's generic description."""
    return {"description": parameter["description"]} if parameter.get("description") else {}


def _error(description: str, *bodies: type) -> dict[str, Any]:
    refs = [{"$ref": REF.format(name=body.__name__)} for body in bodies]
    schema = refs[0] if len(refs) == 1 else {"oneOf": refs}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def route_refusals(handler: HTTPRouteHandler) -> frozenset[Refusal]:
    """What the route can refuse with: its kinds' declared refusals and the ones it names itself."""
    kinds = handler.opt.get("sends", ())
    return frozenset().union(*(kind_of(k).refusals for k in kinds), handler.opt.get("refusals", ()))


def _validated(handler: HTTPRouteHandler) -> bool:
    """Anything the framework or the edge validates: a body, a path or a query parameter."""
    return any(name not in ("request", "self") for name in handler.parsed_fn_signature.parameters)


def _refused(handler: HTTPRouteHandler) -> dict[str, Any]:
    """One answer per status its refusals map to (``STATUS``), each saying which refusals it stands for."""
    refused: dict[int, list[Refusal]] = {}
    for refusal in sorted(route_refusals(handler)):
        refused.setdefault(STATUS[refusal], []).append(refusal)
    return {str(code): _error("; or ".join(_WHY[r] for r in reasons), ErrorBody) for code, reasons in refused.items()}


def _with_validation(added: dict[str, Any]) -> None:
    """422 is also the validation answer, whose body is a list of issues: either body then."""
    if "422" in added:
        added["422"] = _error(f"{_INVALID_INPUT}; or {added['422']['description']}", ErrorBody, ValidationErrorBody)
    else:
        added["422"] = _error(_INVALID_INPUT, ValidationErrorBody)


def _with_auth(added: dict[str, Any], opt: dict[str, Any]) -> None:
    if opt.get("public"):
        return
    added["401"] = _error(_UNAUTHENTICATED, ErrorBody)
    if not opt.get("authenticated"):  # any valid token passes those: no role is asked for
        policy = f"; or {added['403']['description']}" if "403" in added else ""
        added["403"] = _error(_NO_ROLE + policy, ErrorBody)


def _responses(handler: HTTPRouteHandler, operation: dict[str, Any], generated: dict[str, Any]) -> dict[str, Any]:
    declared = {str(code) for code in handler.responses or {}}
    # Litestar's own 400 says "Validation Exception": this edge answers such failures 422 (transport.errors).
    kept = {code: answer for code, answer in generated.items() if code != "400" or code in declared}
    for code in ("204", "304"):  # no body, so no media type (Litestar writes a JSON ``null`` schema)
        kept.get(code, {}).pop("content", None)
    added = _refused(handler)
    waits = bool(added)  # an actor is waited on (a world, the storage reader): its answer may come too late
    if _validated(handler):
        _with_validation(added)
    _with_auth(added, handler.opt)
    if waits:
        added["504"] = _error(_TIMEOUT, ErrorBody)
    merged = {**added, **kept}  # what the route declares itself wins (a structured body, its own words)
    return dict(sorted(merged.items()))
