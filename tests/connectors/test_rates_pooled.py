"""An incidence rate's pooled events and person-time, before protection, equal a direct
computation on the union of four nodes' data (synthetic CDMs of FR, DE, FI and DK), in every
cell: each node's exact PERSON_COUNT, OUTCOME_EVENTS and PERSON_DAYS (its compiled statement,
on its own database) added up, against each person's follow-up computed here in Python from
their rows, read out of the four databases by plain SQL written here (the date of birth, the
first dose, the observation period covering it, the death, the outcome's conditions). The
follow-up is split by age and year (`schema.lexis`): here day by day, each day at risk in the
cell of the person's age (from their birthday) and year on that day, the event on its day,
the person counted in every cell they have a day in (or, at risk for no day, in the cell of
their first). The concept ids of the codes are
the node's lookup (tested on its own in test_compiler.py). The rate and its exact Poisson
interval follow from the pooled numbers (`gateway.rates`), checked against SciPy's own
exact test interval."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pytest
from scipy import stats

from connectors.compiler import DUCKDB, ConceptSet, compile_concept_lookup, compile_query
from gateway.rates import DAYS_PER_YEAR, poisson_interval, rate_of
from schema.codes import Dimension, Jurisdiction, MeasureKind, ValueStatus, Vocabulary
from schema.query import RATES, STATISTICS, CohortQuery, Measure, NumericVariable
from schema.result import Value
from schema.variables import VariableSource
from synth import generate
from tests.connectors.postgres_kit import answer, synthetic, synthetic_backends, synthetic_dsn

# Fixtures of this module too: the synthetic CDM in DuckDB and PostgreSQL.
__all__ = ["synthetic", "synthetic_backends", "synthetic_dsn"]

PERSONS = 3_000
NODES = (Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK)
REFERENCE_DATE = dt.date(2025, 1, 1)
DOSES_FROM = dt.date(2021, 1, 1)
EVENTS, DAYS = RATES
SEX, AGE10, YEAR = Dimension.SEX, Dimension.AGE_BAND_10, Dimension.CALENDAR_YEAR
Key = tuple[str, ...]


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("rates")
    paths = []
    for i, jurisdiction in enumerate(NODES):
        path = directory / f"{jurisdiction.value.lower()}.duckdb"
        generate(
            path,
            jurisdiction=jurisdiction,
            persons=PERSONS,
            seed=200 + i,
            state=path.with_suffix(".state"),
        )
        paths.append(path)
    return paths


def question(outcome_codes: list[str], start: int, end: int) -> CohortQuery:
    return CohortQuery.model_validate(
        {
            "reference_date": REFERENCE_DATE,
            "index": {
                "events": [{"domain": "DRUG", "codes": [{"vocabulary": "ATC", "code": "J07BN01"}]}],
                "window": {"start": DOSES_FROM},
            },
            "criteria": {},
            "outcome": {
                "event": {
                    "domain": "CONDITION",
                    "codes": [{"vocabulary": "ICD10", "code": c} for c in outcome_codes],
                },
                "window": {"start_days": start, "end_days": end},
            },
            "measures": [{"kind": k} for k in (MeasureKind.PERSON_COUNT, *RATES)],
            "tables": [(SEX,), (AGE10,), (YEAR,), (SEX, AGE10), (AGE10, YEAR)],
        }
    )


def node_cells(path: Path, query: CohortQuery) -> dict[tuple[Any, Key], dict[MeasureKind, int]]:
    """One node's exact values per table and cell, as its statement computes them."""
    compiled = compile_query(query, dialect=DUCKDB)
    with duckdb.connect(str(path), read_only=True) as con:
        ids: dict[ConceptSet, list[int]] = {}
        for concept_set in compiled.concept_sets:
            lookup = compile_concept_lookup(concept_set, dialect=DUCKDB)
            ids[concept_set] = [
                r[0] for r in con.execute(lookup.sql, list(lookup.params)).fetchall()
            ]
        bound = compiled.bind(ids)
        rows = con.execute(bound.sql, list(bound.params)).fetchall()
    return {
        (by, cell.key): dict(cell.values) for by, cells in compiled.tabulate(rows) for cell in cells
    }


