"""The PostgreSQL backend against the real server on 127.0.0.1:5432: the same data copied from
DuckDB gives the same counts for every query shape, from the same compiled syntax tree."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import duckdb
import numpy as np
import pytest
from test_compiler import NAMED_QUERIES

from connectors.backends.duckdb import DuckDBBackend
from connectors.backends.postgres import PostgresBackend
from connectors.backends.schemas import SchemaLayout
from connectors.compiler import ConceptResolver, compile_query
from connectors.errors import BackendFailed, BackendNotReady
from connectors.omop import DATA_RELEASE_TABLE, PERSON_INDEX_TABLE
from connectors.prepare import prepare_database
from connectors.transfer import copy_to_postgres
from schema.codes import MeasureKind
from schema.query import CohortQuery

SERVER = os.environ.get("TESSERA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


async def _admin(sql: str) -> None:
    con = await asyncpg.connect(f"{SERVER}/postgres", timeout=5)
    try:
        await con.execute(sql)
    finally:
        await con.close()


def _reachable() -> bool:
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    return True


@contextlib.contextmanager
def copied_to_postgres(database: Path) -> Iterator[str]:
    """The DSN of a new PostgreSQL database holding a copy of the DuckDB `database`, dropped
    afterwards (the test skipped where no server runs, failed in CI)."""
    if not _reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {SERVER}")
        pytest.skip(f"PostgreSQL is not reachable at {SERVER}")
    name = f"tessera_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    dsn = f"{SERVER}/{name}"
    try:
        asyncio.run(copy_to_postgres(database, dsn))
        yield dsn
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def postgres_dsn(omop_db: Path) -> Iterator[str]:
    with copied_to_postgres(omop_db) as dsn:
        yield dsn


OHDSI = SchemaLayout("cdm", "vocab")


async def _into_schemas(dsn: str, layout: SchemaLayout) -> None:
    """Move every table out of `public` as the OHDSI layout has them: the vocabularies into
    one schema, the CDM and Tessera's tables into another."""
    con = await asyncpg.connect(dsn, timeout=5)
    try:
        for schema in {layout.cdm, layout.vocabulary}:
            await con.execute(f"CREATE SCHEMA {schema}")
        tables = await con.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        for row in tables:
            name = row["table_name"]
            await con.execute(f"ALTER TABLE public.{name} SET SCHEMA {layout.schema_of(name)}")
    finally:
        await con.close()


@pytest.fixture(scope="module")
def ohdsi_dsn(omop_db: Path, postgres_dsn: str) -> Iterator[str]:
    """The same CDM as `postgres_dsn`, in the OHDSI layout: `cdm` and `vocab`, none in public."""
    name = f"tessera_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    dsn = f"{SERVER}/{name}"
    try:
        asyncio.run(copy_to_postgres(omop_db, dsn))
        asyncio.run(_into_schemas(dsn, OHDSI))
        yield dsn
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["public", "ohdsi"])
async def backends(
    request: pytest.FixtureRequest, omop_db: Path, postgres_dsn: str
) -> AsyncIterator[tuple[Any, Any]]:
    """DuckDB and PostgreSQL on the same data: in PostgreSQL's `public` schema, or in the
    OHDSI layout (`cdm` and `vocab`) with the connection's `search_path` left alone."""
    if request.param == "ohdsi":
        pg = PostgresBackend(request.getfixturevalue("ohdsi_dsn"), connections=2, layout=OHDSI)
    else:
        pg = PostgresBackend(postgres_dsn, connections=2)
    duck = DuckDBBackend(omop_db)
    yield duck, pg
    await duck.close()
    await pg.close()


async def test_the_ohdsi_layout_is_ready_only_with_its_schemas(ohdsi_dsn: str) -> None:
    """Without its schemas the node says which tables it misses, and where it looked."""
    for layout, missing in (
        (None, "person"),
        (SchemaLayout("cdm", "cdm"), "cdm.concept, cdm.concept_ancestor"),
    ):
        backend = PostgresBackend(ohdsi_dsn, connections=1, layout=layout)
        with pytest.raises(BackendNotReady, match=f"lacks OMOP CDM tables: {missing}"):
            await backend.ping()
        await backend.close()
    backend = PostgresBackend(ohdsi_dsn, connections=1, layout=OHDSI)
    await backend.ping()
    assert await backend.data_release()
    await backend.close()


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


@pytest.mark.parametrize("name", sorted(NAMED_QUERIES))
async def test_postgres_answers_exactly_as_duckdb(backends: tuple[Any, Any], name: str) -> None:
    duck, pg = backends
    query = NAMED_QUERIES[name]
    expected = await answer(duck, query)
    assert await answer(pg, query) == expected
    assert expected[()][()] > 0 or name != "everyone"


async def test_readiness_and_register_version(backends: tuple[Any, Any]) -> None:
    duck, pg = backends
    await pg.ping()
    assert await pg.optout_register_version() == await duck.optout_register_version()
    assert await pg.data_release() == await duck.data_release()


async def test_sessions_are_read_only(backends: tuple[Any, Any]) -> None:
    _, pg = backends

    class Statement:
        sql = "DELETE FROM person"
        params: tuple[object, ...] = ()

    with pytest.raises(BackendFailed) as caught:
        await pg.execute(Statement())
    assert "DELETE" not in caught.value.message


async def test_an_unreachable_server_is_not_ready() -> None:
    backend = PostgresBackend("postgresql://postgres@127.0.0.1:9/none")
    with pytest.raises(BackendNotReady):
        await backend.ping()
    await backend.close()


def test_copy_command_refuses_to_append_to_a_hub_database(omop_db: Path, postgres_dsn: str) -> None:
    run = [sys.executable, "-m", "tessera", "connector", "copy-to-postgres"]
    refused = subprocess.run(
        [*run, "--database", str(omop_db), "--dsn", postgres_dsn],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2
    assert "already holds rows" in refused.stderr
    assert "Traceback" not in refused.stderr
    replaced = subprocess.run(
        [*run, "--database", str(omop_db), "--dsn", postgres_dsn, "--replace"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert replaced.returncode == 0, replaced.stderr
    assert "person" in replaced.stdout


async def _table(dsn: str, sql: str) -> list[tuple[object, ...]]:
    con = await asyncpg.connect(dsn)
    try:
        return [tuple(row) for row in await con.fetch(sql)]
    finally:
        await con.close()


def test_copy_takes_person_indexes_and_the_release_along(bare_cdm_db: Path, tmp_path: Path) -> None:
    if not _reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {SERVER}")
        pytest.skip(f"PostgreSQL is not reachable at {SERVER}")
    hub = tmp_path / "hub.duckdb"
    shutil.copy(bare_cdm_db, hub)
    prepare_database(hub, state=tmp_path / "state", release="2026-11")
    name = f"tessera_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    dsn = f"{SERVER}/{name}"
    try:
        report = asyncio.run(copy_to_postgres(hub, dsn))

        assert report.rows[PERSON_INDEX_TABLE] == 50
        assert report.rows[DATA_RELEASE_TABLE] == 1
        with duckdb.connect(str(hub), read_only=True) as con:
            for sql in (
                "SELECT person_id, person_index FROM tessera_person ORDER BY 1",
                "SELECT release, prepared_at FROM tessera_data_release",
            ):
                expected = con.execute(sql).fetchall()
                assert asyncio.run(_table(dsn, sql)) == expected, sql
        indexes = asyncio.run(
            _table(dsn, "SELECT indexdef FROM pg_indexes WHERE tablename = 'tessera_person'")
        )
        assert any(str(d).endswith("(person_id)") for (d,) in indexes), indexes
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
