"""An ATLAS cohort definition as the query model's index event and criteria.

ATLAS (OHDSI Circe) builds cohort *periods* — who enters when, and until when; Tessera counts
*persons*. The translation keeps everything that decides who is counted and when they entered
(their index date dates ages and `CALENDAR_YEAR`), refuses every element it cannot express
exactly, each by its JSON path, and notes the elements that only shape cohort periods (end
strategy, censoring, era collapsing). `docs/atlas-import.md` lists them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from schema.codes import Occurrence
from schema.query import (
    MAX_POST_OBSERVATION_DAYS,
    MAX_PRIOR_OBSERVATION_DAYS,
    MAX_RELATIVE_DAYS,
    CohortQuery,
    Criteria,
    EventSpec,
    IndexEvent,
    RelativeCriterion,
    RelativeWindow,
)
from tessera.atlas import circe
from tessera.atlas.context import Path
from tessera.atlas.groups import GroupTranslator
from tessera.atlas.problems import AtlasProblem, Note, Refusal


@dataclass(frozen=True, slots=True)
class AtlasCohort:
    """A definition's translation: what `CohortQuery.index` and `CohortQuery.criteria` take,
    and the notes on what was left aside (never anything that changes who is counted)."""

    index: IndexEvent
    criteria: Criteria
    notes: tuple[Note, ...] = ()

    def arguments(self) -> dict[str, Any]:
        """`{"index": ..., "criteria": ...}` as the GraphQL inputs of a cohort question
        (`IndexEventInput`, `CriteriaInput`): the client's `cohort(index=..., criteria=...)`."""
        from tessera.atlas.render import variables

        return variables(self)