Totals = tuple[int, int, int]  # persons, events, days at risk


def pooled(databases: list[Path], query: CohortQuery) -> dict[tuple[Any, Key], Totals]:
    total: dict[tuple[Any, Key], Totals] = defaultdict(lambda: (0, 0, 0))
    for path in databases:
        for where, values in node_cells(path, query).items():
            persons, events, days = total[where]
            total[where] = (
                persons + values[MeasureKind.PERSON_COUNT],
                events + values[EVENTS],
                days + values[DAYS],
            )
    return dict(total)


# -- the reference: plain SQL for the rows, each person's follow-up in Python ---------------


def concept_ids(con: duckdb.DuckDBPyConnection, vocabulary: Vocabulary, code: str) -> list[int]:
    return [
        r[0]
        for r in con.execute(
            "SELECT concept_id FROM concept WHERE vocabulary_id = ? AND concept_code LIKE ?",
            [vocabulary.value, f"{code}%"],
        ).fetchall()
    ]


Day = tuple[str, str, str]  # sex, age band, year


def birthday(year: int, born: tuple[int, int | None, int | None]) -> dt.date:
    """The person's birthday in `year`: a month or day not recorded is the first, a day past
    its month's end runs into the next (29 February is 1 March in other years)."""
    month, day = born[1] or 1, born[2] or 1
    return dt.date(year, month, 1) + dt.timedelta(days=day - 1)


def cell_of(day: dt.date, sex: str, born: tuple[int, int | None, int | None]) -> Day:
    age = max(day.year - born[0] - (day < birthday(day.year, born)), 0)
    return sex, f"{age - age % 10}-{age - age % 10 + 9}", str(day.year)


def followed(
    con: duckdb.DuckDBPyConnection, outcome_codes: list[str], start: int, end: int
) -> list[tuple[Day, dict[Day, int], Day | None]]:
    """Each cohort person's cell on their first day at risk, their days at risk by the cell
    of each day, and the cell of their outcome's day if it is an event."""
    sexes = {8532: "FEMALE", 8507: "MALE"}
    persons = {
        p: (sexes.get(g, "UNKNOWN"), (born, month, day))
        for p, g, born, month, day in con.execute(
            """
            SELECT p.person_id, p.gender_concept_id, p.year_of_birth, p.month_of_birth,
                   p.day_of_birth
            FROM person p JOIN tessera_person k ON k.person_id = p.person_id
            WHERE p.year_of_birth <= ?
              AND p.person_id NOT IN (SELECT person_id FROM tessera_optout)
            """,
            [REFERENCE_DATE.year],
        ).fetchall()
    }
    doses = concept_ids(con, Vocabulary.ATC, "J07BN01")
    first_dose: dict[int, dt.date] = {}
    for person, date in con.execute(
        "SELECT person_id, drug_exposure_start_date FROM drug_exposure "
        "WHERE (list_contains(?, drug_concept_id) OR list_contains(?, drug_source_concept_id)) "
        "AND drug_exposure_start_date >= ?",
        [doses, doses, DOSES_FROM],
    ).fetchall():
        if person in persons and (person not in first_dose or date < first_dose[person]):
            first_dose[person] = date
    periods: dict[int, list[tuple[dt.date, dt.date]]] = defaultdict(list)
    for person, begin, finish in con.execute(
        "SELECT person_id, observation_period_start_date, observation_period_end_date "
        "FROM observation_period"
    ).fetchall():
        periods[person].append((begin, finish))
    deaths: dict[int, dt.date] = {}
    for person, date in con.execute("SELECT person_id, death_date FROM death").fetchall():
        deaths[person] = min(date, deaths.get(person, date))
    outcome_ids = [i for code in outcome_codes for i in concept_ids(con, Vocabulary.ICD10, code)]
    outcomes: dict[int, list[dt.date]] = defaultdict(list)
    for person, date in con.execute(
        "SELECT person_id, condition_start_date FROM condition_occurrence "
        "WHERE list_contains(?, condition_concept_id) "
        "OR list_contains(?, condition_source_concept_id)",
        [outcome_ids, outcome_ids],
    ).fetchall():
        outcomes[person].append(date)
    found = []
    for person, index in first_dose.items():
        sex, born = persons[person]
        entry = index + dt.timedelta(days=start)
        last = index + dt.timedelta(days=end)
        observed = [finish for begin, finish in periods[person] if begin <= index <= finish]
        censored = min(
            last,
            max(observed) if observed else entry - dt.timedelta(days=1),
            deaths.get(person, last),
        )
        in_window = [d for d in outcomes[person] if entry <= d <= last]
        first = min(in_window) if in_window else None
        event = first is not None and first <= censored
        leaves = first if event and first is not None else censored
        days: dict[Day, int] = defaultdict(int)
        for n in range((leaves - entry).days + 1):
            days[cell_of(entry + dt.timedelta(days=n), sex, born)] += 1
        first_cell = cell_of(entry, sex, born)
        found.append((first_cell, days, cell_of(leaves, sex, born) if event else None))
    return found


