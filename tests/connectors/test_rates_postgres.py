"""On PostgreSQL, the person-time split by age and calendar year (`connectors.compiler.lexis`)
and a variable at an explicit index give exactly DuckDB's numbers, on a synthetic CDM whose
persons have a full date of birth (the fixture database has years of birth only): birthdays
made of their parts (MAKE_DATE of the year, the month and its first day, plus the day), every
measure of every cell."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.backends.duckdb import DuckDBBackend
from connectors.backends.postgres import PostgresBackend
from schema.codes import Dimension, Jurisdiction, MeasureKind, Occurrence
from synth import generate
from tests.connectors.test_backend_postgres import answer, copied_to_postgres
from tests.connectors.test_rates_pooled import question as rate_question
from tests.connectors.test_statistics_at_index import VARIABLES
from tests.connectors.test_statistics_at_index import question as statistics_question


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rates_postgres") / "fr.duckdb"
    generate(
        path, jurisdiction=Jurisdiction.FR, persons=2_000, seed=300, state=path.with_suffix(".s")
    )
    return path


@pytest.fixture(scope="module")
def synthetic_dsn(synthetic: Path) -> Iterator[str]:
    with copied_to_postgres(synthetic) as dsn:
        yield dsn


@pytest.fixture
async def backends(synthetic: Path, synthetic_dsn: str) -> AsyncIterator[tuple[Any, Any]]:
    duck = DuckDBBackend(synthetic)
    pg = PostgresBackend(synthetic_dsn, connections=2)
    yield duck, pg
    await duck.close()
    await pg.close()


async def test_split_person_time_is_duckdbs(backends: tuple[Any, Any]) -> None:
    duck, pg = backends
    query = rate_question(["U07.1"], 1, 365)
    expected = await answer(duck, query)
    assert await answer(pg, query) == expected
    # Persons in more than one year's cell: the split is about something.
    (by_band_and_year,) = [t for t in query.tables if len(t) == 2 and Dimension.CALENDAR_YEAR in t]
    cells = expected["measures"][by_band_and_year]
    total = expected["measures"][()][()][MeasureKind.PERSON_COUNT]
    assert sum(v[MeasureKind.PERSON_COUNT] for v in cells.values()) > total


@pytest.mark.parametrize("occurrence", list(Occurrence))
@pytest.mark.parametrize("name", ["age_at_index", "hba1c_last_in_the_year_before"])
async def test_a_variable_at_the_index_is_duckdbs(
    backends: tuple[Any, Any], name: str, occurrence: Occurrence
) -> None:
    duck, pg = backends
    query = statistics_question(VARIABLES[name], occurrence)
    expected = await answer(duck, query)
    assert await answer(pg, query) == expected
