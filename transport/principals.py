"""Who sent a command: bearer tokens (JWTs, opaque service tokens) verified into principals with world
roles, and the role check every edge makes before a command reaches an actor.

Transport-neutral: refusals are ``Unauthenticated`` (no token or a bad one; HTTP answers 401) and
``Forbidden`` (a good token without the role; HTTP answers 403), which each edge maps to its own shape.
Roles nest: ``owner`` > ``operator`` > ``reader``. A token's roles claim is either a mapping ``{"w1":
["owner"], "*": "reader"}`` or a list ``["owner:w1", "reader:*", "reader"]`` (a bare role means every
world). What each command kind needs is ``messages.commands.REQUIRED_ROLE``; a service token (a Gateway's)
may also send the kinds of ``messages.commands.SERVICE_KINDS`` (its job: pushing risk snapshots) whatever
its ``auth.service_role``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


from messages.commands import REQUIRED_ROLE, SERVICE_KINDS, Command, command_worlds
from config import Auth

ROLES = {"reader": 1, "operator": 2, "owner": 3}
ALL_WORLDS = "*"


class AuthRefused(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthenticated(AuthRefused):
    """No bearer token, or one that does not verify."""


class Forbidden(AuthRefused):
    """A verified token without the role the command needs."""


@dataclass(frozen=True)
class Principal:
    subject: str
    grants: dict[str, int]  # world id (or "*") -> highest role rank
    service: bool = False  # one of ``auth.tokens`` (a Gateway), not a user's JWT

    def may(self, world_id: str | None, role: str) -> bool:
        rank = max(self.grants.get(ALL_WORLDS, 0), self.grants.get(world_id, 0) if world_id else 0)
        return rank >= ROLES[role]


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
        """``header_value`` is the whole header (``Bearer <token>``); raises ``Unauthenticated``."""
        scheme, _, token = (header_value or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("missing bearer token")
        token = token.strip()
        for service_token in self._auth.tokens:
            if hmac.compare_digest(token.encode(), service_token.encode()):
                return Principal(subject="service", grants={ALL_WORLDS: ROLES[self._auth.service_role]},
                                 service=True)
        if self._jwt is None:
            raise Unauthenticated("invalid token")
        return self._verified(token)

    def _verified(self, token: str) -> Principal:
        assert self._jwt is not None
        import jwt  # PyJWT with cryptography: ~40 ms of start-up, paid only where JWTs are accepted

        required = ["exp", "sub"] + [c for c, v in (("iss", self._jwt.issuer), ("aud", self._jwt.audience)) if v]
        try:
            claims = jwt.decode(token, self._key, algorithms=[self._jwt.algorithm], issuer=self._jwt.issuer,
                                audience=self._jwt.audience, leeway=self._jwt.leeway_s,
                                options={"require": required})
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        return Principal(subject=str(claims["sub"])[:256], grants=grants_from(claims.get(self._jwt.roles_claim)))


def require_role(principal: Principal, world_id: str, role: str) -> None:
    if not principal.may(world_id, role):
        raise Forbidden(f"role {role!r} required on this world")


def authorize_command(principal: Principal, command: Command) -> None:
    """Raises ``Forbidden`` unless the principal holds the kind's role on every world the command acts on.
    A kind without a declared role is refused: an edge must never pass along what it cannot classify."""
    role = REQUIRED_ROLE.get(type(command))
    if role is None:
        raise Forbidden(f"{type(command).__name__} is not accepted from callers")
    if principal.service and type(command) in SERVICE_KINDS:
        return
    for world_id in command_worlds(command):
        if not principal.may(world_id, role):
            raise Forbidden(f"role {role!r} required on world {world_id!r}")
