"""ATLAS concept sets as the query model's codes. ATLAS names concepts by their OMOP
`concept_id`, which differ from one vocabulary release to the next and from one CDM to another's
local concepts; Tessera names them by `(vocabulary, code)`, which every node resolves in its
own vocabulary tables. A concept set item becomes a `Code` when its vocabulary is one the query
model speaks and its concept is standard (ATLAS matches an event's standard concept only, so a
non-standard item matches nothing there, while Tessera would match it as a source code): every
other item is refused by its path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pydantic import ValidationError

from schema.codes import VisitType, Vocabulary
from schema.query import Code
from tessera.atlas.circe import CirceConceptSet, ConceptSetItem
from tessera.atlas.problems import AtlasProblem, Refusal, json_path

# OMOP vocabulary_id → the query model's vocabulary. National ICD-10 modifications and ICD-10
# itself are non-standard in OMOP (their events carry SNOMED standard concepts), so an ICD-10
# item of an ATLAS concept set matches no event there: it is refused as non-standard below.
VOCABULARIES: Final = {v.value: v for v in Vocabulary}

# The OMOP standard visit concepts (vocabulary "Visit") as the query model's visit types. A set
# of them names a type when it is exactly the concepts of that type (`schema.codes.VisitType`:
# 262, an admission through the emergency room, is both an inpatient and an emergency visit),
# with descendants or listed.
INPATIENT_VISIT, OUTPATIENT_VISIT, EMERGENCY_VISIT, EMERGENCY_AND_INPATIENT_VISIT = (
    9201,
    9202,
    9203,
    262,
)
VISIT_TYPES: Final[dict[frozenset[int], VisitType]] = {
    frozenset({INPATIENT_VISIT, EMERGENCY_AND_INPATIENT_VISIT}): VisitType.INPATIENT,
    frozenset({EMERGENCY_VISIT, EMERGENCY_AND_INPATIENT_VISIT}): VisitType.EMERGENCY,
    frozenset({OUTPATIENT_VISIT}): VisitType.OUTPATIENT,
    frozenset(
        {INPATIENT_VISIT, EMERGENCY_VISIT, EMERGENCY_AND_INPATIENT_VISIT}
    ): VisitType.INPATIENT_OR_EMERGENCY,
}
# What a visit concept brings with `includeDescendants` in the OMOP visit hierarchy: 262
# ("Emergency Room and Inpatient Visit") lies under both 9201 and 9203.
VISIT_DESCENDANTS: Final[dict[int, frozenset[int]]] = {
    INPATIENT_VISIT: frozenset({INPATIENT_VISIT, EMERGENCY_AND_INPATIENT_VISIT}),
    EMERGENCY_VISIT: frozenset({EMERGENCY_VISIT, EMERGENCY_AND_INPATIENT_VISIT}),
}


@dataclass(frozen=True, slots=True)
class CodeSet:
    """A concept set as codes: those it includes, and those it excludes (`isExcluded`)."""

    codes: tuple[Code, ...]
    excluded: tuple[Code, ...]


def _item_path(prefix: Sequence[str | int], index: int) -> list[str | int]:
    return [*prefix, "expression", "items", index]


def item_code(
    item: ConceptSetItem, path: Sequence[str | int], refusals: list[Refusal]
) -> Code | None:
    """The item as a code, or None with the reason appended to `refusals`."""
    concept = item.concept
    label = f"concept {concept.concept_id}" + (
        f" ({concept.concept_name})" if concept.concept_name else ""
    )
    if item.include_mapped:
        refusals.append(
            Refusal(
                AtlasProblem.UNSUPPORTED_CONCEPT,
                json_path([*path, "includeMapped"]),
                f"{label}: includeMapped adds the standard concepts ATLAS maps it to, which "
                "depend on the vocabulary release; list the standard concepts instead",
            )
        )
        return None
    vocabulary = VOCABULARIES.get(concept.vocabulary_id or "")
    if vocabulary is None:
        known = ", ".join(VOCABULARIES)
        refusals.append(
            Refusal(
                AtlasProblem.UNSUPPORTED_VOCABULARY,
                json_path([*path, "concept", "VOCABULARY_ID"]),
                f"{label}: vocabulary {concept.vocabulary_id!r} is not one Tessera's codes are "
                f"in ({known})",
            )
        )
        return None
    # A classification concept (ATC) is in no event's standard concept either, but its
    # descendants are: with them, ATLAS and Tessera match the same drugs.
    if concept.standard_concept != "S" and not (
        concept.standard_concept == "C" and item.include_descendants
    ):
        refusals.append(
            Refusal(
                AtlasProblem.UNSUPPORTED_CONCEPT,
                json_path([*path, "concept", "STANDARD_CONCEPT"]),
                f"{label} is not a standard concept (nor a classification with its "
                "descendants): ATLAS matches it in no event's standard concept, Tessera would "
                "match it as a source code",
            )
        )
        return None
    if not concept.concept_code:
        refusals.append(
            Refusal(
                AtlasProblem.MALFORMED,
                json_path([*path, "concept", "CONCEPT_CODE"]),
                f"{label} has no code: Tessera names concepts by vocabulary and code",
            )
        )
        return None
    try:
        return Code(
            vocabulary=vocabulary,
            code=concept.concept_code,
            descendants=item.include_descendants,
        )
    except ValidationError:
        refusals.append(
            Refusal(
                AtlasProblem.UNSUPPORTED_CONCEPT,
                json_path([*path, "concept", "CONCEPT_CODE"]),
                f"{label}: {concept.concept_code!r} is not a well-formed {vocabulary.value} code",
            )
        )
        return None


def code_set(
    concept_set: CirceConceptSet, path: Sequence[str | int], refusals: list[Refusal]
) -> CodeSet:
    """Every item of `concept_set` as a code (those that cannot be are refused)."""
    codes: list[Code] = []
    excluded: list[Code] = []
    for i, item in enumerate(concept_set.expression.items):
        code = item_code(item, _item_path(path, i), refusals)
        if code is not None:
            (excluded if item.is_excluded else codes).append(code)
    return CodeSet(tuple(dict.fromkeys(codes)), tuple(dict.fromkeys(excluded)))


def visit_type(
    concepts: Sequence[tuple[int, bool, bool]], path: str, refusals: list[Refusal]
) -> VisitType | None:
    """The visit type a set of visit concepts names: `(concept_id, descendants, excluded)`
    each. Only the standard visit concepts and their exact combinations have one."""
    ids: set[int] = set()
    for concept_id, descendants, excluded in concepts:
        if excluded:
            refusals.append(
                Refusal(
                    AtlasProblem.UNSUPPORTED_VALUE,
                    path,
                    f"visit concept {concept_id} is excluded: a visit type is a set of visits, "
                    "not a set less some",
                )
            )
            return None
        ids |= VISIT_DESCENDANTS.get(concept_id, frozenset()) if descendants else set()
        ids.add(concept_id)
    found = VISIT_TYPES.get(frozenset(ids))
    if found is None:
        names = ", ".join(f"{v.value} {sorted(k)}" for k, v in VISIT_TYPES.items())
        refusals.append(
            Refusal(
                AtlasProblem.UNSUPPORTED_VALUE,
                path,
                f"visit concepts {sorted(ids)} name no visit type Tessera has ({names})",
            )
        )
    return found
