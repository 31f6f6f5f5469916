"""What an ATLAS import says about the parts of a definition it does not translate: a refusal
for each part that would change who is counted (or that it cannot read), a note for each part
it leaves aside because it only shapes cohort periods. Each carries a stable code and the JSON
path of the element, written as ATLAS's own keys are (`PrimaryCriteria.CriteriaList[0].
ConditionOccurrence.ConditionTypeExclude`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class AtlasProblem(StrEnum):
    """Why a part of a definition is refused. Stable: scripts may switch on them."""

    # Not JSON, not a cohort definition, or a value of the wrong type.
    MALFORMED = "MALFORMED"
    # An element (a domain, a filter, a setting) outside the subset Tessera translates.
    UNSUPPORTED_ELEMENT = "UNSUPPORTED_ELEMENT"
    # A supported element with a value outside the subset (`PrimaryCriteriaLimit` "Last", an
    # occurrence count with `IsDistinct`, a visit concept that names no visit type, ...).
    UNSUPPORTED_VALUE = "UNSUPPORTED_VALUE"
    # A concept of a vocabulary the query model does not speak (RxNorm Extension, ICD9CM, ...).
    UNSUPPORTED_VOCABULARY = "UNSUPPORTED_VOCABULARY"
    # A concept ATLAS would match in no event's standard concept (a non-standard concept
    # without includeMapped), or one it would map (includeMapped): Tessera matches codes.
    UNSUPPORTED_CONCEPT = "UNSUPPORTED_CONCEPT"
    # `CodesetId` names no concept set of the definition, or an empty one.
    UNKNOWN_CONCEPT_SET = "UNKNOWN_CONCEPT_SET"
    # The translation exceeds a bound of the query model (codes per group, nesting, ...).
    OUT_OF_BOUNDS = "OUT_OF_BOUNDS"


@dataclass(frozen=True, slots=True)
class Refusal:
    """One part of a definition that is not translated, and why."""

    code: AtlasProblem
    path: str
    message: str

    def __str__(self) -> str:
        where = self.path or "(the definition)"
        return f"{self.code.value}: {where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Note:
    """A part of a definition left out of the translation because it does not change who is
    counted (cohort end dates, era collapsing, which of a person's events is kept)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"ignored: {self.path}: {self.message}"


class AtlasRefused(ValueError):
    """The definition has parts outside the subset Tessera translates: every one of them, in
    the order of the definition."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        self.refusals = tuple(refusals)
        super().__init__("; ".join(str(r) for r in self.refusals))


def json_path(parts: Sequence[str | int]) -> str:
    """`("PrimaryCriteria", "CriteriaList", 0, "ConditionOccurrence")` as
    `PrimaryCriteria.CriteriaList[0].ConditionOccurrence`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
