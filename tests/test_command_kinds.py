"""The one declaration of the command kinds (``messages.kinds``): every command is declared, every declared
kind has exactly one server, and the edges' unions, role table and log rule follow the declarations."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest

from actors.risk_hub import RiskHub
from actors.world import WorldActor
from domain.handle import DOMAIN_KINDS
from messages import commands as c
from messages.kinds import declared, kind_of

# Served outside the domain tables and the world actor's handler tables: the allocation release in
# ``WorldActor.on_receive`` (never through loading), ``POST /allocations`` by the allocation coordinator.
_SERVED_ELSEWHERE = {c.ReleaseAllocation, c.UpsertAllocations}


def _subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in {direct, *_subclasses(direct)}}


def test_every_command_struct_is_declared_once():
    assert _subclasses(c.Command) == {k.type for k in declared()}


def test_every_declared_kind_has_exactly_one_server():
    servers = [DOMAIN_KINDS, set(WorldActor._APPLY_HANDLERS), set(WorldActor._STORAGE_READS), RiskHub.SERVES,
               _SERVED_ELSEWHERE]
    served = [kind for server in servers for kind in server]
    assert sorted(k.__name__ for k in served) == sorted(k.type.__name__ for k in declared())


def test_the_edges_decode_exactly_the_external_kinds():
    for kind in declared():
        raw = msgspec.json.encode({"kind": kind.tag, "world_id": "w"})
        if kind.family == "internal":
            with pytest.raises(msgspec.ValidationError, match="Invalid value"):
                c.external_command_decoder.decode(raw)
        else:
            try:
                assert type(c.external_command_decoder.decode(raw)) is kind.type
            except msgspec.ValidationError as exc:  # the tag was taken; only its fields are missing
                assert "missing required field" in str(exc)
    assert set(get_args(c.InternalCommand)) == {k.type for k in declared("internal")}


def test_roles_logging_and_the_apply_block_follow_the_declarations():
    assert all(c.REQUIRED_ROLE[k.type] == k.role for k in declared("mutation", "query"))
    assert c.REQUIRED_ROLE[c.RecordRebalance] == "operator" and c.ApplyTick not in c.REQUIRED_ROLE
    assert {k.type for k in declared() if k.blocked_during_apply} == {
        c.PutActivation, c.SetDecisions, c.DeleteWorld, c.PutEdgeOverride}
    assert not kind_of(c.GetWorld).logged and kind_of(c.PutActivation).logged
    assert not any(k.logged for k in declared("internal") if k.type is not c.RecordRebalance)
