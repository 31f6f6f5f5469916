"""The shared code enums (`schema.codes`), registered as GraphQL enums under their own names.

Registration marks the classes themselves, so the rest of the GraphQL layer annotates with
the `schema.codes` classes re-exported here; import them from this module so that the
registration has happened first.
"""

from __future__ import annotations

import strawberry

from schema.codes import (
    Dimension,
    Jurisdiction,
    NodeStatus,
    NoiseLevel,
    Sex,
    ValueStatus,
    Vocabulary,
)

strawberry.enum(Jurisdiction, description="EU/EEA member state, ISO 3166-1 alpha-2 (Greece: GR).")
strawberry.enum(Vocabulary, description="Code system of a criterion (an OMOP vocabulary).")
strawberry.enum(Sex)
strawberry.enum(Dimension, description="What a breakdown can group by: the published allow-list.")
strawberry.enum(ValueStatus, description="How a released number relates to the truth.")
strawberry.enum(NodeStatus, description="What happened at one node.")
strawberry.enum(
    NoiseLevel,
    description="How much noise a question asks for: COARSE has twice the standard deviation "
    "and costs each person counted a quarter of the privacy budget (for exploring).",
)

__all__ = [
    "Dimension",
    "Jurisdiction",
    "NodeStatus",
    "NoiseLevel",
    "Sex",
    "ValueStatus",
    "Vocabulary",
]
