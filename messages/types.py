"""Constrained scalar types shared by every message family.

msgspec checks these constraints when it decodes or converts, never in a Struct constructor, so every
edge builds its commands through a decoder or ``msgspec.convert``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

# World ids are slugs: they appear in Redis keys, Kafka keys and URLs.
WorldId = Annotated[
    str,
    Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
         description="world slug: letters, digits, '.', '_', ':', '-'"),
]
# Strategy ids and similar free-form identifiers: non-empty, no surrounding whitespace, no control
# characters (they would end up inside etags, Kafka keys and log lines).
Identifier = Annotated[
    str, Meta(min_length=1, max_length=256, pattern=r"^[^\s\x00-\x1f\x7f]([^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$",
              description="non-empty identifier without control characters")
]
# NaN fails every comparison, so these bounds also keep NaN and inf out when a message is built by
# ``msgspec.convert`` from Python objects (JSON cannot spell them, and msgspec refuses 1e400 when decoding).
_FLOAT_MAX = 1.7976931348623157e308
Finite = Annotated[float, Meta(ge=-_FLOAT_MAX, le=_FLOAT_MAX, description="finite number")]
Weight = Annotated[float, Meta(ge=0.0, le=1.0, description="sizing weight in [0, 1]")]
PositiveVersion = Annotated[int, Meta(ge=1)]
Side = Literal["long", "short"]
EffectiveMode = Literal["validate", "compute-only", "paper", "live", "shadow"]
WorldStateName = Literal["ACTIVE", "SUSPENDED", "DELETED"]
