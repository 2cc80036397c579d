"""The one declaration of every command kind: what family it is, who may send it, whether it is logged and
whether an open apply run blocks it, and which refusals (``messages.errors.Refusal``) it can answer.

Each command Struct in ``messages.commands`` carries its declaration as a decorator (``@mutation("owner")``,
``@query()``, ``@internal()``); the unions an edge decodes, the role table, the log rule and the apply
block are derived from the registry here, and ``domain``/``actors`` register their handlers against it (a
test fails for a kind nobody handles). The refusals are what the OpenAPI document lists per route
(``transport.openapi``, through ``actors.bridge.STATUS``). This module imports nothing of the daemon but the
refusal words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union

from messages.errors import Refusal

Family = Literal["mutation", "query", "internal"]
Role = Literal["reader", "operator", "owner"]

T = TypeVar("T", bound=type)


@dataclass(frozen=True, slots=True)
class CommandKind:
    type: type
    family: Family  # mutation/query: a caller may send it; internal: only the daemon itself
    role: Role | None  # the least role a caller needs on the command's worlds; None: no caller may send it
    logged: bool  # one ``command`` log line per answer
    blocked_during_apply: bool  # refused while the world has an open apply run (its freeze must hold)
    service: bool = False  # a Gateway's service token may send it, whatever ``auth.service_role`` grants
    declared_refusals: frozenset[Refusal] = frozenset()  # what its rules refuse with, beyond the common ones
    new_world: bool = False  # it creates its world, so an unknown world is not a refusal of it

    @property
    def refusals(self) -> frozenset[Refusal]:
        """Every refusal it can answer: its own, plus what any command meets on its way: an unknown world
        (``require_world``), storage or its actor not there (and a draining instance), and, for a change, a
        reused ``Idempotency-Key`` with another body or the freeze of an open apply run."""
        common = {Refusal.UNAVAILABLE} | (set() if self.new_world else {Refusal.NOT_FOUND})
        if self.family == "mutation" or self.blocked_during_apply:
            common.add(Refusal.CONFLICT)
        return self.declared_refusals | common

    @property
    def tag(self) -> str:
        return self.type.__struct_config__.tag  # type: ignore[attr-defined, no-any-return]

    @property
    def changes_world(self) -> bool:
        """Served as a mutation (in order, persisted, replayable by command id), not as a read."""
        return self.family != "query"


_KINDS: dict[type, CommandKind] = {}


def _declare(family: Family, role: Role | None, logged: bool, blocked: bool, refusals: tuple[Refusal, ...],
             **more: bool) -> Callable[[T], T]:
    def register(cls: T) -> T:
        if cls in _KINDS:
            raise TypeError(f"{cls.__name__} is declared twice")
        _KINDS[cls] = CommandKind(type=cls, family=family, role=role, logged=logged, blocked_during_apply=blocked,
                                  declared_refusals=frozenset(refusals), **more)
        return cls
    return register


def mutation(role: Role, *, blocked_during_apply: bool = False, service: bool = False,
             refusals: tuple[Refusal, ...] = (), new_world: bool = False) -> Callable[[T], T]:
    """A change a caller may send (HTTP, the command topic, the CLI); logged. ``service``: what a Gateway
    does as part of its job (pushing risk snapshots), so its service token may send it even when
    ``auth.service_role`` is only ``reader``; other callers still need ``role``. ``refusals``: what its rules
    refuse with beyond the common ones (``CommandKind.refusals``)."""
    return _declare("mutation", role, True, blocked_during_apply, refusals, service=service, new_world=new_world)


def query(role: Role = "reader", *, refusals: tuple[Refusal, ...] = ()) -> Callable[[T], T]:
    """A read a caller may send, answered from the world's state in order with its writes; not logged."""
    return _declare("query", role, False, False, refusals)


def internal(*, role: Role | None = None, logged: bool = False,
             refusals: tuple[Refusal, ...] = ()) -> Callable[[T], T]:
    """Sent only by the daemon itself (timers, the ACK consumer, the allocation coordinator) or derived by an
    edge from a plan it computed; no edge decodes it from a caller's bytes. ``role``: what a caller needs
    on the world for the edge to derive it (``/rebalancing/apply``)."""
    return _declare("internal", role, logged, False, refusals)


def kind_of(command: Any) -> CommandKind:
    """The declaration of a command (or a command type). ``KeyError`` for an undeclared one."""
    return _KINDS[command if isinstance(command, type) else type(command)]


def declared(*families: Family) -> list[CommandKind]:
    """Every declared kind of ``families`` (all when none), in declaration order."""
    return [k for k in _KINDS.values() if not families or k.family in families]


def union(*families: Family) -> Any:
    """The tagged union of the kinds of ``families`` (for a decoder)."""
    return Union[tuple(k.type for k in declared(*families))]  # noqa: UP007 - built at runtime
