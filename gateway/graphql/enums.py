"""The shared code enums (`schema.codes`), registered as GraphQL enums under their own names.

Registration marks the classes themselves, so the rest of the GraphQL layer annotates with
the `schema.codes` classes re-exported here; import them from this module so that the
registration has happened first. The `Dimension` enum's description is its registry's
(`schema.dimensions`): a new dimension documents itself.
"""

from __future__ import annotations

import strawberry

from gateway.latency import LatencyClass
from schema import dimensions
from schema.codes import (
    AgeAt,
    Dimension,
    EventDomain,
    Jurisdiction,
    NodeStatus,
    NoiseLevel,
    Occurrence,
    Sex,
    ValueStatus,
    VisitType,
    Vocabulary,
)
from schema.variables import PerPerson, VariableSource

strawberry.enum(Jurisdiction, description="EU/EEA member state, ISO 3166-1 alpha-2 (Greece: GR).")
strawberry.enum(
    Vocabulary,
    description="Code system of a criterion (an OMOP vocabulary). Codes are normalised: case "
    "and spaces do not matter, and an ICD10 code may be written with or without its dot "
    "(e11.9, E119 and E11.9 are one code). ICD10 also finds the national modifications a node "
    "holds ICD-10 under (CIM10, ICD10GM, ICD10CM); each node says which it used.",
)
strawberry.enum(Sex)
strawberry.enum(
    AgeAt,
    description="When a person's age is taken, in whole years (year of that date minus year "
    "of birth). REFERENCE_DATE: the question's reference date, the same for everyone. "
    "INDEX_EVENT: each person's index date: the index's (see cohort's index) or, without "
    "one, their first event matching the criteria's first top-level condition (else drug, "
    "else measurement) within its window.",
)
strawberry.enum(
    EventDomain,
    description="Where an event is recorded: CONDITION, DRUG, MEASUREMENT (by codes), VISIT "
    "(a visit, by its type), DEATH (the date of death, OMOP death).",
)
strawberry.enum(
    VisitType,
    description="The type of visit an event belongs to (OMOP standard visit concepts): "
    "INPATIENT (9201), EMERGENCY (9203), OUTPATIENT (9202), INPATIENT_OR_EMERGENCY; an "
    "emergency room visit followed by an admission (262) is both INPATIENT and EMERGENCY.",
)
strawberry.enum(
    Occurrence,
    description="Which qualifying events of an index are candidates: FIRST each person's "
    "earliest, ALL every one.",
)
strawberry.enum(Dimension, description=dimensions.description())
strawberry.enum(ValueStatus, description="How a released number relates to the truth.")
strawberry.enum(
    NodeStatus,
    description="What happened at one node. OK: it answered with counts. DENIED: its legal "
    "policy refused (see reasons). UNKNOWN_CODE: the question names a code its vocabulary does "
    "not hold (see unknownCodes). TIMEOUT, UNAVAILABLE, ERROR, REJECTED: it failed.",
)
strawberry.enum(
    NoiseLevel,
    description="How much noise a question asks for: COARSE has twice the standard deviation "
    "and costs each person counted a quarter of the privacy budget (for exploring).",
)
strawberry.enum(
    VariableSource,
    description="Where a numeric variable's value comes from. AGE: whole years at the age "
    "date (see ageAt). MEASUREMENT: a LOINC measurement's value, one per person (perPerson).",
)
strawberry.enum(
    PerPerson,
    description="Which of a person's measurements in the window is their value: the first "
    "or last by date, or the mean of them.",
)
strawberry.enum(
    LatencyClass,
    description="How long the gateway waits for a node: INTERACTIVE (the default) up to the "
    "interactive node timeout, BATCH (a hub on a distributed engine such as Spark) up to the "
    "longer batch node timeout; a question's deadline bounds both.",
)

__all__ = [
    "AgeAt",
    "Dimension",
    "EventDomain",
    "Jurisdiction",
    "LatencyClass",
    "NodeStatus",
    "NoiseLevel",
    "Occurrence",
    "PerPerson",
    "Sex",
    "ValueStatus",
    "VariableSource",
    "VisitType",
    "Vocabulary",
]