class _Translation(GroupTranslator):
    """One definition's translation, top to bottom (`run`)."""

    # --- the whole definition ---------------------------------------------------------------

    def index(self) -> tuple[IndexEvent | None, Criteria | None]:
        """The index event, and the criteria the primary criteria add (ages, sex, no earlier
        event for `First`)."""
        primary = self.expression.primary_criteria
        path: Path = ("PrimaryCriteria",)
        self.refuse_extras(primary, path, "primary criteria")
        events: list[EventSpec] = []
        persons: list[Criteria] = []
        firsts: list[EventSpec] = []
        failed = False
        alternatives = primary.criteria_list
        if not alternatives:
            self.refuse(AtlasProblem.MALFORMED, (*path, "CriteriaList"), "no index event")
            return None, None
        for i, criterion in enumerate(alternatives):
            where: Path = (*path, "CriteriaList", i)
            found = self.event(criterion, where, at_index=True)
            if found is None:
                failed = True
                continue
            event, spec, spec_path = found
            events.append(event)
            age = None if spec.age is None else self.age(spec.age, (*spec_path, "Age"))
            sex = None if not spec.gender else self.sex(spec.gender, (*spec_path, "Gender"))
            if (spec.age is not None and age is None) or (spec.gender and sex is None):
                failed = True
            persons.append(Criteria(age=age, sex=sex))
            if spec.age is not None and not spec.first:
                self.aged_index = (*spec_path, "Age")
            if spec.first:
                if len(alternatives) > 1:
                    self.refuse(
                        AtlasProblem.UNSUPPORTED_VALUE,
                        (*spec_path, "First"),
                        "the first event of one of several alternative index events: Tessera "
                        "takes each person's first of them all (PrimaryCriteriaLimit First)",
                    )
                    failed = True
                # The person's first such event ever: no such event before it.
                bare = EventSpec(domain=event.domain, codes=event.codes, excluded=event.excluded)
                firsts.append(bare)
        if len({p for p in map(Criteria.model_dump_json, persons)}) > 1:
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                (*path, "CriteriaList"),
                "alternative index events with different ages or sexes: Tessera's criteria on "
                "the person hold for every index event",
            )
            failed = True
        limit = primary.primary_criteria_limit.type
        occurrence = {"first": Occurrence.FIRST, "all": Occurrence.ALL}.get(limit.lower())
        if occurrence is None:
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                (*path, "PrimaryCriteriaLimit", "Type"),
                f"{limit!r}: Tessera's index is each person's first qualifying event, or all of "
                "them",
            )
            failed = True
        if firsts:
            occurrence = Occurrence.FIRST
        window = primary.observation_window
        prior, post = window.prior_days, window.post_days
        for name, days, bound in (
            ("PriorDays", prior, MAX_PRIOR_OBSERVATION_DAYS),
            ("PostDays", post, MAX_POST_OBSERVATION_DAYS),
        ):
            if not 0 <= days <= bound:
                self.refuse(
                    AtlasProblem.OUT_OF_BOUNDS,
                    (*path, "ObservationWindow", name),
                    f"{days} days: Tessera asks for 0 to {bound} days of observation",
                )
                failed = True
        if failed or occurrence is None:
            return None, None
        index = self.build(
            lambda: IndexEvent(
                events=events,
                occurrence=occurrence,
                # Zero days too: ATLAS's index events always lie in an observation period.
                prior_observation_days=prior,
                post_observation_days=post or None,
            ),
            path,
        )
        relative = [
            RelativeCriterion(
                event=bare,
                window=RelativeWindow(start_days=-MAX_RELATIVE_DAYS, end_days=-1),
                exclude=True,
            )
            for bare in firsts
        ]
        person = persons[0] if persons else Criteria()
        return index, Criteria(age=person.age, sex=person.sex, relative=relative)

    def limits(self, has_rules: bool, occurrence: Occurrence) -> Occurrence | None:
        """The index occurrence once ATLAS's limits on qualified and included events are
        taken into account (`docs/atlas-import.md`, "Which event is the index")."""
        expression = self.expression
        qualified = expression.qualified_limit.type if expression.qualified_limit else "First"
        included = expression.expression_limit.type if expression.expression_limit else "First"
        limits = {"QualifiedLimit": qualified.lower(), "ExpressionLimit": included.lower()}
        unknown = [key for key, value in limits.items() if value not in ("first", "all", "last")]
        for key in unknown:
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE, (key, "Type"), "a limit is First, All or Last"
            )
        if unknown:
            return None
        if occurrence is Occurrence.FIRST:
            for key in limits:
                self.note((key,), "each person has one candidate index event: no limit changes it")
            return occurrence
        last = [key for key, value in limits.items() if value == "last"]
        for key in last:
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                (key, "Type"),
                "'Last' of several index events: Tessera dates each person by their earliest "
                "qualifying event",
            )
        if last:
            return None
        self.note(
            ("ExpressionLimit",),
            "which of a person's events enter the cohort: Tessera counts the person once, "
            "dated by the earliest",
        )
        if not has_rules or limits["QualifiedLimit"] == "all":
            self.note(("QualifiedLimit",), "does not change who is counted here")
            return occurrence
        additional = expression.additional_criteria
        if additional is None or additional.is_empty():
            # The inclusion rules are tested on each person's first index event only.
            return Occurrence.FIRST
        self.refuse(
            AtlasProblem.UNSUPPORTED_VALUE,
            ("QualifiedLimit", "Type"),
            f"{qualified!r} with all index events, additional criteria and inclusion rules: "
            "ATLAS tests the rules on each person's first event that meets the additional "
            "criteria only, which Tessera cannot say",
        )
        return None

    def periods(self) -> None:
        expression = self.expression
        if not circe.neutral(expression.end_strategy):
            self.note(("EndStrategy",), "cohort end dates do not change who is counted")
        if expression.censoring_criteria:
            self.note(
                ("CensoringCriteria",),
                "censoring events end cohort periods early, never remove a person",
            )
        if not circe.neutral(expression.collapse_settings):
            self.note(("CollapseSettings",), "merging a person's periods keeps the same persons")
        censor = expression.censor_window
        if censor is not None:
            self.refuse_extras(censor, ("CensorWindow",), "censor windows")
            if censor.start_date or censor.end_date:
                self.refuse(
                    AtlasProblem.UNSUPPORTED_ELEMENT,
                    ("CensorWindow",),
                    "a censor window drops the persons whose periods lie outside it: give the "
                    "index event's dates instead (OccurrenceStartDate)",
                )

    def run(self) -> AtlasCohort | None:
        expression = self.expression
        self.refuse_extras(expression, (), "cohort definitions")
        index, person = self.index()
        parts: list[Criteria | None] = [person]
        additional = expression.additional_criteria
        if additional is not None:
            parts.append(self.group(additional, ("AdditionalCriteria",)))
        for i, rule in enumerate(expression.inclusion_rules):
            where: Path = ("InclusionRules", i)
            self.refuse_extras(rule, where, "inclusion rules")
            parts.append(self.group(rule.expression, (*where, "expression")))
        self.periods()
        occurrence = None
        if index is not None:
            occurrence = self.limits(bool(expression.inclusion_rules), index.occurrence)
        if self.refusals or index is None or occurrence is None or None in parts:
            return None
        criteria = self.conjoin([p for p in parts if p is not None], ())
        if criteria is None:
            return None
        if self.aged_index is not None and occurrence is Occurrence.FIRST:
            if criteria.relative_count() or criteria.any_of:
                self.refuse(
                    AtlasProblem.UNSUPPORTED_VALUE,
                    self.aged_index,
                    "an age on the first index event with further criteria: ATLAS takes each "
                    "person's first event at those ages, Tessera takes the first event and "
                    "then asks the age",
                )
                return None
            # Alone, "the first event at those ages" admits whoever has any.
            occurrence = Occurrence.ALL
        final = index.model_copy(update={"occurrence": occurrence})
        # The question's own bounds (relative criteria in all, codes in all) hold too.
        asked = self.build(
            lambda: CohortQuery(criteria=criteria, index=final, reference_date=dt.date.today()),
            (),
        )
        return None if asked is None else AtlasCohort(final, criteria, tuple(self.notes))


def translate(expression: circe.CohortExpression) -> AtlasCohort | list[Refusal]:
    """The definition's translation, or every reason it has none."""
    translation = _Translation(expression)
    cohort = translation.run()
    if cohort is None:
        return translation.refusals or [
            Refusal(AtlasProblem.MALFORMED, "", "the definition could not be translated")
        ]
    return cohort
