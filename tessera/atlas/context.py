"""The state of one translation and how it reports: refusals and notes by JSON path, query
model parts built or refused, concept sets translated once each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from pydantic import ValidationError

from schema.codes import EventDomain, Sex, VisitType
from tessera.atlas import circe
from tessera.atlas.concept_sets import CodeSet, code_set, visit_type
from tessera.atlas.problems import AtlasProblem, Note, Refusal, json_path

Path = tuple[str | int, ...]
T = TypeVar("T")

# Circe's `Occurrence.Type`.
EXACTLY, AT_MOST, AT_LEAST = 0, 1, 2
# "At least 0 events": holds for everyone.
ALWAYS: Final[dict[str, Any]] = {}
# OMOP gender concepts.
GENDERS: Final = {8507: Sex.MALE, 8532: Sex.FEMALE}
DOMAINS: Final = {
    "condition_occurrence": EventDomain.CONDITION,
    "drug_exposure": EventDomain.DRUG,
    "measurement": EventDomain.MEASUREMENT,
    "visit_occurrence": EventDomain.VISIT,
    "death": EventDomain.DEATH,
}


def alias(model: type[circe.CirceModel], name: str) -> str:
    """The ATLAS key of a field of `model`."""
    key = model.model_fields[name].alias
    return key if key is not None else name


def empty_window(window: circe.Window) -> bool:
    """Whether a window has no days either side (ATLAS then bounds it by the observation
    period only: the note on `IgnoreObservationPeriod` says what that changes)."""
    return window.start.days is None and window.end.days is None and not circe.extras(window)


@dataclass
class TranslatorBase:
    """What every step of a translation shares: the definition, the refusals and notes so
    far, the concept sets already translated."""

    expression: circe.CohortExpression
    refusals: list[Refusal] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    _code_sets: dict[int, CodeSet | None] = field(default_factory=dict)
    # Where an index event's own age filter is (`Age` on a primary criterion without `First`).
    aged_index: Path | None = None

    # --- reporting --------------------------------------------------------------------------

    def refuse(self, code: AtlasProblem, path: Path, message: str) -> None:
        self.refusals.append(Refusal(code, json_path(path), message))

    def note(self, path: Path, message: str) -> None:
        found = Note(json_path(path), message)
        if found not in self.notes:
            self.notes.append(found)

    def refuse_extras(self, model: circe.CirceModel, path: Path, what: str) -> None:
        for key in circe.extras(model):
            self.refuse(
                AtlasProblem.UNSUPPORTED_ELEMENT,
                (*path, key),
                f"{key} is not in the subset of ATLAS {what} Tessera translates",
            )

    def build(self, make: Callable[[], T], path: Path) -> T | None:
        """A query model part, or None with its validation errors refused at `path`."""
        try:
            return make()
        except ValidationError as e:
            for error in e.errors():
                self.refuse(
                    AtlasProblem.OUT_OF_BOUNDS,
                    path,
                    str(error["msg"]).removeprefix("Value error, "),
                )
            return None

    # --- concept sets -----------------------------------------------------------------------

    def code_set(self, codeset_id: int, path: Path) -> CodeSet | None:
        if codeset_id not in self._code_sets:
            for i, concept_set in enumerate(self.expression.concept_sets):
                if concept_set.id == codeset_id:
                    before = len(self.refusals)
                    found = code_set(concept_set, ("ConceptSets", i), self.refusals)
                    self._code_sets[codeset_id] = found if len(self.refusals) == before else None
                    break
            else:
                self._code_sets[codeset_id] = None
                self.refuse(
                    AtlasProblem.UNKNOWN_CONCEPT_SET,
                    path,
                    f"no concept set of the definition has id {codeset_id}",
                )
        return self._code_sets[codeset_id]

    def visit_concepts(self, codeset_id: int, path: Path) -> VisitType | None:
        for i, concept_set in enumerate(self.expression.concept_sets):
            if concept_set.id == codeset_id:
                items = concept_set.expression.items
                others = [
                    k for k, item in enumerate(items) if item.concept.vocabulary_id != "Visit"
                ]
                for k in others:
                    self.refuse(
                        AtlasProblem.UNSUPPORTED_CONCEPT,
                        ("ConceptSets", i, "expression", "items", k, "concept", "VOCABULARY_ID"),
                        f"a visit is named by a standard visit concept (vocabulary 'Visit'), not "
                        f"{items[k].concept.vocabulary_id!r}",
                    )
                if others:
                    return None
                if any(item.include_descendants for item in items):
                    self.note(
                        ("ConceptSets", i),
                        "visit types are the standard visit concepts 9201, 9203, 9202 and 262; "
                        "other concepts a vocabulary release places under them (which OMOP "
                        "conventions do not use as a visit's concept) are not included",
                    )
                return visit_type(
                    [(c.concept.concept_id, c.include_descendants, c.is_excluded) for c in items],
                    json_path(("ConceptSets", i)),
                    self.refusals,
                )
        self.refuse(
            AtlasProblem.UNKNOWN_CONCEPT_SET,
            path,
            f"no concept set of the definition has id {codeset_id}",
        )
        return None
