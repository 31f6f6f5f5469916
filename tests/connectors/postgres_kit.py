"""PostgreSQL for the connector's tests: the real server on 127.0.0.1:5432
(`TESSERA_TEST_POSTGRES`), a DuckDB database copied into a database of its own, and every
answer a backend gives to a question, to compare two backends on the same data."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from connectors.backends.duckdb import DuckDBBackend
from connectors.backends.postgres import PostgresBackend
from connectors.compiler import ConceptResolver, compile_query
from connectors.transfer import copy_to_postgres
from schema.codes import Jurisdiction, MeasureKind
from schema.query import CohortQuery
from synth import generate

SERVER = os.environ.get("TESSERA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


async def admin(sql: str) -> None:
    con = await asyncpg.connect(f"{SERVER}/postgres", timeout=5)
    try:
        await con.execute(sql)
    finally:
        await con.close()


def reachable() -> bool:
    try:
        asyncio.run(admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    return True


@contextlib.contextmanager
def copied_to_postgres(database: Path) -> Iterator[str]:
    """The DSN of a new PostgreSQL database holding a copy of the DuckDB `database`, dropped
    afterwards (the test skipped where no server runs, failed in CI)."""
    if not reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {SERVER}")
        pytest.skip(f"PostgreSQL is not reachable at {SERVER}")
    name = f"tessera_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    dsn = f"{SERVER}/{name}"
    try:
        asyncio.run(copy_to_postgres(database, dsn))
        yield dsn
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def answer(backend: Any, query: CohortQuery) -> dict[Any, Any]:
    """Every cell's person count and cell key (equal keys show the record keys came along),
    and the cohort's person ids (what the differencing guard sees)."""
    compiled = compile_query(query, dialect=backend.dialect)
    bound = await ConceptResolver(backend.execute, dialect=backend.dialect).bind(compiled)
    tables = compiled.tabulate(await backend.execute(bound))
    answer: dict[Any, Any] = {
        by: {c.key: c.values[MeasureKind.PERSON_COUNT] for c in cells} for by, cells in tables
    }
    # Every measure's values (a variable's sums too), exactly.
    answer["measures"] = {by: {c.key: dict(c.values) for c in cells} for by, cells in tables}
    answer["population"] = sorted(row[0] for row in await backend.execute(bound.population()))
    # What the query service runs: the same persons and cells through one cohort.
    async with backend.cohort(bound) as cohort:
        assert await cohort.optout_register_version() == await backend.optout_register_version()
        persons = np.sort(await cohort.persons())
        assert persons.tolist() == answer["population"]
        tabulated = compiled.tabulate(await cohort.tables(persons[:0]))
        # Leaving persons out (whose budget is spent) takes them out of every cell.
        fewer = compiled.tabulate(await cohort.tables(persons[:3]))
    assert {
        by: {c.key: c.values[MeasureKind.PERSON_COUNT] for c in cells} for by, cells in tabulated
    } == {by: cells for by, cells in answer.items() if by not in ("population", "measures")}
    answer["fewer"] = {
        by: {c.key: c.values[MeasureKind.PERSON_COUNT] for c in cells} for by, cells in fewer
    }
    if len(persons) >= 3:
        assert answer["fewer"][()][()] == answer[()][()] - 3
    return answer


# A synthetic CDM whose persons have a full date of birth (the fixture database has years of
# birth only), in DuckDB and copied into PostgreSQL.
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
async def synthetic_backends(synthetic: Path, synthetic_dsn: str) -> AsyncIterator[tuple[Any, Any]]:
    duck = DuckDBBackend(synthetic)
    pg = PostgresBackend(synthetic_dsn, connections=2)
    yield duck, pg
    await duck.close()
    await pg.close()
