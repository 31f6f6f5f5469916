"""The compiled SQL against an independent reference: many generated cohort definitions (code
ranges, exclusions, occurrence counts, windows, values, ages at either date, nested `anyOf`,
index events first or all, in visits of a type, with observation before and after them,
criteria relative to them, deaths as events, concept sets with exclusions), each evaluated
person by person in plain Python over the same synthetic CDM read out of DuckDB, must select
exactly the persons the compiled SQL selects, on DuckDB and on PostgreSQL, and date them by
the same index dates (their years).

The reference (`tests.connectors.reference_kit`) shares nothing with the compiler but the
query model: it finds the concepts a code names from the `concept` rows themselves (a range is
every well-formed code of its ends' length between them), and walks each person's events.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_backend_postgres import copied_to_postgres

from connectors.backends.postgres import PostgresBackend
from connectors.compiler import (
    DUCKDB,
    CompiledQuery,
    ConceptResolver,
    ConceptSet,
    compile_concept_lookup,
    compile_query,
)
from schema.codes import (
    AgeAt,
    Dimension,
    EventDomain,
    MeasureKind,
    Occurrence,
    VisitType,
)
from schema.query import (
    MAX_RELATIVE_DAYS,
    AgeRange,
    Code,
    CohortQuery,
    Criteria,
    DateWindow,
    DeathCriterion,
    EventCriterion,
    EventSpec,
    IndexEvent,
    MeasurementCriterion,
    RelativeCriterion,
    RelativeWindow,
    ValueRange,
)
from synth import generate
from tests.connectors.reference_kit import Cdm, Reference, read_cdm

PERSONS = 1_500
# Each engine; more with TESSERA_REFERENCE_EXAMPLES=2000 (a few minutes).
EXAMPLES = int(os.environ.get("TESSERA_REFERENCE_EXAMPLES", "60"))
REFERENCE_DATES = (dt.date(2025, 1, 1), dt.date(2020, 6, 30))

# The reference: `tests.connectors.reference_kit`.


# -- generated definitions ---------------------------------------------------------------------

# Codes the synthetic CDM holds (and ranges of them), as a protocol writes them.
CONDITIONS = (
    "ICD10 E11, ICD10 E10, ICD10 I10, ICD10 I21, ICD10 F84, ICD10 F84.0, ICD10 E11.9, ICD10 J18, "
    "ICD10 F70-F79, ICD10 E10-E14, ICD10 I20-I25, ICD10 E11.0-E11.9, ICD10 F84.0-F84.1, "
    "ICD10 I30.0-I30.9, ICD10 C49.1-C49.4, SNOMED 44054006"
)
DRUGS = (
    "ATC A10, ATC A10BA, ATC C09, ATC J07BN01, ATC A10BA-A10BK, ATC C07-C09, ATC A10A-A10B, ATC A-C"
)
MEASUREMENTS = "LOINC 4548-4, LOINC 39156-5"


def codes(written: str) -> list[tuple[str, str, str | None]]:
    """`ICD10 F70-F79, SNOMED 44054006` as (vocabulary, code, end of range)."""
    parsed: list[tuple[str, str, str | None]] = []
    for item in written.split(", "):
        vocabulary, code = item.split(" ")
        first, _, last = code.partition("-") if vocabulary != "LOINC" else (code, "", "")
        parsed.append((vocabulary, first, last or None))
    return parsed


DATES = [
    None,
    dt.date(2012, 1, 1),
    dt.date(2018, 6, 30),
    dt.date(2020, 1, 1),
    dt.date(2022, 12, 31),
]


@st.composite
def windows(draw: st.DrawFn) -> DateWindow | None:
    start, end = draw(st.sampled_from(DATES)), draw(st.sampled_from(DATES))
    if start is None and end is None:
        return None
    if start and end and start > end:
        start, end = end, start
    return DateWindow(start=start, end=end)


def events(
    pool: list[tuple[str, str, str | None]], measured: bool = False
) -> st.SearchStrategy[Any]:
    @st.composite
    def one(draw: st.DrawFn) -> EventCriterion:
        vocabulary, code, to = draw(st.sampled_from(pool))
        data: dict[str, Any] = {
            "vocabulary": vocabulary,
            "code": code,
            "to": to,
            "descendants": draw(st.booleans()),
            "window": draw(windows()),
            "at_least": draw(st.sampled_from([1, 1, 2, 3])),
            "exclude": draw(st.booleans()),
        }
        if measured:
            low = draw(st.sampled_from([None, 5.5, 6.5, 25.0]))
            high = draw(st.sampled_from([None, 7.0, 30.0]))
            if low is not None and high is not None and low > high:
                low, high = high, low
            data["value"] = None if low is None and high is None else ValueRange(min=low, max=high)
            return MeasurementCriterion(**data)
        return EventCriterion(**data)

    return one()


def criteria(depth: int) -> st.SearchStrategy[Criteria]:
    @st.composite
    def one(draw: st.DrawFn) -> Criteria:
        low = draw(st.sampled_from([None, 18, 40, 65]))
        high = draw(st.sampled_from([None, 30, 70, 90]))
        if low is not None and high is not None and low > high:
            low, high = high, low
        return Criteria(
            sex=draw(st.sampled_from([None, "FEMALE", "MALE"])),
            prior_observation_days=draw(st.sampled_from([None, None, 0, 365, 1095, 3653])),
            death=draw(
                st.none() | st.builds(DeathCriterion, window=windows(), exclude=st.booleans())
            ),
            age=None if low is None and high is None else AgeRange(min=low, max=high),
            conditions=draw(st.lists(events(codes(CONDITIONS)), max_size=2)),
            drugs=draw(st.lists(events(codes(DRUGS)), max_size=1)),
            measurements=draw(st.lists(events(codes(MEASUREMENTS), measured=True), max_size=1)),
            any_of=draw(st.lists(criteria(depth - 1), max_size=2)) if depth > 1 else [],
        )

    return one()


# Codes of acute events, with the codes above, for index events and relative criteria.
EVENT_CODES = {
    EventDomain.CONDITION: codes(
        "ICD10 E11, ICD10 I10, ICD10 E10-E14, ICD10 E11.9, ICD10 J18, ICD10 U07.1, ICD10 U07, "
        "ICD10 I40, ICD10 I30, ICD10 I20-I25, ICD10 F84, SNOMED 44054006"
    ),
    EventDomain.DRUG: codes(DRUGS),
    EventDomain.MEASUREMENT: codes(MEASUREMENTS),
}
RELATIVE_WINDOWS = [
    (-MAX_RELATIVE_DAYS, -1),
    (-365, -1),
    (-30, 30),
    (0, 0),
    (0, 28),
    (1, 21),
    (0, MAX_RELATIVE_DAYS),
]


@st.composite
def concept_codes(draw: st.DrawFn, domain: EventDomain) -> Code:
    vocabulary, code, to = draw(st.sampled_from(EVENT_CODES[domain]))
    return Code(vocabulary=vocabulary, code=code, to=to, descendants=draw(st.booleans()))


# Calendar windows wide enough to keep most of the events a spec names.
WIDE_WINDOWS = [
    None,
    None,
    DateWindow(start=dt.date(2012, 1, 1)),
    DateWindow(start=dt.date(2018, 6, 30), end=dt.date(2022, 12, 31)),
    DateWindow(end=dt.date(2020, 1, 1)),
]


@st.composite
def specs(draw: st.DrawFn) -> EventSpec:
    domain = draw(st.sampled_from(list(EventDomain)))
    if domain is EventDomain.DEATH:
        return EventSpec(domain=domain, window=draw(st.sampled_from(WIDE_WINDOWS)))
    if domain is EventDomain.VISIT:
        return EventSpec(domain=domain, visit=draw(st.sampled_from(list(VisitType))))
    # The synthetic CDM records visits for conditions only: elsewhere a visit keeps nothing.
    visits = list(VisitType) if domain is EventDomain.CONDITION else []
    value = None
    if domain is EventDomain.MEASUREMENT:
        low = draw(st.sampled_from([None, 6.5, 25.0]))
        value = None if low is None else ValueRange(min=low)
    return EventSpec(
        domain=domain,
        codes=draw(st.lists(concept_codes(domain), min_size=1, max_size=2)),
        excluded=draw(st.sampled_from([[], [], [draw(concept_codes(domain))]])),
        visit=draw(st.sampled_from([None, None, *visits])),
        value=value,
        window=draw(st.sampled_from(WIDE_WINDOWS)),
    )


@st.composite
def relative_criteria(draw: st.DrawFn, index: IndexEvent) -> RelativeCriterion:
    start, end = draw(st.sampled_from(RELATIVE_WINDOWS))
    # Half the time one of the index's own events (a washout, a second occurrence): specs
    # drawn at random rarely meet the index's persons in a window.
    event = draw(st.sampled_from(index.events) | specs())
    at_least = draw(st.sampled_from([1, 1, 1, 2]))
    at_most = draw(st.sampled_from([None, None, at_least, 3]))
    return RelativeCriterion(
        event=event,
        window=RelativeWindow(start_days=start, end_days=end),
        at_least=at_least,
        at_most=at_most if at_most is None or at_most >= at_least else None,
        # Mostly exclusions: an event required in a narrow window empties most cohorts.
        exclude=draw(st.sampled_from([True, True, False])),
    )


def indexed_criteria(depth: int, index: IndexEvent) -> st.SearchStrategy[Criteria]:
    """Criteria for a question with an index: mostly relative criteria, with a little of the
    rest (the index selects fewer persons than the whole population: each criterion more
    would leave most cohorts empty)."""

    @st.composite
    def one(draw: st.DrawFn) -> Criteria:
        low = draw(st.sampled_from([None, None, 18, 40]))
        high = draw(st.sampled_from([None, None, 30, 70]))
        if low is not None and high is not None and low > high:
            low, high = high, low
        return Criteria(
            sex=draw(st.sampled_from([None, None, None, "FEMALE", "MALE"])),
            prior_observation_days=draw(st.sampled_from([None, None, None, 365])),
            age=None if low is None and high is None else AgeRange(min=low, max=high),
            conditions=draw(st.lists(events(codes(CONDITIONS)), max_size=1)) if depth > 1 else [],
            death=draw(st.sampled_from([None, None, None, DeathCriterion(exclude=True)])),
            relative=draw(st.lists(relative_criteria(index), max_size=depth)),
            any_of=(
                draw(st.lists(indexed_criteria(depth - 1, index), max_size=2)) if depth > 1 else []
            ),
        )

    return one()


@st.composite
def indexes(draw: st.DrawFn) -> IndexEvent:
    return IndexEvent(
        events=draw(st.lists(specs(), min_size=1, max_size=2)),
        occurrence=draw(st.sampled_from(list(Occurrence))),
        window=draw(st.sampled_from(WIDE_WINDOWS)),
        prior_observation_days=draw(st.sampled_from([None, 0, 30, 365])),
        post_observation_days=draw(st.sampled_from([None, None, 0, 28, 365])),
    )


@st.composite
def indexed_questions(draw: st.DrawFn) -> CohortQuery:
    index = draw(indexes())
    return CohortQuery(
        criteria=draw(indexed_criteria(2, index)),
        index=index,
        reference_date=draw(st.sampled_from(REFERENCE_DATES)),
        age_at=draw(st.sampled_from([None, AgeAt.REFERENCE_DATE, AgeAt.INDEX_EVENT])),
        tables=[(Dimension.CALENDAR_YEAR,)],
    )


@st.composite
def questions(draw: st.DrawFn) -> CohortQuery:
    definition = draw(criteria(3))
    age_at = draw(st.sampled_from([None, AgeAt.REFERENCE_DATE, AgeAt.INDEX_EVENT]))
    assume(age_at is not AgeAt.INDEX_EVENT or definition.index_event() is not None)
    return CohortQuery(
        criteria=definition, reference_date=draw(st.sampled_from(REFERENCE_DATES)), age_at=age_at
    )


# -- the compiled SQL --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "fi.duckdb"
    generate(path, jurisdiction="FI", persons=PERSONS, seed=11, state=path.with_suffix(".state"))
    return path


@pytest.fixture(scope="module")
def cdm(database: Path) -> Cdm:
    return read_cdm(database)


class DuckDB:
    def __init__(self, path: Path) -> None:
        self.con = duckdb.connect(str(path), read_only=True)
        self.ids: dict[ConceptSet, list[int]] = {}

    def cohort(self, query: CohortQuery) -> tuple[set[int], Tables]:
        compiled = compile_query(query, dialect=DUCKDB)
        for cs in compiled.concept_sets:
            if cs not in self.ids:
                lookup = compile_concept_lookup(cs, dialect=DUCKDB)
                self.ids[cs] = [
                    r[0] for r in self.con.execute(lookup.sql, list(lookup.params)).fetchall()
                ]
        bound = compiled.bind(self.ids)
        population = bound.population()
        persons = {
            r[0] for r in self.con.execute(population.sql, list(population.params)).fetchall()
        }
        return persons, counts(compiled, self.con.execute(bound.sql, list(bound.params)).fetchall())


# Each table's non-zero counts by key: the total's under ().
Tables = dict[tuple[Dimension, ...], dict[tuple[str, ...], int]]


def counts(compiled: CompiledQuery, rows: list[Any]) -> Tables:
    return {
        by: {
            cell.key: int(cell.values[MeasureKind.PERSON_COUNT])
            for cell in cells
            if cell.values[MeasureKind.PERSON_COUNT]
        }
        for by, cells in compiled.tabulate(rows)
    }


class Postgres:
    def __init__(self, dsn: str, runner: asyncio.Runner) -> None:
        self.runner = runner
        self.backend = PostgresBackend(dsn, connections=1)
        self.resolver = ConceptResolver(self.backend.execute, dialect=self.backend.dialect)

    def cohort(self, query: CohortQuery) -> tuple[set[int], Tables]:
        return self.runner.run(self._cohort(query))

    async def _cohort(self, query: CohortQuery) -> tuple[set[int], Tables]:
        compiled = compile_query(query, dialect=self.backend.dialect)
        bound = await self.resolver.bind(compiled)
        persons = {r[0] for r in await self.backend.execute(bound.population())}
        return persons, counts(compiled, await self.backend.execute(bound))


@pytest.fixture(scope="module")
def duck(database: Path) -> Iterator[DuckDB]:
    engine = DuckDB(database)
    yield engine
    engine.con.close()


@pytest.fixture(scope="module")
def postgres(database: Path) -> Iterator[Postgres]:
    with copied_to_postgres(database) as dsn, asyncio.Runner() as runner:
        engine = Postgres(dsn, runner)
        yield engine
        runner.run(engine.backend.close())


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


Engine = DuckDB | Postgres


def reference_tables(query: CohortQuery, dated: dict[int, dt.date | None]) -> Tables:
    tables: Tables = {(): {(): len(dated)} if dated else {}}
    if (Dimension.CALENDAR_YEAR,) in query.tables:
        years: dict[tuple[str, ...], int] = defaultdict(int)
        for date in dated.values():
            assert date is not None
            years[(str(date.year),)] += 1
        tables[(Dimension.CALENDAR_YEAR,)] = dict(years)
    return tables


def agrees_with_the_reference(engine: Engine, cdm: Cdm, query: CohortQuery) -> None:
    dated = Reference(cdm, query).dated()
    assert engine.cohort(query) == (set(dated), reference_tables(query, dated))


@SETTINGS
@pytest.mark.parametrize("engine", ["duck", "postgres"])
@given(query=questions())
def test_the_compiled_sql_selects_exactly_the_reference_cohort(
    request: pytest.FixtureRequest, engine: str, cdm: Cdm, query: CohortQuery
) -> None:
    agrees_with_the_reference(request.getfixturevalue(engine), cdm, query)


@SETTINGS
@pytest.mark.parametrize("engine", ["duck", "postgres"])
@given(query=indexed_questions())
def test_the_compiled_sql_selects_and_dates_exactly_the_reference_cohort_of_an_index(
    request: pytest.FixtureRequest, engine: str, cdm: Cdm, query: CohortQuery
) -> None:
    agrees_with_the_reference(request.getfixturevalue(engine), cdm, query)


def test_the_generated_definitions_select_cohorts_of_every_size(duck: DuckDB, cdm: Cdm) -> None:
    """The reference is not trivially right: the shapes it is checked on select some persons
    and leave some out (exclusions and counts included), and agree here."""
    e11 = EventCriterion(vocabulary="ICD10", code="E11")
    shapes = [
        Criteria(conditions=[e11]),
        Criteria(conditions=[e11.model_copy(update={"exclude": True})]),
        Criteria(conditions=[e11.model_copy(update={"at_least": 2})]),
        Criteria(conditions=[EventCriterion(vocabulary="ICD10", code="F70", to="F79")]),
        Criteria(prior_observation_days=3653),
        Criteria(death=DeathCriterion(window=DateWindow(start=dt.date(2020, 1, 1)))),
        Criteria(conditions=[e11], death=DeathCriterion(exclude=True)),
        Criteria(prior_observation_days=1095, conditions=[e11]),
        Criteria(drugs=[EventCriterion(vocabulary="ATC", code="A10BA", to="A10BK", at_least=3)]),
    ]
    everyone = len(
        Reference(cdm, CohortQuery(criteria=Criteria(), reference_date=REFERENCE_DATES[0])).cohort()
    )
    for shape in shapes:
        query = CohortQuery(criteria=shape, reference_date=REFERENCE_DATES[0])
        expected = Reference(cdm, query).cohort()
        assert 0 < len(expected) < everyone
        agrees_with_the_reference(duck, cdm, query)


def test_the_index_shapes_select_cohorts_of_every_size(duck: DuckDB, cdm: Cdm) -> None:
    """As above, for index events and relative criteria: each shape selects some persons and
    leaves some out, and the compiled SQL agrees (persons and index years)."""
    e11 = {"domain": "CONDITION", "codes": [{"vocabulary": "ICD10", "code": "E11"}]}
    shapes: list[dict[str, Any]] = [
        {"index": {"events": [e11]}},
        {
            "index": {"events": [e11], "post_observation_days": 365},
            "criteria": {
                "relative": [
                    {
                        "event": {"domain": "DEATH"},
                        "window": {"start_days": 0, "end_days": 3650},
                        "exclude": True,
                    }
                ]
            },
        },
        {
            "index": {
                "events": [{**e11, "excluded": [{"vocabulary": "ICD10", "code": "E11.9"}]}],
                "occurrence": "ALL",
            },
            "criteria": {"age": {"max": 60}},
        },
        {
            "index": {
                "events": [{"domain": "DRUG", "codes": [{"vocabulary": "ATC", "code": "J07BN01"}]}],
                "occurrence": "ALL",
            },
            "criteria": {"age": {"max": 29}},
        },
        {
            "index": {"events": [{"domain": "VISIT", "visit": "INPATIENT"}]},
            "criteria": {
                "relative": [{"event": e11, "window": {"start_days": -36525, "end_days": -1}}]
            },
        },
        {
            "index": {"events": [{"domain": "DEATH"}]},
            "criteria": {
                "relative": [
                    {
                        "event": {
                            "domain": "CONDITION",
                            "codes": [{"vocabulary": "ICD10", "code": "I10"}],
                        },
                        "window": {"start_days": -36525, "end_days": 0},
                        "at_least": 1,
                        "at_most": 2,
                    }
                ]
            },
        },
        {
            "index": {"events": [e11]},
            "criteria": {
                "relative": [
                    {
                        "event": e11,
                        "window": {"start_days": -36525, "end_days": 36525},
                        "at_most": 2,
                    }
                ]
            },
        },
        {
            "index": {"events": [e11], "occurrence": "ALL", "prior_observation_days": 365},
            "criteria": {
                "relative": [
                    {
                        "event": e11,
                        "window": {"start_days": -365, "end_days": -1},
                        "exclude": True,
                    }
                ]
            },
        },
    ]
    everyone = len(
        Reference(cdm, CohortQuery(criteria=Criteria(), reference_date=REFERENCE_DATES[0])).cohort()
    )
    for shape in shapes:
        query = CohortQuery.model_validate(
            {
                "criteria": {},
                **shape,
                "reference_date": REFERENCE_DATES[0],
                "tables": [(Dimension.CALENDAR_YEAR,)],
            }
        )
        expected = Reference(cdm, query).cohort()
        assert 0 < len(expected) < everyone, shape
        agrees_with_the_reference(duck, cdm, query)
