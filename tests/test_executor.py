"""The HTTP rebalance executor: retries transport errors and 5xx, never a 4xx, and gives up with an error."""

from __future__ import annotations

import httpx
import pytest

from transport.executor import ExecutorFailed, HttpExecutor


def _executor(answers: list[object]) -> tuple[HttpExecutor, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    return HttpExecutor("http://executor.test/run", timeout_s=1, retries=2, transport=httpx.MockTransport(handler)), seen


def test_retries_transport_errors_and_5xx_then_returns_the_answer() -> None:
    executor, seen = _executor([httpx.ConnectError("down"), httpx.Response(503), httpx.Response(200, json={"ok": 1})])
    assert executor.execute({"run": "r1"}) == {"ok": 1}
    assert len(seen) == 3 and seen[0].read() == b'{"run":"r1"}'


def test_a_refusal_is_not_retried_and_exhausted_retries_fail() -> None:
    executor, seen = _executor([httpx.Response(422, json={"detail": "no"})])
    with pytest.raises(ExecutorFailed, match="refused"):
        executor.execute({})
    assert len(seen) == 1
    executor, seen = _executor([httpx.Response(500)] * 3)
    with pytest.raises(ExecutorFailed, match="500"):
        executor.execute({})
    assert len(seen) == 3