def _wheres(cell: Day) -> list[tuple[Any, Key]]:
    sex, band, year = cell
    return [
        ((), ()),
        ((SEX,), (sex,)),
        ((AGE10,), (band,)),
        ((YEAR,), (year,)),
        ((SEX, AGE10), (sex, band)),
        ((AGE10, YEAR), (band, year)),
    ]


def direct(
    databases: list[Path], outcome_codes: list[str], start: int, end: int
) -> dict[tuple[Any, Key], Totals]:
    total: dict[tuple[Any, Key], Totals] = defaultdict(lambda: (0, 0, 0))

    def add(where: tuple[Any, Key], persons: int, events: int, days: int) -> None:
        before = total[where]
        total[where] = (before[0] + persons, before[1] + events, before[2] + days)

    for path in databases:
        with duckdb.connect(str(path), read_only=True) as con:
            for first_cell, days, event_cell in followed(con, outcome_codes, start, end):
                cells = days or {first_cell: 0}
                # A person once in each cell of each table they have a day in.
                for where in {where for cell in cells for where in _wheres(cell)}:
                    add(where, 1, 0, 0)
                for cell, n in cells.items():
                    for where in _wheres(cell):
                        add(where, 0, 0, n)
                if event_cell is not None:
                    for where in _wheres(event_cell):
                        add(where, 0, 1, 0)
    return dict(total)


OUTCOMES = {
    # The demo's question: myocarditis or pericarditis in the three weeks after a first dose.
    "myocarditis_21_days": (["I40", "I30"], 0, 21),
    # COVID-19 in the year after it: many events, censored by observation ends and deaths.
    "covid_within_a_year": (["U07.1"], 1, 365),
}


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_pooled_events_and_person_time_equal_the_union(databases: list[Path], name: str) -> None:
    codes, start, end = OUTCOMES[name]
    query = question(codes, start, end)
    expected = direct(databases, codes, start, end)
    got = {where: values for where, values in pooled(databases, query).items() if any(values)}
    assert got == {where: values for where, values in expected.items() if any(values)}
    persons, events, days = got[(), ()]
    assert days > 0
    if name == "covid_within_a_year":
        assert events > 50  # the comparison is about something
        # The split is about something: persons in more than one band and in more than one
        # year, and events in a band or year other than that of their first day.
        assert sum(got[(AGE10,), k][0] for (by, k) in got if by == (AGE10,)) > persons
        assert sum(got[(YEAR,), k][0] for (by, k) in got if by == (YEAR,)) > persons


