"""The pooled mean and variance of a numeric variable, before protection, equal a direct
computation on the union of four nodes' data (synthetic CDMs of FR, DE, FI and DK), to 1e-9
relative, in every cell: each node's exact sufficient statistics (its compiled statement, on
its own database) added up, then `gateway.statistics.mean_and_variance`, against NumPy on the
persons' values read out of the four databases by plain SQL written here, clipped and taken per
person here (first, last or mean in the window). Only the cohort (everyone born by the
reference year and not opted out, with a person index) is as simple as to need no reference of
its own."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import duckdb
import numpy as np
import pytest

from connectors.compiler import DUCKDB, ConceptSet, compile_concept_lookup, compile_query
from gateway.statistics import mean_and_variance
from schema.codes import Dimension, MeasureKind, Vocabulary
from schema.query import (
    STATISTICS,
    AgeAt,
    Code,
    CohortQuery,
    Criteria,
    Measure,
    NumericVariable,
)
from schema.variables import MEASUREMENTS, PerPerson, VariableSource
from tests.connectors.statistics_kit import (
    REFERENCE_DATE,
    WINDOW,
    databases,
    persons,
    pooled,
)

N, S1, S2 = STATISTICS
__all__ = ["databases"]  # the four nodes' databases, a fixture of this module too


def question(variable: NumericVariable) -> CohortQuery:
    return CohortQuery(
        criteria=Criteria(),
        reference_date=REFERENCE_DATE,
        age_at=AgeAt.REFERENCE_DATE,
        tables=[(), (Dimension.SEX,)],
        measures=[Measure(kind=k) for k in (MeasureKind.PERSON_COUNT, *STATISTICS)],
        variable=variable,
    )


# -- the reference: plain SQL for the persons and their rows, the rest in Python -------------


def measured(
    con: duckdb.DuckDBPyConnection, loinc: str, variable: NumericVariable
) -> dict[int, Fraction]:
    """Each person's value of a measurement variable, in units of its resolution (a Fraction
    for a mean), from their rows in the window."""
    rows = con.execute(
        """
        SELECT m.person_id, m.measurement_date, m.measurement_id, m.value_as_number
        FROM measurement m JOIN concept c ON c.concept_id = m.measurement_concept_id
        WHERE c.vocabulary_id = 'LOINC' AND c.concept_code = ? AND m.value_as_number IS NOT NULL
          AND m.measurement_date BETWEEN ? AND ?
        """,
        [loinc, WINDOW.start, WINDOW.end],
    ).fetchall()
    scale = 10 ** MEASUREMENTS[loinc].decimals
    of_person: dict[int, list[tuple[dt.date, int, int]]] = defaultdict(list)
    for person, date, measurement, value in rows:
        of_person[person].append((date, measurement, math.floor(value * scale + 0.5)))
    values = {}
    for person, found in of_person.items():
        found.sort()
        if variable.per_person is PerPerson.FIRST:
            values[person] = Fraction(found[0][2])
        elif variable.per_person is PerPerson.LAST:
            values[person] = Fraction(found[-1][2])
        else:
            values[person] = Fraction(sum(u for _, _, u in found), len(found))
    return values


Direct = dict[tuple[str, ...], tuple[int, float, float]]


def direct(databases: list[Path], variable: NumericVariable) -> Direct:
    """The number, mean and variance of the union's clipped values in each cell, by NumPy."""
    clipping = variable.clipping
    by_cell: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for path in databases:
        with duckdb.connect(str(path), read_only=True) as con:
            cohort = persons(con)
            if variable.source is VariableSource.AGE:
                units = {p: Fraction(REFERENCE_DATE.year - born) for p, (_, born) in cohort.items()}
            else:
                assert variable.code is not None
                units = measured(con, variable.code.code, variable)
        for person, (sex, _) in cohort.items():
            if person not in units:
                continue
            whole = math.floor(units[person] + Fraction(1, 2))  # half up, exactly
            value = min(max(whole, clipping.lo), clipping.hi) / 10**clipping.decimals
            by_cell[()].append(value)
            by_cell[(sex,)].append(value)
    return {
        key: (len(values), float(np.mean(values)), float(np.var(values, ddof=1)))
        for key, values in by_cell.items()
        if len(values) > 1
    }


