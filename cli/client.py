"""The HTTP side of the CLI: where the daemon is, one request, and the three ways a call ends (an answer,
a refusal with the daemon's ``detail``, no daemon)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from config import ConfigError, load_config

DEFAULT_URL = "http://127.0.0.1:8080"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class Refused(Exception):
    """The daemon answered with an error status; ``detail`` is its own wording."""

    def __init__(self, status: int, detail: str, response: httpx.Response) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail, self.response = status, detail, response


class Unreachable(Exception):
    """No answer at all: refused connection, DNS failure, timeout."""


class UsageProblem(Exception):
    """Bad input caught before any request (a file that does not parse, a malformed ``key=value``)."""


def detail_of(response: httpx.Response) -> str:
    """The daemon's ``detail`` as one readable string: a validation list becomes ``loc: msg`` items, a coded
    detail ``code: message``; a body that is not JSON is quoted as it came."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        return "; ".join(_issue(item) for item in detail)
    if isinstance(detail, dict) and {"code", "message"} <= detail.keys():
        return f"{detail['code']}: {detail['message']}"
    return detail if isinstance(detail, str) else json.dumps(detail)


def _issue(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    loc = ".".join(str(part) for part in item.get("loc") or [])
    return f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg", item))


def resolve_target(url: str | None, token: str | None, config_path: str | None) -> tuple[str, str | None]:
    """``--url``/``--token`` (or their environment variables, which typer folds in) win; otherwise the
    config file's listen address and its first service token; otherwise the default address."""
    if url and (token or not config_path):
        return url.rstrip("/"), token
    if config_path is None:
        return DEFAULT_URL, token
    try:
        config = load_config(config_path, environ={})
    except (ConfigError, OSError) as exc:
        raise UsageProblem(f"cannot read {config_path}: {exc}") from None
    bind = config.server.bind
    host = "127.0.0.1" if bind.host in ("0.0.0.0", "::", "") else bind.host
    tokens = config.server.auth.tokens
    return (url or f"http://{host}:{bind.port}").rstrip("/"), token or (tokens[0] if tokens else None)


@dataclass
class Api:
    """One daemon. Every call answers the ``httpx.Response`` of a 2xx/3xx answer, or raises."""

    url: str
    token: str | None = None
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout_s)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach the daemon at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise Refused(response.status_code, detail_of(response), response)
        return response

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def send(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.call(method, path, json=body, **kwargs)

    def close(self) -> None:
        self._client.close()
