"""A numeric variable taken at each person's explicit index event (`CohortQuery.index`): the
pooled mean and variance, before protection, equal a direct computation on the union of four
nodes' data (synthetic CDMs of FR, DE, FI and DK) to 1e-9 relative, in every cell. The index is
each person's first type 2 diabetes record (ICD-10 E11) from 2016, or, with ALL, the earliest
of their diagnoses with an HbA1c in the year before it; the variable their age at it, or their
HbA1c or BMI measured in a window of days around it (`NumericVariable.index_window`). Here, the
index dates and measurements are read by plain SQL and each person's value taken in Python."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from fractions import Fraction
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from gateway.statistics import mean_and_variance
from schema.codes import Dimension, MeasureKind, Occurrence, Vocabulary
from schema.query import (
    STATISTICS,
    Code,
    CohortQuery,
    Criteria,
    Measure,
    NumericVariable,
    RelativeWindow,
)
from schema.variables import MEASUREMENTS, PerPerson, VariableSource
from tests.connectors.postgres_kit import answer, synthetic, synthetic_backends, synthetic_dsn
from tests.connectors.statistics_kit import databases, persons, pooled

# Fixtures of this module too: the four nodes' databases, and the synthetic CDM in PostgreSQL.
__all__ = ["databases", "synthetic", "synthetic_backends", "synthetic_dsn"]

FROM = dt.date(2016, 1, 1)
REFERENCE_DATE = dt.date(2025, 1, 1)
HBA1C, BMI = "4548-4", "39156-5"
# With ALL: a diagnosis qualifies with an HbA1c in the 365 days before it.
PRIOR = (-365, -1)


def question(variable: NumericVariable, occurrence: Occurrence) -> CohortQuery:
    relative: list[dict[str, Any]] = []
    if occurrence is Occurrence.ALL:
        relative = [
            {
                "event": {
                    "domain": "MEASUREMENT",
                    "codes": [{"vocabulary": "LOINC", "code": HBA1C}],
                },
                "window": {"start_days": PRIOR[0], "end_days": PRIOR[1]},
            }
        ]
    return CohortQuery.model_validate(
        {
            "reference_date": REFERENCE_DATE,
            "index": {
                "events": [
                    {"domain": "CONDITION", "codes": [{"vocabulary": "ICD10", "code": "E11"}]}
                ],
                "occurrence": occurrence,
                "window": {"start": FROM},
            },
            "criteria": Criteria.model_validate({"relative": relative}).model_dump(),
            "tables": [(), (Dimension.SEX,)],
            "measures": [Measure(kind=k) for k in (MeasureKind.PERSON_COUNT, *STATISTICS)],
            "variable": variable,
        }
    )


def index_dates(con: duckdb.DuckDBPyConnection, occurrence: Occurrence) -> dict[int, dt.date]:
    """Each cohort person's index date, by plain SQL and Python."""
    diabetes = [
        r[0]
        for r in con.execute(
            "SELECT concept_id FROM concept WHERE vocabulary_id = 'ICD10' "
            "AND concept_code LIKE 'E11%'"
        ).fetchall()
    ]
    candidates: dict[int, list[dt.date]] = defaultdict(list)
    for person, date in con.execute(
        "SELECT person_id, condition_start_date FROM condition_occurrence "
        "WHERE (list_contains(?, condition_concept_id) "
        "OR list_contains(?, condition_source_concept_id)) AND condition_start_date >= ?",
        [diabetes, diabetes, FROM],
    ).fetchall():
        candidates[person].append(date)
    if occurrence is Occurrence.FIRST:
        return {p: min(dates) for p, dates in candidates.items()}
    tested = defaultdict(list)
    for person, date, _, _ in measurements(con, HBA1C):
        tested[person].append(date)
    chosen = {}
    for person, dates in candidates.items():
        for date in sorted(set(dates)):
            low, high = date + dt.timedelta(PRIOR[0]), date + dt.timedelta(PRIOR[1])
            if any(low <= t <= high for t in tested[person]):
                chosen[person] = date
                break
    return chosen


def measurements(
    con: duckdb.DuckDBPyConnection, loinc: str
) -> list[tuple[int, dt.date, int, float]]:
    rows: list[tuple[int, dt.date, int, float]] = con.execute(
        """
        SELECT m.person_id, m.measurement_date, m.measurement_id, m.value_as_number
        FROM measurement m JOIN concept c ON c.concept_id = m.measurement_concept_id
        WHERE c.vocabulary_id = 'LOINC' AND c.concept_code = ? AND m.value_as_number IS NOT NULL
        """,
        [loinc],
    ).fetchall()
    return rows


