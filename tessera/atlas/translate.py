"""An ATLAS cohort definition as the query model's index event and criteria.

ATLAS (OHDSI Circe) builds cohort *periods* — who enters when, and until when; Tessera counts
*persons*. The translation keeps everything that decides who is counted and when they entered
(their index date dates ages and `CALENDAR_YEAR`), refuses every element it cannot express
exactly, each by its JSON path, and notes the elements that only shape cohort periods (end
strategy, censoring, era collapsing). `docs/atlas-import.md` lists them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from pydantic import ValidationError

from schema.codes import EventDomain, Occurrence, Sex, VisitType
from schema.query import (
    MAX_ANY_OF,
    MAX_POST_OBSERVATION_DAYS,
    MAX_PRIOR_OBSERVATION_DAYS,
    MAX_RELATIVE_DAYS,
    AgeRange,
    Criteria,
    DateWindow,
    EventSpec,
    IndexEvent,
    RelativeCriterion,
    RelativeWindow,
    ValueRange,
)
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


def _alias(model: type[circe.CirceModel], name: str) -> str:
    alias = model.model_fields[name].alias
    return alias if alias is not None else name


@dataclass
class _Translation:
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

    # --- events -----------------------------------------------------------------------------

    def domain(self, criterion: circe.Criterion, path: Path) -> tuple[str, EventDomain] | None:
        for key in circe.extras(criterion):
            self.refuse(
                AtlasProblem.UNSUPPORTED_ELEMENT,
                (*path, key),
                f"{key} events are not in Tessera's query model (it has "
                f"{', '.join(_alias(circe.Criterion, n) for n in DOMAINS)})",
            )
        present = [name for name in DOMAINS if getattr(criterion, name) is not None]
        if len(present) != 1 or circe.extras(criterion):
            if not circe.extras(criterion):
                self.refuse(
                    AtlasProblem.MALFORMED, path, "a criterion names exactly one kind of event"
                )
            return None
        return present[0], DOMAINS[present[0]]

    def event(
        self, criterion: circe.Criterion, path: Path, *, at_index: bool
    ) -> tuple[EventSpec, circe.DomainCriterion, Path] | None:
        """The event a criterion names, its ATLAS form and path. Filters about the person
        (`Age`, `Gender`) and `First` are the caller's (they mean something at the index only)."""
        found = self.domain(criterion, path)
        if found is None:
            return None
        name, domain = found
        spec: circe.DomainCriterion = getattr(criterion, name)
        where = (*path, _alias(circe.Criterion, name))
        self.refuse_extras(spec, where, "criteria filters")
        if not at_index:
            for attribute in ("first", "age", "gender"):
                if not circe.neutral(getattr(spec, attribute)):
                    key = _alias(circe.DomainCriterion, attribute)
                    self.refuse(
                        AtlasProblem.UNSUPPORTED_ELEMENT,
                        (*where, key),
                        f"{key} on an event other than the index event is not in Tessera's "
                        "query model",
                    )
        if spec.correlated_criteria is not None and not _empty(spec.correlated_criteria):
            self.refuse(
                AtlasProblem.UNSUPPORTED_ELEMENT,
                (*where, "CorrelatedCriteria"),
                "criteria nested in an event's criterion are not in Tessera's query model",
            )
        fields: dict[str, Any] = {"domain": domain}
        ok = True
        if domain is EventDomain.VISIT:
            if spec.codeset_id is None:
                self.refuse(
                    AtlasProblem.UNSUPPORTED_VALUE,
                    (*where, "CodesetId"),
                    "a visit of any type: Tessera's visits are of a type",
                )
                ok = False
            else:
                fields["visit"] = self.visit_concepts(spec.codeset_id, (*where, "CodesetId"))
                ok = fields["visit"] is not None
        elif domain is EventDomain.DEATH:
            if spec.codeset_id is not None:
                self.refuse(
                    AtlasProblem.UNSUPPORTED_ELEMENT,
                    (*where, "CodesetId"),
                    "causes of death are not in Tessera's query model (a death is one event)",
                )
                ok = False
        elif spec.codeset_id is None:
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                (*where, "CodesetId"),
                f"every {domain.value.lower()} event, of any concept: Tessera's events are named "
                "by codes",
            )
            ok = False
        else:
            codes = self.code_set(spec.codeset_id, (*where, "CodesetId"))
            if codes is None:
                ok = False
            elif not codes.codes:
                self.refuse(
                    AtlasProblem.UNKNOWN_CONCEPT_SET,
                    (*where, "CodesetId"),
                    f"concept set {spec.codeset_id} includes no concept",
                )
                ok = False
            else:
                fields["codes"] = list(codes.codes)
                fields["excluded"] = list(codes.excluded)
        if spec.visit_type:
            if domain in (EventDomain.VISIT, EventDomain.DEATH):
                self.refuse(
                    AtlasProblem.UNSUPPORTED_ELEMENT,
                    (*where, "VisitType"),
                    f"a visit type on a {domain.value.lower()} event",
                )
                ok = False
            else:
                fields["visit"] = visit_type(
                    [(c.concept_id, False, False) for c in spec.visit_type],
                    json_path((*where, "VisitType")),
                    self.refusals,
                )
                ok = ok and fields["visit"] is not None
        if spec.value_as_number is not None:
            fields["value"] = self.value_range(
                spec.value_as_number, (*where, "ValueAsNumber"), domain
            )
            ok = ok and fields["value"] is not None
        if spec.occurrence_start_date is not None:
            fields["window"] = self.date_window(
                spec.occurrence_start_date, (*where, "OccurrenceStartDate")
            )
            ok = ok and fields["window"] is not None
        if not ok:
            return None
        made = self.build(lambda: EventSpec(**fields), where)
        return None if made is None else (made, spec, where)

    def value_range(
        self, value: circe.NumericRange, path: Path, domain: EventDomain
    ) -> ValueRange | None:
        if domain is not EventDomain.MEASUREMENT:
            self.refuse(AtlasProblem.UNSUPPORTED_ELEMENT, path, "a value on a non-measurement")
            return None
        self.refuse_extras(value, path, "ranges")
        if value.op in ("gt", "lt", "!bt"):
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                (*path, "Op"),
                f"{value.op!r}: Tessera's value ranges include their ends (gte, lte, eq, bt)",
            )
            return None
        bounds = _inclusive(value, self, path)
        if bounds is None:
            return None
        low, high = bounds
        return self.build(lambda: ValueRange(min=low, max=high), path)

    def date_window(self, value: circe.DateRange, path: Path) -> DateWindow | None:
        self.refuse_extras(value, path, "date ranges")
        try:
            first = dt.date.fromisoformat(value.value)
            last = None if value.extent is None else dt.date.fromisoformat(value.extent)
        except ValueError:
            self.refuse(AtlasProblem.MALFORMED, path, "a date is not YYYY-MM-DD")
            return None
        day = dt.timedelta(days=1)
        bounds: dict[str, tuple[dt.date | None, dt.date | None]] = {
            "gt": (first + day, None),
            "gte": (first, None),
            "lt": (None, first - day),
            "lte": (None, first),
            "eq": (first, first),
        }
        start: dt.date | None
        end: dt.date | None
        if value.op == "bt" and last is not None:
            start, end = first, last
        elif value.op in bounds:
            start, end = bounds[value.op]
        else:
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE, (*path, "Op"), f"{value.op!r}: not one window"
            )
            return None
        return self.build(lambda: DateWindow(start=start, end=end), path)

    # --- the person, at the index -----------------------------------------------------------

    def age(self, value: circe.NumericRange, path: Path) -> AgeRange | None:
        self.refuse_extras(value, path, "ranges")
        if value.op == "!bt":
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE, (*path, "Op"), "'!bt': ages outside a range"
            )
            return None
        bounds = _inclusive(value, self, path)
        if bounds is None:
            return None
        low, high = bounds
        if any(b is not None and b != int(b) for b in (low, high)):
            self.refuse(AtlasProblem.UNSUPPORTED_VALUE, path, "ages are whole years")
            return None
        # Whole years: a strict bound is the next year in.
        shift = {"gt": (1, 0), "lt": (0, -1)}.get(value.op, (0, 0))
        lo = None if low is None else int(low) + shift[0]
        hi = None if high is None else int(high) + shift[1]
        return self.build(lambda: AgeRange(min=lo, max=hi), path)

    def sex(self, genders: Sequence[circe.CirceConcept], path: Path) -> Sex | None:
        found = {GENDERS.get(c.concept_id) for c in genders}
        if None in found or len(found) != 1:
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                path,
                f"gender concepts {sorted(c.concept_id for c in genders)}: Tessera restricts to "
                "one sex (8507 male or 8532 female), or none",
            )
            return None
        return found.pop()

    # --- criteria groups --------------------------------------------------------------------

    def group(self, group: circe.CriteriaGroup, path: Path) -> Criteria | None:
        """A criteria group as criteria; `Criteria()` when it holds for everyone."""
        self.refuse_extras(group, path, "criteria groups")
        parts: list[Criteria | None] = []
        for i, correlated in enumerate(group.criteria_list):
            parts.append(self.correlated(correlated, (*path, "CriteriaList", i)))
        for i, demographic in enumerate(group.demographic_criteria_list):
            parts.append(self.demographic(demographic, (*path, "DemographicCriteriaList", i)))
        for i, nested in enumerate(group.groups):
            parts.append(self.group(nested, (*path, "Groups", i)))
        kind = group.type.upper()
        if kind.startswith("AT_") and group.count is not None:
            if kind == "AT_LEAST" and group.count == len(parts):
                kind = "ALL"
            elif kind == "AT_LEAST" and group.count == 1:
                kind = "ANY"
        if kind not in ("ALL", "ANY"):
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                (*path, "Type"),
                f"{group.type} {group.count}: Tessera's groups are ALL or ANY (AT_LEAST 1, or "
                "AT_LEAST all of them)",
            )
            return None
        if any(part is None for part in parts):
            return None
        made = [p for p in parts if p is not None]
        if kind == "ALL" or len(made) <= 1:
            return self.conjoin(made, path)
        if any(p == Criteria() for p in made):
            return Criteria()  # one alternative holds for everyone
        if len(made) > MAX_ANY_OF:
            self.refuse(
                AtlasProblem.OUT_OF_BOUNDS,
                path,
                f"{len(made)} alternatives: Tessera's groups have at most {MAX_ANY_OF}",
            )
            return None
        return self.build(lambda: Criteria(any_of=made), path)

    def conjoin(self, parts: Sequence[Criteria], path: Path) -> Criteria | None:
        """Criteria that hold when every part does."""
        result: Criteria | None = Criteria()
        for part in parts:
            if result is None:
                return None
            result = self._and(result, part, path)
        return result

    def _and(self, a: Criteria, b: Criteria, path: Path) -> Criteria | None:
        if a.sex is not None and b.sex is not None and a.sex != b.sex:
            self.refuse(AtlasProblem.UNSUPPORTED_VALUE, path, "both sexes: nobody")
            return None
        age = _intersect(a.age, b.age)
        if age is False:
            self.refuse(AtlasProblem.UNSUPPORTED_VALUE, path, "age ranges that do not overlap")
            return None
        if a.any_of and b.any_of:
            options: list[Criteria] = []
            for option in a.any_of:
                joined = self._and(option, Criteria(any_of=b.any_of), path)
                if joined is None:
                    return None
                options.append(joined)
            any_of = options
        else:
            any_of = list(a.any_of or b.any_of)
        return self.build(
            lambda: Criteria(
                sex=a.sex or b.sex,
                age=age or None,
                relative=[*a.relative, *b.relative],
                any_of=any_of,
            ),
            path,
        )

    def demographic(self, criteria: circe.DemographicCriteria, path: Path) -> Criteria | None:
        self.refuse_extras(criteria, path, "demographic criteria")
        age = None if criteria.age is None else self.age(criteria.age, (*path, "Age"))
        sex = None if not criteria.gender else self.sex(criteria.gender, (*path, "Gender"))
        if (criteria.age is not None and age is None) or (criteria.gender and sex is None):
            return None
        return self.build(lambda: Criteria(age=age, sex=sex), path)

    def correlated(self, correlated: circe.CorrelatedCriteria, path: Path) -> Criteria | None:
        self.refuse_extras(correlated, path, "correlated criteria")
        ok = True
        if correlated.end_window is not None and not _empty_window(correlated.end_window):
            hint = (
                " (an index event during a visit of a type: give it a VisitType)"
                if correlated.criteria.visit_occurrence is not None
                else ""
            )
            self.refuse(
                AtlasProblem.UNSUPPORTED_ELEMENT,
                (*path, "EndWindow"),
                f"a window on the event's end: Tessera's windows are on event start dates{hint}",
            )
            ok = False
        if correlated.restrict_visit:
            self.refuse(
                AtlasProblem.UNSUPPORTED_ELEMENT,
                (*path, "RestrictVisit"),
                "events at the index event's own visit are not in Tessera's query model",
            )
            ok = False
        window = self.window(correlated.start_window, (*path, "StartWindow"))
        if not correlated.ignore_observation_period:
            self.note(
                (*path, "IgnoreObservationPeriod"),
                "ATLAS counts only the events within the index's observation period; Tessera "
                "counts every event in the window (the same where a CDM's observation periods "
                "cover its events, as OMOP conventions ask)",
            )
        found = self.event(correlated.criteria, (*path, "Criteria"), at_index=False)
        occurrence = correlated.occurrence
        counts = self.counts(occurrence, (*path, "Occurrence"))
        if not ok or window is None or found is None or counts is None:
            return None
        if counts is ALWAYS:
            self.note((*path, "Occurrence"), "at least 0 events: holds for everyone")
            return Criteria()
        event = found[0]
        made = self.build(lambda: RelativeCriterion(event=event, window=window, **counts), path)
        return None if made is None else Criteria(relative=[made])

    def counts(self, occurrence: circe.OccurrenceCount, path: Path) -> dict[str, Any] | None:
        """A relative criterion's counts (`at_least`, `at_most`, `exclude`), or `ALWAYS`."""
        self.refuse_extras(occurrence, path, "occurrence counts")
        if occurrence.is_distinct:
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                (*path, "IsDistinct"),
                "counts of distinct concepts: Tessera counts events",
            )
            return None
        n, kind = occurrence.count, occurrence.type
        if n < 0 or kind not in (EXACTLY, AT_MOST, AT_LEAST):
            self.refuse(AtlasProblem.MALFORMED, path, f"occurrence type {kind}, count {n}")
            return None
        if kind == AT_LEAST:
            return ALWAYS if n == 0 else {"at_least": n}
        if n == 0:
            return {"exclude": True}
        if kind == EXACTLY:
            return {"at_least": n, "at_most": n}
        # At most n: not at least n + 1.
        return {"at_least": n + 1, "exclude": True}

    def window(self, window: circe.Window, path: Path) -> RelativeWindow | None:
        self.refuse_extras(window, path, "windows")
        ok = True
        for flag, what in (
            ("use_index_end", "the index event's end"),
            ("use_event_end", "the event's end"),
        ):
            if getattr(window, flag):
                self.refuse(
                    AtlasProblem.UNSUPPORTED_VALUE,
                    (*path, _alias(circe.Window, flag)),
                    f"a window on {what}: Tessera's windows are on start dates",
                )
                ok = False
        days: list[int] = []
        for name, bound in (("Start", window.start), ("End", window.end)):
            self.refuse_extras(bound, (*path, name), "window bounds")
            if bound.coeff not in (-1, 1):
                self.refuse(AtlasProblem.MALFORMED, (*path, name, "Coeff"), "Coeff is -1 or 1")
                return None
            if bound.days is None:
                # As far as the index's observation period reaches: at most a century.
                days.append(bound.coeff * MAX_RELATIVE_DAYS)
            elif bound.days > MAX_RELATIVE_DAYS:
                self.refuse(
                    AtlasProblem.OUT_OF_BOUNDS,
                    (*path, name, "Days"),
                    f"{bound.days} days: Tessera's windows reach {MAX_RELATIVE_DAYS} days",
                )
                ok = False
            else:
                days.append(bound.coeff * bound.days)
        if not ok:
            return None
        start, end = days
        return self.build(lambda: RelativeWindow(start_days=start, end_days=end), path)

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
                prior_observation_days=prior or None,
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
        if included.lower() == "last" or qualified.lower() == "last":
            key = "ExpressionLimit" if included.lower() == "last" else "QualifiedLimit"
            self.refuse(
                AtlasProblem.UNSUPPORTED_VALUE,
                (key, "Type"),
                "'Last': Tessera dates each person by their earliest qualifying event",
            )
            return None
        self.note(
            ("ExpressionLimit",),
            "which of a person's events enter the cohort: Tessera counts the person once, "
            "dated by the earliest",
        )
        if occurrence is Occurrence.FIRST or not has_rules or qualified.lower() == "all":
            self.note(("QualifiedLimit",), "does not change who is counted here")
            return occurrence
        additional = expression.additional_criteria
        if additional is None or _empty(additional):
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
        return AtlasCohort(final, criteria, tuple(self.notes))