@pytest.mark.parametrize("events", [0, 1, 7, 250])
def test_the_rate_and_its_exact_poisson_interval(events: int) -> None:
    days = 36_525  # 100 person-years
    rate = rate_of(_exact(events), _exact(days), per=1_000)
    assert rate.person_years.value == pytest.approx(days / DAYS_PER_YEAR)
    assert rate.rate.value == pytest.approx(events / 100 * 1_000)
    # SciPy's exact (Garwood) interval of a Poisson rate.
    low, high = poisson_interval(events)
    if events:
        assert stats.poisson.sf(events - 1, low) == pytest.approx(0.025, rel=1e-6)
    else:
        assert low == 0.0
    assert stats.poisson.cdf(events, high) == pytest.approx(0.025, rel=1e-6)
    assert rate.ci_low.value == pytest.approx(low / 100 * 1_000)
    assert rate.ci_high.value == pytest.approx(high / 100 * 1_000)


def test_a_rate_is_withheld_where_its_events_or_its_days_are() -> None:
    low = Value.low()
    rate = rate_of(low, _exact(1000), per=100_000)
    assert rate.rate.value is None
    assert rate.rate.status is ValueStatus.LOW
    assert rate.person_years.value is not None
    rate = rate_of(_exact(3), Value.suppressed(), per=100_000)
    assert rate.rate.status is ValueStatus.SUPPRESSED
    assert rate.person_years.value is None
    nothing = rate_of(_exact(3), _exact(-4), per=100_000)
    assert nothing.rate.value is None
    assert [r.rule for r in nothing.rate.reasons] == ["NO_PERSON_TIME"]


def _exact(n: int) -> Value:
    return Value.exact(n)


def test_a_rate_and_a_variables_statistics_in_one_question(databases: list[Path]) -> None:
    # Age at the first dose summarised beside the rate: the rate's numbers are the rate's
    # question's, the total's and the sexes' statistics the variable's question's (tables a
    # person is in once), and in the split tables each person's value is in one cell (their
    # first day's), so the cells' sums add up to the total's.
    rate = question(["U07.1"], 1, 365)
    variable = NumericVariable(source=VariableSource.AGE, lo=0, hi=100)
    both = rate.model_copy(
        update={
            "variable": variable,
            "measures": [Measure(kind=k) for k in (MeasureKind.PERSON_COUNT, *RATES, *STATISTICS)],
        }
    )
    both = CohortQuery.model_validate(both.model_dump())
    alone = CohortQuery.model_validate(
        {
            **rate.model_dump(exclude={"outcome"}),
            "variable": variable,
            "measures": [{"kind": k} for k in (MeasureKind.PERSON_COUNT, *STATISTICS)],
            "tables": [(SEX,)],
        }
    )
    for path in databases:
        together = node_cells(path, both)
        rate_only = node_cells(path, rate)
        statistics_only = node_cells(path, alone)
        for where, values in rate_only.items():
            assert {k: together[where][k] for k in values} == values, where
        for where in (((), ()), *(w for w in statistics_only if w[0] == (SEX,))):
            for kind in STATISTICS:
                assert together[where][kind] == statistics_only[where][kind], where
        for by in ((AGE10,), (YEAR,), (AGE10, YEAR)):
            for kind in STATISTICS:
                cells = sum(v[kind] for (b, _), v in together.items() if b == by)
                assert cells == together[(), ()][kind], (by, kind)


# On PostgreSQL, exactly DuckDB's numbers (birthdays made of their parts: MAKE_DATE).
async def test_split_person_time_is_duckdbs(synthetic_backends: tuple[Any, Any]) -> None:
    duck, pg = synthetic_backends
    query = question(["U07.1"], 1, 365)
    expected = await answer(duck, query)
    assert await answer(pg, query) == expected
    # Persons in more than one year's cell: the split is about something.
    (by_band_and_year,) = [t for t in query.tables if len(t) == 2 and Dimension.CALENDAR_YEAR in t]
    cells = expected["measures"][by_band_and_year]
    total = expected["measures"][()][()][MeasureKind.PERSON_COUNT]
    assert sum(v[MeasureKind.PERSON_COUNT] for v in cells.values()) > total
