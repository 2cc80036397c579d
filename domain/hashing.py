"""Content hashes: ``blake3:<hex>`` with exactly one prefix (the reference sometimes doubles it)."""

from __future__ import annotations

import json
from typing import Any

import blake3


def blake3_hex(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Compact, key-sorted JSON: the one encoding every checksum in the daemon is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def reference_json(value: Any) -> bytes:
    """``json.dumps(value, sort_keys=True)`` with default separators: the reference's state_hash input."""
    return json.dumps(value, sort_keys=True).encode()