def _inclusive(
    value: circe.NumericRange, translation: _Translation, path: Path
) -> tuple[float | None, float | None] | None:
    ops: dict[str, tuple[float | None, float | None]] = {
        "gt": (value.value, None),
        "gte": (value.value, None),
        "lt": (None, value.value),
        "lte": (None, value.value),
        "eq": (value.value, value.value),
    }
    if value.op == "bt":
        if value.extent is None:
            translation.refuse(AtlasProblem.MALFORMED, (*path, "Extent"), "'bt' without Extent")
            return None
        return value.value, value.extent
    if value.op not in ops:
        translation.refuse(AtlasProblem.UNSUPPORTED_VALUE, (*path, "Op"), f"{value.op!r}")
        return None
    return ops[value.op]


def _intersect(a: AgeRange | None, b: AgeRange | None) -> AgeRange | bool | None:
    if a is None or b is None:
        return a or b
    lows = [x for x in (a.min, b.min) if x is not None]
    highs = [x for x in (a.max, b.max) if x is not None]
    low = max(lows) if lows else None
    high = min(highs) if highs else None
    if low is not None and high is not None and low > high:
        return False
    return AgeRange(min=low, max=high)


def _empty(group: circe.CriteriaGroup) -> bool:
    return not (group.criteria_list or group.demographic_criteria_list or group.groups)


def _empty_window(window: circe.Window) -> bool:
    return window.start.days is None and window.end.days is None and not circe.extras(window)


def translate(expression: circe.CohortExpression) -> AtlasCohort | list[Refusal]:
    """The definition's translation, or every reason it has none."""
    translation = _Translation(expression)
    cohort = translation.run()
    if cohort is None:
        return translation.refusals or [
            Refusal(AtlasProblem.MALFORMED, "", "the definition could not be translated")
        ]
    return cohort
