"""Statements built once per dialect, and the row of each effect kind."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from domain.effects import PolicyVersion
from storage import schema as t


def policy_row(world_id: str, pv: PolicyVersion) -> dict[str, Any]:
    preset = {"preset": pv.preset, "preset_mode": pv.preset_mode, "preset_version": pv.preset_version,
              "preset_overrides": pv.preset_overrides}
    return {"world_id": world_id, "version": pv.version, "text": pv.text, "document": pv.document,
            "checksum": pv.checksum, "status": pv.status, "created_by": pv.created_by,
            "created_at": pv.created_at, "preset": preset}


class Statements:
    """Statements built once per dialect and executed with parameters only: constructing SQLAlchemy
    expressions per write cost more than the commit itself. Upserts are ``INSERT .. ON CONFLICT``, which
    SQLite and PostgreSQL both speak."""

    def __init__(self, dialect: str) -> None:
        insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        v = t.world_versions
        self.fence_insert = v.insert()
        self.fence_update = v.update().where(
            v.c.world_id == sa.bindparam("w"), v.c.row_version == sa.bindparam("expected")
        ).values(row_version=sa.bindparam("next_version"), activation_counter=sa.bindparam("counter"))
        self.upsert = {table: self._upsert(insert, table) for table in
                       (t.worlds, t.policies, t.decisions, t.activations, t.history, t.apply_runs,
                                     t.apply_acks, t.edge_overrides, t.allocation_runs, t.world_allocations,
                                     t.world_decisions)}
        a, e = t.activations, t.edge_overrides
        self.delete_activation = a.delete().where(a.c.world_id == sa.bindparam("w"),
                                                  a.c.strategy_id == sa.bindparam("sid"), a.c.side == sa.bindparam("side"))
        self.delete_edge = e.delete().where(e.c.world_id == sa.bindparam("w"), e.c.src == sa.bindparam("src"),
                                            e.c.dst == sa.bindparam("dst"))
        self.insert_command = t.processed_commands.insert()
        self.delete_bindings = t.bindings.delete().where(t.bindings.c.world_id == sa.bindparam("w"))
        self.insert_bindings = t.bindings.insert()
        self.insert_audit = t.audit_log.insert()
        self.insert_outbox = t.outbox.insert()
        # The committed rows' ids come back in parameter order, so the writer can hand them to the relay.
        self.insert_outbox_returning = t.outbox.insert().returning(t.outbox.c.id, sort_by_parameter_order=True)
        fences = t.world_versions
        self.fence_select = sa.select(fences.c.world_id, fences.c.row_version).where(
            fences.c.world_id.in_(sa.bindparam("worlds", expanding=True)))
        self.insert_decision = t.decision_history.insert()
        self.upsert_node = self._upsert(insert, t.world_nodes)
        self.upsert_validation = self._upsert(insert, t.validation_cache)
        n, v = t.world_nodes, t.validation_cache
        self.delete_node = n.delete().where(n.c.world_id == sa.bindparam("w"), n.c.node_id == sa.bindparam("node"),
                                            n.c.execution_domain == sa.bindparam("domain"))
        # Keyed by which scope is given: (node, domain), node only, or the whole world.
        self.delete_validations = {
            (True, True): v.delete().where(v.c.world_id == sa.bindparam("w"), v.c.node_id == sa.bindparam("node"),
                                           v.c.execution_domain == sa.bindparam("domain")),
            (True, False): v.delete().where(v.c.world_id == sa.bindparam("w"), v.c.node_id == sa.bindparam("node")),
            (False, False): v.delete().where(v.c.world_id == sa.bindparam("w")),
        }
        self.remove_world = [table.delete().where(column == sa.bindparam("w"))
                             for table, column in t.WORLD_STATE_TABLES.items()]

        # Deletes are the only statements whose order against the others matters: a batch's rows are
        # grouped into one executemany per statement between them.
        self.barriers = {id(stmt) for stmt in (self.delete_activation, self.delete_edge, self.delete_bindings,
                                               self.delete_node, *self.delete_validations.values(),
                                               *self.remove_world)}

    @staticmethod
    def _upsert(insert: Any, table: sa.Table) -> Any:
        stmt = insert(table)
        keys = [c.name for c in table.primary_key.columns]
        update = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        return stmt.on_conflict_do_update(index_elements=keys, set_=update)
