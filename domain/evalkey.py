"""EvalKey: the one formula naming the context a validation was made in (spec §4-B).

``blake3:`` + blake3 over NodeID, WorldID, ExecutionDomain (normalised), ContractID, DatasetFingerprint,
CodeVersion, ResourcePolicy, in that order. The components are encoded as a JSON array of strings: JSON
quotes and escapes each one, so no component can swallow a separator and two different tuples never share
an encoding (the reference joined raw text with ``\\x1f`` or ``\\0``, and doubled the prefix in one backend).
"""

from __future__ import annotations

from domain.domains import normalise_domain
from domain.hashing import blake3_hex, canonical_json


def eval_key_material(node_id: str, world_id: str, execution_domain: str, contract_id: str,
                      dataset_fingerprint: str, code_version: str, resource_policy: str) -> bytes:
    """The exact bytes hashed; ``execution_domain`` must already be normalised."""
    return canonical_json([node_id, world_id, execution_domain, contract_id, dataset_fingerprint,
                           code_version, resource_policy])


def eval_key(node_id: str, world_id: str, execution_domain: str, contract_id: str, dataset_fingerprint: str,
             code_version: str, resource_policy: str) -> str:
    """Normalises the domain itself, so ``Live``, ``prod`` and ``live`` give one key."""
    domain = normalise_domain(execution_domain)
    return blake3_hex(eval_key_material(node_id, world_id, domain, contract_id, dataset_fingerprint,
                                        code_version, resource_policy))
