"""The seed protocols as the examples write them (`examples/02_covid_diabetes_outcomes.graphql`,
Coronado; `examples/03_myocarditis_after_mrna.graphql`, Epi-Phare; `examples/05_...`, the
autism comorbidities): each `cohort` of the files, read from its GraphQL arguments, counts
exactly the persons the reference implementation (`tests.connectors.reference_kit`) finds, with the
same cells in every breakdown asked, on DuckDB (through its backend's cohort table) and on
PostgreSQL, before any protection. The synthetic country is large enough for the protocols
to find persons: the tests say so."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import graphql
import pytest
from graphql.utilities import value_from_ast_untyped
from test_backend_postgres import copied_to_postgres

from connectors.backends.base import Backend, person_indexes
from connectors.backends.duckdb import DuckDBBackend
from connectors.backends.postgres import PostgresBackend
from connectors.compiler import ConceptResolver, compile_query
from schema.codes import AgeAt, Dimension, MeasureKind
from schema.dimensions import age_band_width
from schema.query import CohortQuery
from synth import generate
from tests.connectors.reference_kit import Cdm, Reference, read_cdm

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROTOCOLS = (
    "02_covid_diabetes_outcomes.graphql",
    "03_myocarditis_after_mrna.graphql",
    "05_autism_comorbidity.graphql",
)
PERSONS = 40_000
# The gateway's default reference date for a question asked in 2026.
REFERENCE_DATE = dt.date(2026, 1, 1)


@dataclass(frozen=True)
class Protocol:
    name: str  # file:alias
    query: CohortQuery


def snake(data: Any) -> Any:
    if isinstance(data, dict):
        return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): snake(v) for k, v in data.items()}
    if isinstance(data, list):
        return [snake(v) for v in data]
    return data


def protocols() -> list[Protocol]:
    """Every `cohort` field of the protocols' files, as the gateway's query model has it."""
    found = []
    for file in PROTOCOLS:
        document = graphql.parse((EXAMPLES / file).read_text())
        for definition in document.definitions:
            assert isinstance(definition, graphql.OperationDefinitionNode)
            for field in definition.selection_set.selections:
                assert isinstance(field, graphql.FieldNode)
                assert field.name.value == "cohort"
                arguments = {
                    a.name.value: snake(value_from_ast_untyped(a.value)) for a in field.arguments
                }
                tables = [
                    tuple(Dimension(d) for d in value_from_ast_untyped(by.value))
                    for selection in field.selection_set.selections  # type: ignore[union-attr]
                    if isinstance(selection, graphql.FieldNode)
                    and selection.name.value == "breakdown"
                    for by in selection.arguments
                ]
                query = CohortQuery.model_validate(
                    {
                        "criteria": arguments["criteria"],
                        "index": arguments.get("index"),
                        "age_at": arguments.get("age_at"),
                        "reference_date": arguments.get("reference_date", REFERENCE_DATE),
                        "tables": tables,
                    }
                )
                alias = field.alias.value if field.alias else field.name.value
                found.append(Protocol(f"{file}:{alias}", query))
    return found


ALL = protocols()


def test_the_seed_protocols_are_written_with_index_events_windows_and_ranges() -> None:
    names = {p.name.split(":")[0] for p in ALL if p.query.index is not None}
    assert names == {PROTOCOLS[0], PROTOCOLS[1]}
    ranges = [c for p in ALL for c in p.query.criteria.conditions if c.to is not None] + [
        c for p in ALL for g in p.query.criteria.any_of for c in g.conditions if c.to
    ]
    assert any((c.code, c.to) == ("F70", "F79") for c in ranges)


# -- the expected answer ----------------------------------------------------------------------


Tables = dict[tuple[Dimension, ...], dict[tuple[str, ...], int]]


def expected(cdm: Cdm, query: CohortQuery) -> tuple[set[int], Tables]:
    dated = Reference(cdm, query).dated()
    person_of = {index: person for person, index in cdm.index.items()}
    tables: Tables = {}
    for by in query.tables:
        cells: Counter[tuple[str, ...]] = Counter()
        for index, date in dated.items():
            gender, born = cdm.persons[person_of[index]]
            key = []
            for dimension in by:
                width = age_band_width(dimension)
                if width:
                    if query.age_basis is AgeAt.REFERENCE_DATE:
                        age_year = query.reference_date.year
                    else:
                        # The reference dates persons by an explicit index only.
                        assert date is not None, "no expected ages at an implicit index event"
                        age_year = date.year
                    low = (age_year - born) // width * width
                    key.append(f"{low}-{low + width - 1}")
                elif dimension is Dimension.SEX:
                    key.append({8532: "FEMALE", 8507: "MALE"}[gender])
                else:
                    raise AssertionError(f"no expected cells for {dimension}")
            cells[tuple(key)] += 1
        tables[by] = dict(cells)
    return set(dated), tables


async def answered(backend: Backend, query: CohortQuery) -> tuple[set[int], Tables]:
    """The cohort and every table, as the connector's pipeline computes them before
    protection: the backend's cohort run, nobody left out."""
    compiled = compile_query(query, dialect=backend.dialect)
    bound = await ConceptResolver(backend.execute, dialect=backend.dialect).bind(compiled)
    async with backend.cohort(bound) as run:
        persons = {int(p) for p in await run.persons()}
        rows = await run.tables(person_indexes([]))
    tables = {
        by: {
            cell.key: int(cell.values[MeasureKind.PERSON_COUNT])
            for cell in cells
            if cell.values[MeasureKind.PERSON_COUNT]
        }
        for by, cells in bound.tabulate(rows)
    }
    return persons, tables


# -- the engines ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed") / "fr.duckdb"
    generate(path, jurisdiction="FR", persons=PERSONS, seed=1, state=path.with_suffix(".state"))
    return path


@pytest.fixture(scope="module")
def cdm(database: Path) -> Cdm:
    return read_cdm(database)


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def backend(
    request: pytest.FixtureRequest, database: Path, runner: asyncio.Runner
) -> Iterator[Backend]:
    if request.param == "duckdb":
        engine: Backend = DuckDBBackend(database)
        yield engine
        runner.run(engine.close())
        return
    with copied_to_postgres(database) as dsn:
        engine = PostgresBackend(dsn, connections=1)
        yield engine
        runner.run(engine.close())


@pytest.mark.parametrize("protocol", ALL, ids=[p.name for p in ALL])
def test_a_seed_protocol_counts_exactly_the_reference_cohort(
    protocol: Protocol, cdm: Cdm, backend: Backend, runner: asyncio.Runner
) -> None:
    persons, tables = expected(cdm, protocol.query)
    assert persons, f"{protocol.name} finds nobody in the synthetic country"
    got_persons, got_tables = runner.run(answered(backend, protocol.query))
    assert got_persons == persons
    assert got_tables == {(): {(): len(persons)}, **tables}
