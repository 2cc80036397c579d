"""The rebalance executor ``POST /allocations`` calls with ``execute=true``: an HTTP endpoint, with a
timeout and retries on transport errors and 5xx (a 4xx is the executor refusing: not retried)."""

from __future__ import annotations

from typing import Any

import httpx


class ExecutorFailed(Exception):
    pass


class HttpExecutor:
    def __init__(self, url: str, timeout_s: float = 5.0, retries: int = 2,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._url = url
        self._retries = retries
        self._client = httpx.Client(timeout=timeout_s, transport=transport)

    def execute(self, snapshot: dict[str, Any]) -> Any:
        last: Exception | None = None
        for _ in range(self._retries + 1):
            try:
                response = self._client.post(self._url, json=snapshot)
            except httpx.TransportError as exc:
                last = exc
                continue
            if response.status_code >= 500:
                last = ExecutorFailed(f"executor answered {response.status_code}")
                continue
            if response.status_code >= 400:
                raise ExecutorFailed(f"executor refused the plan: {response.status_code}")
            return response.json() if response.content else None
        raise ExecutorFailed(str(last))

    def close(self) -> None:
        self._client.close()
