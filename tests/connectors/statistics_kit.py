"""Four synthetic nodes' databases and their exact statistics, for the tests of numeric
variables: each node's sufficient statistics per cell as its compiled statement computes them,
added up over the nodes, and the cohort's persons read by plain SQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from connectors.compiler import DUCKDB, ConceptSet, compile_concept_lookup, compile_query
from gateway.statistics import Moments
from schema.codes import Jurisdiction
from schema.query import STATISTICS, CohortQuery, DateWindow
from synth import generate

PERSONS = 3_000
NODES = (Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK)
REFERENCE_DATE = dt.date(2025, 1, 1)
WINDOW = DateWindow(start=dt.date(2015, 1, 1), end=dt.date(2024, 12, 31))
N, S1, S2 = STATISTICS


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("statistics")
    paths = []
    for i, jurisdiction in enumerate(NODES):
        path = directory / f"{jurisdiction.value.lower()}.duckdb"
        generate(
            path,
            jurisdiction=jurisdiction,
            persons=PERSONS,
            seed=100 + i,
            state=path.with_suffix(".state"),
        )
        paths.append(path)
    return paths


def node_moments(path: Path, query: CohortQuery) -> dict[tuple[str, ...], Moments]:
    """One node's exact statistics per cell (the total's key is ()), as its statement
    computes them."""
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
    moments = {}
    for _, cells in compiled.tabulate(rows):
        for cell in cells:
            values = cell.values
            moments[cell.key] = Moments(values[N], values[S1], values[S2])
    return moments


def pooled(databases: list[Path], query: CohortQuery) -> dict[tuple[str, ...], Moments]:
    total: dict[tuple[str, ...], Moments] = {}
    for path in databases:
        for key, m in node_moments(path, query).items():
            before = total.get(key, Moments(0, 0, 0))
            total[key] = Moments(before.n + m.n, before.s1 + m.s1, before.s2 + m.s2)
    return total


def persons(con: duckdb.DuckDBPyConnection) -> dict[int, tuple[str, int]]:
    """The cohort: person_id -> (sex, year of birth)."""
    rows = con.execute(
        """
        SELECT p.person_id, p.gender_concept_id, p.year_of_birth
        FROM person p JOIN tessera_person k ON k.person_id = p.person_id
        WHERE p.year_of_birth <= ? AND p.person_id NOT IN (SELECT person_id FROM tessera_optout)
        """,
        [REFERENCE_DATE.year],
    ).fetchall()
    sexes = {8532: "FEMALE", 8507: "MALE"}
    return {p: (sexes.get(g, "UNKNOWN"), y) for p, g, y in rows}
