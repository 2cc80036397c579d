"""The HTTP edge's authentication: a Litestar guard over ``transport.principals``.

Verification and the role rules are transport-neutral (the Kafka command intake uses the same ones); this
module maps their refusals to HTTP: no token or a bad one is 401 with a ``WWW-Authenticate`` challenge, a
good token without the role is 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler

from messages.commands import REQUIRED_ROLE, SERVICE_KINDS, Command
from transport.principals import (
    ALL_WORLDS, Authenticator, Forbidden, Principal, Unauthenticated, authorize_command, require_role,
)

__all__ = ["Authenticator", "Principal", "authorize", "needs", "require", "require_command"]
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="worldservice"'}


def needs(command_type: type[Command]) -> dict[str, Any]:
    """A route's ``opt``: the command kind it sends (whose declared refusals the OpenAPI document lists), the
    role that kind needs, from the one table both edges use, and whether a service token may send it
    whatever its role."""
    return {"role": REQUIRED_ROLE[command_type], "service": command_type in SERVICE_KINDS,
            "sends": (command_type,)}


def authorize(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Litestar guard on every route: ``opt={"public": True}`` skips it, ``opt={"role": ...}`` names the
    role needed on the path's world (``reader`` by default); routes without a world id in the path check
    ``"*"``, unless ``opt={"world_in_body": True}`` (the handler checks) or ``opt={"authenticated": True}``
    (any valid token; the handler filters what it shows). ``opt={"service": True}``: a service token
    passes whatever its role (``needs`` sets it from the command kind)."""
    authenticator: Authenticator | None = connection.app.state.authenticator
    if authenticator is None or handler.opt.get("public"):
        return
    try:
        principal = authenticator.authenticate(connection.headers.get(connection.app.state.auth_header))
    except Unauthenticated as exc:
        raise NotAuthorizedException(detail=exc.detail, headers=_CHALLENGE) from None
    connection.state.principal = principal
    if handler.opt.get("world_in_body") or handler.opt.get("authenticated"):
        return
    if principal.service and handler.opt.get("service"):
        return
    _permitted(require_role, principal, connection.path_params.get("world_id", ALL_WORLDS),
               handler.opt.get("role", "reader"))


def require(connection: ASGIConnection, world_id: str, role: str) -> None:
    """For handlers whose worlds are in the body (``/rebalancing/apply``): the same rule as the guard's."""
    principal: Principal | None = getattr(connection.state, "principal", None)
    if principal is not None:
        _permitted(require_role, principal, world_id, role)


def require_command(connection: ASGIConnection, command: Command) -> None:
    """Before any command leaves the edge: its kind's role on every world it acts on (with auth on)."""
    principal: Principal | None = getattr(connection.state, "principal", None)
    if principal is not None:
        _permitted(authorize_command, principal, command)


def _permitted(check: Callable[..., None], *args: Any) -> None:
    try:
        check(*args)
    except Forbidden as exc:
        raise PermissionDeniedException(detail=exc.detail) from None
