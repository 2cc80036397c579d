"""OpenAPI fuzzing: schemathesis generates requests for every operation of the spec the app serves
(``GET /openapi.json``) and sends them in-process (ASGI) to the Litestar app; no answer may be a server error,
nor carry a header a real server could not send.

The world ``w1`` is seeded (policy, default, bindings, decisions, activation, an apply run) and about half of
the generated ``world_id`` / ``version`` / ``run_id`` / ``topic`` path values and ``strategy_id`` / ``side``
query values are replaced by seeded ones, so the handlers behind the 404/422 front doors run too.

Each operation gets its own Hypothesis run of valid (positive) and invalid (negative) requests; every
failing operation is reported, not only the first one. Server errors raised at the edge are answered 500
by Litestar without a trace (the app runs with ``logging_config=None``), so an ``after_exception`` hook
keeps their tracebacks for the report; errors inside an actor are logged there (``command_failed``).

Why not ``@schema.parametrize()`` with ``schemathesis.pytest.from_fixture``: schemathesis 4.32 sets
``Node._nodeid``, which pytest 9.2 no longer has (AttributeError); an eager schema would need the app,
and so a running actor system, at import time.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance, not_a_server_error, response_schema_conformance, status_code_conformance,
)

from tests.conftest import Harness, make_config, start_harness, stop_harness

log = logging.getLogger("tests.openapi_fuzz")

WORLD = "w1"
RUN_ID = "seed-run"
SEEDED_PATH = {"world_id": WORLD, "version": 1, "run_id": RUN_ID, "topic": "activation"}
SEEDED_QUERY = {"strategy_id": "s1", "side": "long"}

# Per operation (valid and invalid requests mixed): 30 operations x 30 examples stay well under a minute.
FUZZ_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # same examples on every run: CI stays reproducible
    database=None,  # nothing saved from one run is replayed in the next
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


# What uvicorn refuses in a response header value (its httptools and h11 protocols alike): the in-process ASGI
# client takes such a header, a real server aborts the response after the handler has run (no reply at all).
_UNSENDABLE_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")


def headers_a_server_can_send(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    bad = {name: values for name, values in response.headers.items()
           if any(_UNSENDABLE_HEADER_VALUE.search(v) for v in values)}
    assert not bad, f"response header values uvicorn would refuse to send: {bad!r}"


def not_a_server_error_but_an_offered_mode(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """501 is the documented answer for a mode the service does not offer (rebalancing's ``hybrid``): a
    deliberate refusal the document lists, not a failure; any other 5xx is one."""
    if response.status_code == 501 and case.operation.responses.find_by_status_code(501) is not None:
        return
    not_a_server_error(ctx, response, case)


# Beyond "no server error": every answer is one the document lists for the operation, in the media type it
# lists, with a body its schema accepts; and no header a real server could not send.
CHECKS = [not_a_server_error_but_an_offered_mode, status_code_conformance, content_type_conformance, response_schema_conformance,
          headers_a_server_can_send]


@dataclass
class Fuzzed:
    harness: Harness
    app: Any  # the harness's app, for schemathesis: see _without_lifespan
    edge_errors: list[str] = field(default_factory=list)


def _without_lifespan(app: Any) -> Any:
    """The app as the daemon serves it (uvicorn with ``lifespan="off"``). schemathesis starts the lifespan of
    the app it is given, on an event loop of its own; a second lifespan of the harness's app would replace
    (and leak, unclosed: a ResourceWarning) the streams of the event emitter the TestClient's lifespan
    opened."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})

    return asgi


def _seed(h: Harness) -> None:
    """The world the seeded path values point at; again whenever a fuzzed DELETE removed it."""
    c = h.client
    if c.get(f"/worlds/{WORLD}").status_code == 200:
        return
    steps = [
        c.post("/worlds", json={"id": WORLD, "name": "fuzz"}),
        c.post(f"/worlds/{WORLD}/policies", json={"preset": "moderate"}),
        c.post(f"/worlds/{WORLD}/set-default", json={"version": 1}),
        c.post(f"/worlds/{WORLD}/bindings", json={"strategies": ["s1", "s2"]}),
        c.post(f"/worlds/{WORLD}/decisions", json={"strategies": ["s1"]}),
        c.put(f"/worlds/{WORLD}/activation", json={"strategy_id": "s1", "side": "long", "active": True,
                                                   "weight": 0.5}),
        # A repeated run id answers the first outcome (200), so a re-seed keeps working.
        c.post(f"/worlds/{WORLD}/apply", json={"run_id": RUN_ID, "plan": {"activate": ["s2"]}}),
    ]
    for r in steps:
        assert r.status_code < 300, (r.request.method, str(r.request.url), r.status_code, r.text)


@pytest.fixture
def fuzzed(tmp_path: Path) -> Iterator[Fuzzed]:
    harness = start_harness(make_config(tmp_path))
    fz = Fuzzed(harness=harness, app=_without_lifespan(harness.client.app))

    async def keep_traceback(exc: Exception, scope: Any) -> None:
        if getattr(exc, "status_code", 500) >= 500:
            text = "".join(traceback.format_exception(exc))
            query = scope.get("query_string", b"").decode("latin-1")
            fz.edge_errors.append(f"{scope.get('method')} {scope.get('path')}?{query}\n{text}")
            log.error("unhandled exception in %s %s\n%s", scope.get("method"), scope.get("path"), text)

    harness.client.app.after_exception.append(keep_traceback)
    try:
        _seed(harness)
        yield fz
    finally:
        schemathesis.python.asgi.shutdown_lifespans()  # before the actors: no request may be in flight
        stop_harness(harness)


def _sometimes_seeded(generated: dict[str, Any] | None, seeded: dict[str, Any]) -> st.SearchStrategy:
    """The generated values, or (as often) the same with the names ``seeded`` knows set to existing data."""
    known = {k: seeded[k] for k in generated or {} if k in seeded}
    if not known:
        return st.just(generated)
    return st.sampled_from([generated, {**generated, **known}])


def _schema(app: Any) -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy:
        return _sometimes_seeded(path_parameters, SEEDED_PATH)

    @schema.hook
    def flatmap_query(context: Any, query: dict[str, Any] | None) -> st.SearchStrategy:
        return _sometimes_seeded(query, SEEDED_QUERY)

    return schema


def _fuzz(operation: Any, statuses: dict[int, int]) -> None:
    # Valid and invalid requests in one run, as schemathesis's own runner mixes them; a negative draw for an
    # operation with nothing to negate (a bare string path parameter) is rejected and a positive one is tried.
    cases = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                      operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @FUZZ_SETTINGS
    @given(case=cases)
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=CHECKS)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    run()


def test_no_server_errors(fuzzed: Fuzzed) -> None:
    schema = _schema(fuzzed.app)
    failures: list[str] = []
    summary: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    # A fixed order (the spec's is not: /health and /healthz swap between runs), DELETE last.
    for operation in sorted(operations, key=lambda op: (op.method.upper() == "DELETE", op.path, op.method)):
        _seed(fuzzed.harness)
        statuses: dict[int, int] = {}
        started = time.perf_counter()
        try:
            _fuzz(operation, statuses)
        # schemathesis's FailureGroup is a BaseExceptionGroup; collect every operation's, then fail once
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001
            failures.append(f"{operation.label}:\n{exc}")
        elapsed = time.perf_counter() - started
        summary.append(f"{operation.label} {elapsed:.2f}s {dict(sorted(statuses.items()))}")
    print("\n".join(summary))  # shown with -rP / on failure: which statuses each operation reached
    assert not failures, "\n\n".join(failures + fuzzed.edge_errors)
    assert not fuzzed.edge_errors, "\n\n".join(fuzzed.edge_errors)
