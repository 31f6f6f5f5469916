"""An independent reference implementation of the query model's cohorts, for tests: the
synthetic CDM read out of DuckDB as plain Python data, and each definition evaluated person by
person over it. It shares nothing with the compiler but the query model: it finds the concepts
a code names from the `concept` rows themselves (a range is every well-formed code of its ends'
length between them), and walks each person's events (`test_cohort_reference`,
`test_seed_protocols`)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from schema.codes import (
    CODE_PATTERNS,
    LOOKUP_VOCABULARIES,
    AgeAt,
    EventDomain,
    Occurrence,
    VisitType,
    Vocabulary,
)
from schema.query import (
    Code,
    CohortQuery,
    Criteria,
    DateWindow,
    EventCriterion,
    EventSpec,
    IndexEvent,
    MeasurementCriterion,
    RelativeCriterion,
    ValueRange,
)


@dataclass(frozen=True, slots=True)
class Event:
    concept: int
    source: int | None
    date: dt.date
    value: float | None = None
    visit: int | None = None  # visit_occurrence_id


# The OMOP standard visit concepts each visit type names, as the OMOP documentation lists them
# (9201 inpatient, 9203 emergency room, 9202 outpatient, 262 emergency room and inpatient).
VISIT_TYPES = {
    VisitType.INPATIENT: {9201, 262},
    VisitType.EMERGENCY: {9203, 262},
    VisitType.OUTPATIENT: {9202},
    VisitType.INPATIENT_OR_EMERGENCY: {9201, 9203, 262},
}
DOMAIN_GROUPS = {
    EventDomain.CONDITION: "conditions",
    EventDomain.DRUG: "drugs",
    EventDomain.MEASUREMENT: "measurements",
    EventDomain.VISIT: "visits",
    EventDomain.DEATH: "deaths",
}


Periods = dict[int, list[tuple[dt.date, dt.date]]]


@dataclass
class Cdm:
    """The synthetic CDM as plain Python data."""

    concepts: list[tuple[int, str, str]]  # id, vocabulary_id, code
    below: dict[int, set[int]]  # concept_ancestor: ancestor -> descendants (itself included)
    persons: dict[int, tuple[int, int]]  # person_id -> (gender_concept_id, year_of_birth)
    index: dict[int, int]  # person_id -> person index
    opted_out: set[int]
    observed: Periods  # person_id -> (start, end) of each observation period
    deaths: dict[int, dt.date]
    visit_concepts: dict[int, int]  # visit_occurrence_id -> visit_concept_id
    events: dict[str, dict[int, list[Event]]] = field(default_factory=dict)


def read_cdm(path: Path) -> Cdm:
    with duckdb.connect(str(path), read_only=True) as con:
        below: dict[int, set[int]] = defaultdict(set)
        for a, d in con.execute(
            "SELECT ancestor_concept_id, descendant_concept_id FROM concept_ancestor"
        ).fetchall():
            below[a].add(d)
        cdm = Cdm(
            concepts=con.execute(
                "SELECT concept_id, vocabulary_id, concept_code FROM concept"
            ).fetchall(),
            below=below,
            persons={
                p: (g, y)
                for p, g, y in con.execute(
                    "SELECT person_id, gender_concept_id, year_of_birth FROM person"
                ).fetchall()
            },
            index=dict(
                con.execute("SELECT person_id, person_index FROM tessera_person").fetchall()
            ),
            opted_out={
                p for (p,) in con.execute("SELECT person_id FROM tessera_optout").fetchall()
            },
            observed=observation_periods(con),
            deaths=dict(con.execute("SELECT person_id, death_date FROM death").fetchall()),
            visit_concepts=dict(
                con.execute(
                    "SELECT visit_occurrence_id, visit_concept_id FROM visit_occurrence"
                ).fetchall()
            ),
        )
        sources = {
            "conditions": (
                "SELECT person_id, condition_concept_id, condition_source_concept_id, "
                "condition_start_date, NULL, visit_occurrence_id FROM condition_occurrence"
            ),
            "drugs": (
                "SELECT person_id, drug_concept_id, drug_source_concept_id, "
                "drug_exposure_start_date, NULL, visit_occurrence_id FROM drug_exposure"
            ),
            "measurements": (
                "SELECT person_id, measurement_concept_id, measurement_source_concept_id, "
                "measurement_date, value_as_number, visit_occurrence_id FROM measurement"
            ),
            "visits": (
                "SELECT person_id, visit_concept_id, visit_source_concept_id, "
                "visit_start_date, NULL, visit_occurrence_id FROM visit_occurrence"
            ),
        }
        for group, sql in sources.items():
            by_person: dict[int, list[Event]] = defaultdict(list)
            for p, c, s, d, v, visit in con.execute(sql).fetchall():
                by_person[p].append(Event(c, s, d, v, visit))
            cdm.events[group] = by_person
        cdm.events["deaths"] = {p: [Event(0, None, d)] for p, d in cdm.deaths.items()}
    return cdm


def observation_periods(con: duckdb.DuckDBPyConnection) -> Periods:
    periods: Periods = defaultdict(list)
    sql = (
        "SELECT person_id, observation_period_start_date, observation_period_end_date "
        "FROM observation_period"
    )
    for p, start, end in con.execute(sql).fetchall():
        periods[p].append((start, end))
    return periods


def named_codes(code: Code, concept_code: str) -> bool:
    """Whether `concept_code` is (or, with descendants, starts with) the criterion's code, or
    a code of its range, in either ICD-10 spelling (with and without the dot)."""
    dotless = code.vocabulary is Vocabulary.ICD10
    spellings = {(code.code, code.to)}
    if dotless:
        spellings.add((undotted(code.code), None if code.to is None else undotted(code.to)))
    prefix_coded = code.vocabulary in (Vocabulary.ICD10, Vocabulary.ATC)
    for first, last in spellings:
        head = concept_code[: len(first)] if code.descendants and prefix_coded else concept_code
        if last is None:
            if head == first:
                return True
        elif len(head) == len(first) and first <= head <= last and well_formed(code, head):
            return True
    return False


def undotted(code: str) -> str:
    return code.replace(".", "")


def well_formed(code: Code, text: str) -> bool:
    pattern = CODE_PATTERNS[code.vocabulary]
    if code.vocabulary is Vocabulary.ICD10 and "." not in text and len(text) > 3:
        text = f"{text[:3]}.{text[3:]}"  # a dotless spelling: its dot put back
    return pattern.fullmatch(text) is not None


def concept_ids(cdm: Cdm, code: Code) -> set[int]:
    vocabularies = LOOKUP_VOCABULARIES[code.vocabulary]
    named = {
        cid
        for cid, vocabulary, text in cdm.concepts
        if vocabulary in vocabularies and named_codes(code, text)
    }
    if code.descendants:
        named |= {d for cid in named for d in cdm.below.get(cid, ())}
    return named


def within(date: dt.date, window: DateWindow | None) -> bool:
    return window is None or (
        (window.start is None or date >= window.start)
        and (window.end is None or date <= window.end)
    )


def in_range(value: float | None, bounds: ValueRange | None) -> bool:
    return bounds is None or (
        value is not None
        and (bounds.min is None or value >= bounds.min)
        and (bounds.max is None or value <= bounds.max)
    )


class Reference:
    def __init__(self, cdm: Cdm, query: CohortQuery) -> None:
        self.cdm = cdm
        self.query = query
        self._ids: dict[int, set[int]] = {}
        self._sets: dict[int, tuple[set[int], set[int]]] = {}

    def concept_set(self, spec: EventSpec) -> tuple[set[int], set[int]]:
        """The concepts the spec's codes name, and those its excluded codes name."""
        if id(spec) not in self._sets:
            include = {i for c in spec.codes for i in concept_ids(self.cdm, c)}
            exclude = {i for c in spec.excluded for i in concept_ids(self.cdm, c)}
            self._sets[id(spec)] = (include, exclude)
        return self._sets[id(spec)]

    def events_of(self, spec: EventSpec, person: int) -> list[Event]:
        """The person's events that are `spec`'s (an event is in a concept set when its
        concept or its source concept is one of the included and not one of the excluded)."""
        include, exclude = self.concept_set(spec)
        kept = []
        for e in self.cdm.events[DOMAIN_GROUPS[spec.domain]].get(person, ()):
            if spec.codes and not any(
                c is not None and c in include and c not in exclude for c in (e.concept, e.source)
            ):
                continue
            if spec.visit is not None:
                types = VISIT_TYPES[spec.visit]
                if spec.domain is EventDomain.VISIT:
                    if e.concept not in types:
                        continue
                elif e.visit is None or self.cdm.visit_concepts.get(e.visit) not in types:
                    continue
            if within(e.date, spec.window) and (
                spec.value is None or in_range(e.value, spec.value)
            ):
                kept.append(e)
        return kept

    def candidates(self, index: IndexEvent, person: int) -> list[dt.date]:
        """The person's candidate index dates, earliest first."""
        prior, post = index.prior_observation_days, index.post_observation_days
        periods = self.cdm.observed.get(person, ())

        def observed(date: dt.date) -> bool:
            if prior is None and post is None:
                return True
            before, after = dt.timedelta(days=prior or 0), dt.timedelta(days=post or 0)
            return any(start <= date - before and end >= date + after for start, end in periods)

        dates = sorted(
            {
                e.date
                for spec in index.events
                for e in self.events_of(spec, person)
                if within(e.date, index.window) and observed(e.date)
            }
        )
        return dates[:1] if index.occurrence is Occurrence.FIRST else dates

    def relative_holds(self, criterion: RelativeCriterion, person: int, index: dt.date) -> bool:
        first = index + dt.timedelta(days=criterion.window.start_days)
        last = index + dt.timedelta(days=criterion.window.end_days)
        n = sum(1 for e in self.events_of(criterion.event, person) if first <= e.date <= last)
        has = criterion.at_least <= n and (criterion.at_most is None or n <= criterion.at_most)
        return has != criterion.exclude

    def matching(self, group: str, criterion: EventCriterion, person: int) -> list[Event]:
        if id(criterion) not in self._ids:
            self._ids[id(criterion)] = concept_ids(self.cdm, criterion)
        ids = self._ids[id(criterion)]
        window = criterion.window or DateWindow()
        value = criterion.value if isinstance(criterion, MeasurementCriterion) else None
        return [
            e
            for e in self.cdm.events[group].get(person, ())
            if (e.concept in ids or e.source in ids)
            and (window.start is None or e.date >= window.start)
            and (window.end is None or e.date <= window.end)
            and (
                value is None
                or (
                    e.value is not None
                    and (value.min is None or e.value >= value.min)
                    and (value.max is None or e.value <= value.max)
                )
            )
        ]

    def holds(
        self,
        criteria: Criteria,
        person: int,
        age: int,
        age_date: dt.date,
        index: dt.date | None = None,
    ) -> bool:
        gender, _ = self.cdm.persons[person]
        days = criteria.prior_observation_days
        if days is not None and not any(
            (age_date - start).days >= days and end >= age_date
            for start, end in self.cdm.observed.get(person, ())
        ):
            return False
        if criteria.sex is not None and gender != {"FEMALE": 8532, "MALE": 8507}[criteria.sex]:
            return False
        if criteria.age is not None:
            low, high = criteria.age_bounds()
            if not low <= age <= high:
                return False
        if criteria.death is not None:
            window = criteria.death.window or DateWindow()
            died = self.cdm.deaths.get(person)
            within = (
                died is not None
                and (window.start is None or died >= window.start)
                and (window.end is None or died <= window.end)
            )
            if within == criteria.death.exclude:
                return False
        for group in ("conditions", "drugs", "measurements"):
            for criterion in getattr(criteria, group):
                has = len(self.matching(group, criterion, person)) >= criterion.at_least
                if has == criterion.exclude:
                    return False
        for relative in criteria.relative:
            assert index is not None
            if not self.relative_holds(relative, person, index):
                return False
        return not criteria.any_of or any(
            self.holds(g, person, age, age_date, index) for g in criteria.any_of
        )

    def cohort(self) -> set[int]:
        """The person indexes of the persons the question counts."""
        return set(self.dated())

    def dated(self) -> dict[int, dt.date | None]:
        """The person indexes of the persons the question counts, with the date that dates
        them for CALENDAR_YEAR (with an explicit index: the earliest candidate satisfying the
        criteria; otherwise left to the compiler's own tests)."""
        if self.query.index is not None:
            return self._indexed(self.query.index)
        return dict.fromkeys(self._unindexed())

    def _indexed(self, index: IndexEvent) -> dict[int, dt.date | None]:
        query, cdm = self.query, self.cdm
        year = query.reference_date.year
        chosen: dict[int, dt.date | None] = {}
        for person, (_, born) in cdm.persons.items():
            if born > year or person in cdm.opted_out or person not in cdm.index:
                continue
            for candidate in self.candidates(index, person):
                at_index = query.age_basis is AgeAt.INDEX_EVENT
                age_date = candidate if at_index else query.reference_date
                age = (candidate.year if at_index else year) - born
                if self.holds(query.criteria, person, age, age_date, candidate):
                    chosen[cdm.index[person]] = candidate
                    break
        return chosen

    def _unindexed(self) -> set[int]:
        query, cdm = self.query, self.cdm
        year = query.reference_date.year
        chosen: set[int] = set()
        index = query.criteria.index_event()
        group = next(
            (
                g
                for g in ("conditions", "drugs", "measurements")
                if index in getattr(query.criteria, g)
            ),
            None,
        )
        for person, (_, born) in cdm.persons.items():
            if born > year or person in cdm.opted_out or person not in cdm.index:
                continue
            if query.age_basis is AgeAt.INDEX_EVENT:
                assert index is not None
                assert group is not None
                dates = [e.date for e in self.matching(group, index, person)]
                if not dates:
                    continue
                age_date = min(dates)
            else:
                age_date = query.reference_date
            age = (year if age_date is query.reference_date else age_date.year) - born
            if self.holds(query.criteria, person, age, age_date):
                chosen.add(cdm.index[person])
        return chosen
