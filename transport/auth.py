"""Authentication (bearer JWTs, opaque service tokens) and world-scoped roles for the HTTP edge.

Roles nest: ``owner`` (world and policy changes) > ``operator`` (apply, activation overrides, evidence)
> ``reader`` (every GET, evaluate). A token's roles claim is either a mapping ``{"w1": ["owner"],
"*": "reader"}`` or a list ``["owner:w1", "reader:*", "reader"]`` (a bare role means every world).
No token or a bad one is 401; a good token without the role is 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler

from messages.config import Auth

ROLES = {"reader": 1, "operator": 2, "owner": 3}
ALL_WORLDS = "*"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="worldservice"'}


@dataclass(frozen=True)
class Principal:
    subject: str
    grants: dict[str, int]  # world id (or "*") -> highest role rank

    def may(self, world_id: str | None, role: str) -> bool:
        rank = max(self.grants.get(ALL_WORLDS, 0), self.grants.get(world_id, 0) if world_id else 0)
        return rank >= ROLES[role]


def _unauthorized(detail: str) -> NotAuthorizedException:
    return NotAuthorizedException(detail=detail, headers=_CHALLENGE)


def _grant_pairs(claim: Any) -> Iterable[tuple[str, str]]:
    if isinstance(claim, dict):
        for world, roles in claim.items():
            for role in [roles] if isinstance(roles, str) else roles or []:
                yield str(world), str(role)
    elif isinstance(claim, list):
        for item in claim:
            role, _, world = str(item).partition(":")
            yield world or ALL_WORLDS, role


def grants_from(claim: Any) -> dict[str, int]:
    """Unknown role names grant nothing (fail closed) rather than failing the whole token."""
    grants: dict[str, int] = {}
    for world, role in _grant_pairs(claim):
        if role in ROLES:
            grants[world] = max(grants.get(world, 0), ROLES[role])
    return grants


class Authenticator:
    def __init__(self, auth: Auth) -> None:
        self._auth = auth
        self._jwt = auth.jwt
        if self._jwt is not None:
            self._key = self._jwt.secret if self._jwt.algorithm.startswith("HS") else self._jwt.public_key

    def authenticate(self, header_value: str | None) -> Principal:
        scheme, _, token = (header_value or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("missing bearer token")
        token = token.strip()
        for service_token in self._auth.tokens:
            if hmac.compare_digest(token.encode(), service_token.encode()):
                return Principal(subject="service", grants={ALL_WORLDS: ROLES[self._auth.service_role]})
        if self._jwt is None:
            raise _unauthorized("invalid token")
        return self._verified(token)

    def _verified(self, token: str) -> Principal:
        assert self._jwt is not None
        required = ["exp", "sub"] + [c for c, v in (("iss", self._jwt.issuer), ("aud", self._jwt.audience)) if v]
        try:
            claims = jwt.decode(token, self._key, algorithms=[self._jwt.algorithm], issuer=self._jwt.issuer,
                                audience=self._jwt.audience, leeway=self._jwt.leeway_s,
                                options={"require": required})
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"invalid token: {exc}") from None
        return Principal(subject=str(claims["sub"])[:256], grants=grants_from(claims.get(self._jwt.roles_claim)))


def authorize(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Litestar guard on every route: ``opt={"public": True}`` skips it, ``opt={"role": ...}`` names the
    role needed on the path's world (``reader`` by default); routes without a world id in the path check
    ``"*"``, unless ``opt={"world_in_body": True}`` (the handler checks) or ``opt={"authenticated": True}``
    (any valid token; the handler filters what it shows)."""
    authenticator: Authenticator | None = connection.app.state.authenticator
    if authenticator is None or handler.opt.get("public"):
        return
    principal = authenticator.authenticate(connection.headers.get(authenticator_header(connection)))
    connection.state.principal = principal
    if handler.opt.get("world_in_body") or handler.opt.get("authenticated"):
        return
    role = handler.opt.get("role", "reader")
    if not principal.may(connection.path_params.get("world_id", ALL_WORLDS), role):
        raise PermissionDeniedException(detail=f"role {role!r} required on this world")


def authenticator_header(connection: ASGIConnection) -> str:
    return connection.app.state.auth_header


def require(connection: ASGIConnection, world_id: str, role: str) -> None:
    """For handlers whose world is in the body (create): the same rule as the guard's."""
    principal: Principal | None = getattr(connection.state, "principal", None)
    if principal is not None and not principal.may(world_id, role):
        raise PermissionDeniedException(detail=f"role {role!r} required on this world")