VARIABLES = {
    "age": NumericVariable(source=VariableSource.AGE),
    "age_clipped_18_90": NumericVariable(source=VariableSource.AGE, lo=18, hi=90),
    **{
        f"{name}_{per_person.value.lower()}": NumericVariable(
            source=VariableSource.MEASUREMENT,
            code=Code(vocabulary=Vocabulary.LOINC, code=code),
            per_person=per_person,
            window=WINDOW,
            lo=lo,
            hi=hi,
        )
        for name, code, lo, hi in (
            ("hba1c", "4548-4", 4.0, 12.0),
            ("bmi", "39156-5", None, None),
            ("systolic_clipped", "8480-6", 100, 160),
        )
        for per_person in PerPerson
    },
}


@pytest.mark.parametrize("name", list(VARIABLES))
def test_pooled_mean_and_variance_equal_the_unions(databases: list[Path], name: str) -> None:
    variable = VARIABLES[name]
    expected = direct(databases, variable)
    got = pooled(databases, question(variable))
    assert len(expected) >= 3  # the total and both sexes at least
    for key, (n, mean, variance) in expected.items():
        got_mean, got_variance = mean_and_variance(got[key], variable.clipping)
        assert got[key].n == n, key
        assert got_variance is not None
        assert got_mean == pytest.approx(mean, rel=1e-9), key
        assert got_variance == pytest.approx(variance, rel=1e-9), key
    # Clipping held: no mean beyond the bounds.
    clipping = variable.clipping
    for moments in got.values():
        if moments.n:
            mean, _ = mean_and_variance(moments, clipping)
            assert clipping.lo * clipping.resolution <= mean <= clipping.hi * clipping.resolution


def test_pooled_histograms_are_the_unions(databases: list[Path]) -> None:
    # Last HbA1c of 2015-2024 in bins of 0.5 from 4 to 12 (values beyond in the end bins),
    # and ages in bins of 10 from 0 to 130, against NumPy on the union.
    for variable in (
        NumericVariable(
            source=VariableSource.MEASUREMENT,
            code=Code(vocabulary=Vocabulary.LOINC, code="4548-4"),
            per_person=PerPerson.LAST,
            window=WINDOW,
            lo=4.0,
            hi=12.0,
            bin_width=0.5,
        ),
        NumericVariable(source=VariableSource.AGE, bin_width=10),
    ):
        query = CohortQuery(
            criteria=Criteria(),
            reference_date=REFERENCE_DATE,
            age_at=AgeAt.REFERENCE_DATE,
            tables=[(Dimension.VALUE_BIN,)],
            variable=variable,
        )
        got: dict[str, int] = defaultdict(int)
        for path in databases:
            for key, count in node_counts(path, query).items():
                got[key] += count
        clipping = variable.clipping
        edges = [*variable.bin_edges(), clipping.hi]
        values, everyone = union_units(databases, variable)
        counts, _ = np.histogram(values, bins=edges)
        expected = {clipping.edge(edge): int(n) for edge, n in zip(edges, counts, strict=False)}
        expected["UNKNOWN"] = everyone - len(values)
        # Groups nobody is in are not rows (the node lays them over the public domain).
        assert {k: n for k, n in got.items() if n} == {k: n for k, n in expected.items() if n}
        assert set(got) <= set(expected)


def node_counts(path: Path, query: CohortQuery) -> dict[str, int]:
    compiled = compile_query(query, dialect=DUCKDB)
    with duckdb.connect(str(path), read_only=True) as con:
        ids: dict[ConceptSet, list[int]] = {}
        for concept_set in compiled.concept_sets:
            lookup = compile_concept_lookup(concept_set, dialect=DUCKDB)
            rows = con.execute(lookup.sql, list(lookup.params)).fetchall()
            ids[concept_set] = [r[0] for r in rows]
        bound = compiled.bind(ids)
        rows = con.execute(bound.sql, list(bound.params)).fetchall()
    ((_, _), (_, cells)) = compiled.tabulate(rows)
    return {cell.key[0]: cell.values[MeasureKind.PERSON_COUNT] for cell in cells}


def union_units(databases: list[Path], variable: NumericVariable) -> tuple[list[int], int]:
    """The union's clipped values in units, and how many persons the cohort has."""
    clipping = variable.clipping
    values, everyone = [], 0
    for path in databases:
        with duckdb.connect(str(path), read_only=True) as con:
            cohort = persons(con)
            if variable.source is VariableSource.AGE:
                units = {p: Fraction(REFERENCE_DATE.year - born) for p, (_, born) in cohort.items()}
            else:
                assert variable.code is not None
                units = measured(con, variable.code.code, variable)
        everyone += len(cohort)
        for person in cohort:
            if person in units:
                whole = math.floor(units[person] + Fraction(1, 2))
                values.append(min(max(whole, clipping.lo), clipping.hi))
    return values, everyone