def value_at(rows: list[tuple[dt.date, int, int]], per_person: PerPerson) -> Fraction | None:
    if not rows:
        return None
    rows.sort()
    if per_person is PerPerson.FIRST:
        return Fraction(rows[0][2])
    if per_person is PerPerson.LAST:
        return Fraction(rows[-1][2])
    return Fraction(sum(u for _, _, u in rows), len(rows))


def direct(
    databases: list[Path], variable: NumericVariable, occurrence: Occurrence
) -> dict[tuple[str, ...], tuple[int, float, float]]:
    clipping = variable.clipping
    by_cell: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for path in databases:
        with duckdb.connect(str(path), read_only=True) as con:
            cohort = persons(con)
            dates = {p: d for p, d in index_dates(con, occurrence).items() if p in cohort}
            units: dict[int, Fraction | None] = {}
            if variable.source is VariableSource.AGE:
                units = {p: Fraction(d.year - cohort[p][1]) for p, d in dates.items()}
            else:
                assert variable.code is not None
                assert variable.index_window is not None
                window = variable.index_window
                scale = 10 ** MEASUREMENTS[variable.code.code].decimals
                around: dict[int, list[tuple[dt.date, int, int]]] = defaultdict(list)
                for person, date, measurement, value in measurements(con, variable.code.code):
                    index = dates.get(person)
                    if index is None:
                        continue
                    if (
                        index + dt.timedelta(window.start_days)
                        <= date
                        <= index + dt.timedelta(window.end_days)
                    ):
                        around[person].append((date, measurement, math.floor(value * scale + 0.5)))
                units = {p: value_at(around[p], variable.per_person) for p in dates}
        for person in dates:
            found = units.get(person)
            if found is None:
                continue
            whole = math.floor(found + Fraction(1, 2))
            value = min(max(whole, clipping.lo), clipping.hi) / 10**clipping.decimals
            by_cell[()].append(value)
            by_cell[(cohort[person][0],)].append(value)
    return {
        key: (len(values), float(np.mean(values)), float(np.var(values, ddof=1)))
        for key, values in by_cell.items()
        if len(values) > 1
    }


def measured(code: str, per_person: PerPerson, start: int, end: int) -> NumericVariable:
    return NumericVariable(
        source=VariableSource.MEASUREMENT,
        code=Code(vocabulary=Vocabulary.LOINC, code=code),
        per_person=per_person,
        index_window=RelativeWindow(start_days=start, end_days=end),
    )


VARIABLES = {
    "age_at_index": NumericVariable(source=VariableSource.AGE),
    "hba1c_last_in_the_year_before": measured(HBA1C, PerPerson.LAST, -365, 0),
    "hba1c_first_in_the_year_after": measured(HBA1C, PerPerson.FIRST, 1, 365),
    "bmi_mean_around": measured(BMI, PerPerson.MEAN, -730, 90),
}


@pytest.mark.parametrize("occurrence", list(Occurrence))
@pytest.mark.parametrize("name", list(VARIABLES))
def test_pooled_mean_and_variance_at_the_index_equal_the_unions(
    databases: list[Path], name: str, occurrence: Occurrence
) -> None:
    variable = VARIABLES[name]
    expected = direct(databases, variable, occurrence)
    got = pooled(databases, question(variable, occurrence))
    assert len(expected) >= 3  # the total and both sexes at least
    assert expected[()][0] >= 50  # the comparison is about something
    for key, (n, mean, variance) in expected.items():
        got_mean, got_variance = mean_and_variance(got[key], variable.clipping)
        assert got[key].n == n, key
        assert got_variance is not None
        assert got_mean == pytest.approx(mean, rel=1e-9), key
        assert got_variance == pytest.approx(variance, rel=1e-9), key


def test_an_index_window_needs_an_index() -> None:
    with pytest.raises(ValueError, match="relative to an index event"):
        CohortQuery(
            criteria=Criteria(),
            reference_date=REFERENCE_DATE,
            measures=[Measure(kind=k) for k in STATISTICS],
            variable=measured(HBA1C, PerPerson.LAST, -365, 0),
        )
    with pytest.raises(ValueError, match="age takes no code or window"):
        NumericVariable(
            source=VariableSource.AGE, index_window=RelativeWindow(start_days=0, end_days=1)
        )


# On PostgreSQL, exactly DuckDB's numbers.
@pytest.mark.parametrize("occurrence", list(Occurrence))
@pytest.mark.parametrize("name", ["age_at_index", "hba1c_last_in_the_year_before"])
async def test_a_variable_at_the_index_is_duckdbs(
    synthetic_backends: tuple[Any, Any], name: str, occurrence: Occurrence
) -> None:
    duck, pg = synthetic_backends
    query = question(VARIABLES[name], occurrence)
    expected = await answer(duck, query)
    assert await answer(pg, query) == expected
