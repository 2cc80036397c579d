"""The OpenAPI document the daemon serves: every route lists the refusals its command kinds declare, each with
its error body; the constraints validation enforces are in the schema; and the daemon refuses what the
schema says is invalid (the fuzz test, tests/test_openapi_fuzz.py, checks every answer against it)."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from actors.bridge import STATUS
from messages.errors import Refusal
from messages.types import WorldId
from transport.http import Edge, create_app
from transport.openapi import document, route_refusals

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def served() -> tuple[Any, dict[str, Any]]:
    stand_in = SimpleNamespace(metrics=SimpleNamespace(registry=CollectorRegistry()))
    app = create_app(Edge(system=stand_in))
    return app, document(app)


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in schema["paths"].items()
            for method, op in item.items() if method in METHODS]


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else node


def _bodies(schema: dict[str, Any], answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The body schemas an answer may carry (each member of a union), resolved."""
    body = answer["content"]["application/json"]["schema"]
    return [_resolve(schema, member) for member in body.get("anyOf", [body])]


def _handlers(app: Any) -> dict[tuple[str, str], Any]:
    return {(route.path_format, method): handler for route in app.routes
            for handler in getattr(route, "route_handlers", ()) for method in getattr(handler, "http_methods", ())}


def test_every_route_lists_its_refusals_each_with_an_error_body(served: tuple[Any, dict[str, Any]]) -> None:
    app, schema = served
    handlers = _handlers(app)
    operations = _operations(schema)
    assert len(operations) > 60
    for method, path, op in operations:
        handler, responses = handlers[(path, method)], op["responses"]
        refusals = route_refusals(handler)
        # A route that reaches a world says what it may be refused with (its kinds, or its own declaration).
        if "{world_id}" in path or method != "GET":
            assert refusals, f"{method} {path}: no command kind or refusals declared (opt sends/refusals)"
        for refusal in refusals:
            assert str(STATUS[refusal]) in responses, f"{method} {path} does not list {refusal} ({STATUS[refusal]})"
        if "{world_id}" in path:
            assert "404" in responses and "503" in responses, f"{method} {path}: unknown world / unavailable"
        if not handler.opt.get("public"):
            assert "401" in responses, f"{method} {path}: authentication can apply"
        if any(p["in"] in ("path", "query") for p in op.get("parameters", [])) or "requestBody" in op:
            kinds = {tuple(b.get("required", [])) for b in _bodies(schema, responses["422"])}
            assert ("detail",) in kinds, f"{method} {path}: 422 without the validation body"
        own = {str(code) for code in handler.responses or {}}  # a route's own body (run-all's partial results)
        for code, answer in responses.items():
            if int(code) >= 400:  # every refusal has a JSON body; the derived ones carry their ``detail``
                bodies = _bodies(schema, answer)
                assert code in own or all("detail" in b["properties"] for b in bodies), f"{method} {path} {code}"


def test_refusals_follow_each_kinds_declaration(served: tuple[Any, dict[str, Any]]) -> None:
    _, schema = served
    paths = schema["paths"]
    assert "412" in paths["/worlds/{world_id}/activation"]["put"]["responses"]  # PutActivation: If-Match
    assert "409" in paths["/worlds/{world_id}/activation"]["put"]["responses"]  # blocked during apply
    assert "409" not in paths["/worlds/{world_id}"]["get"]["responses"]  # a read conflicts with nothing
    assert "404" not in paths["/worlds"]["post"]["responses"]  # creating a world: no unknown world
    coded = _bodies(schema, paths["/worlds/{world_id}/strategies/{strategy_id}/runs/{run_id}/metrics"]["get"]
                    ["responses"]["409"])
    assert coded[0]["title"] == "CodedErrorBody"  # a route's own structured body is kept
    assert STATUS[Refusal.UNAVAILABLE] == 503


def test_the_constraints_validation_enforces_are_in_the_schema(served: tuple[Any, dict[str, Any]]) -> None:
    _, schema = served
    components = schema["components"]["schemas"]
    world_pattern = msgspec.json.schema(WorldId)["pattern"]
    assert components["WorldCreate"]["properties"]["id"]["pattern"] == world_pattern
    assert components["WorldCreate"]["properties"]["id"]["maxLength"] == 128
    for method, path, op in _operations(schema):
        for parameter in op.get("parameters", []):
            if parameter["name"] == "world_id" and parameter["in"] == "path":
                assert parameter["schema"]["pattern"] == world_pattern, f"{method} {path}"
    weight = components["ActivationRequest"]["properties"]["weight"]
    assert (weight["minimum"], weight["maximum"]) == (0.0, 1.0)
    assert components["ActivationRequest"]["properties"]["side"]["enum"] == ["long", "short"]
    audit = {p["name"]: p["schema"] for p in schema["paths"]["/worlds/{world_id}/audit"]["get"]["parameters"]}
    assert (audit["limit"]["minimum"], audit["limit"]["maximum"]) == (1, 1000)
    # Every body Struct that refuses unknown fields says so, and only those.
    import messages.commands  # noqa: F401 - every message module is loaded by the app already
    structs = {cls.__name__: cls for cls in _struct_classes()}
    for name, component in components.items():
        if name in structs:
            forbids = structs[name].__struct_config__.forbid_unknown_fields
            assert (component.get("additionalProperties") is False) == forbids, name
    assert components["WorldCreate"]["additionalProperties"] is False


def _struct_classes() -> list[type]:
    found, todo = [], [msgspec.Struct]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("messages."):
                found.append(sub)
            todo.append(sub)
    return found


def _invalid_string(prop: dict[str, Any]) -> str:
    """A string the property's schema refuses: past ``maxLength``, or one its pattern does not match."""
    if "maxLength" in prop:
        return "a" * (prop["maxLength"] + 1)
    candidate = "-starts-with-a-dash"
    assert not re.search(prop["pattern"], candidate)
    return candidate


def test_the_daemon_refuses_what_the_schema_says_is_invalid(api, served: tuple[Any, dict[str, Any]]) -> None:  # type: ignore[no-untyped-def]
    _, schema = served
    components, c = schema["components"]["schemas"], api.client
    world_id = components["WorldCreate"]["properties"]["id"]
    for bad in (_invalid_string({"pattern": world_id["pattern"]}), _invalid_string(world_id)):
        r = c.post("/worlds", json={"id": bad})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "id"], r.text
        assert c.get(f"/worlds/{bad}").status_code == 422  # the path parameter has the same schema
    assert c.post("/worlds", json={"id": "w1", "surprise": 1}).json()["detail"][0]["type"] == "extra_forbidden"
    assert c.post("/worlds", json={"id": "w1"}).status_code == 201
    weight = components["ActivationRequest"]["properties"]["weight"]
    entry = {"strategy_id": "s1", "side": "long", "active": True}
    for bad in (weight["minimum"] - 0.25, weight["maximum"] + 0.25):
        r = c.put("/worlds/w1/activation", json={**entry, "weight": bad})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "weight"], r.text
    assert c.put("/worlds/w1/activation", json={**entry, "side": "up"}).status_code == 422  # not in the enum
    assert c.get("/worlds/w1/activation", params={"strategy_id": "s1", "side": "up"}).status_code == 422
    assert c.get("/worlds/w1/audit", params={"limit": 1001}).status_code == 422
    assert c.put("/worlds/w1/activation", json={**entry, "weight": weight["maximum"]}).status_code == 200
    state = c.get("/worlds/w1/activation").json()["state"]  # nothing refused was written; the valid one was
    assert {s: {side: e["weight"] for side, e in sides.items()} for s, sides in state.items()} == {"s1": {"long": 1.0}}
