"""The PostgreSQL backend against the real server on 127.0.0.1:5432: the same data copied from
DuckDB gives the same counts for every query shape, from the same compiled syntax tree."""

from __future__ import annotations

import asyncio
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
import pytest
from test_compiler import NAMED_QUERIES

from connectors.backends.duckdb import DuckDBBackend
from connectors.backends.postgres import PostgresBackend
from connectors.backends.schemas import SchemaLayout
from connectors.errors import BackendFailed, BackendNotReady
from connectors.omop import DATA_RELEASE_TABLE, PERSON_INDEX_TABLE
from connectors.prepare import prepare_database
from connectors.transfer import copy_to_postgres
from tests.connectors.postgres_kit import SERVER, admin, answer, copied_to_postgres, reachable


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
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    dsn = f"{SERVER}/{name}"
    try:
        asyncio.run(copy_to_postgres(omop_db, dsn))
        asyncio.run(_into_schemas(dsn, OHDSI))
        yield dsn
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["public", "ohdsi"])
def layout_dsn(
    request: pytest.FixtureRequest, postgres_dsn: str
) -> tuple[str, SchemaLayout | None]:
    """The same data in PostgreSQL's `public` schema, or in the OHDSI layout (`cdm` and
    `vocab`): a plain fixture, so that the OHDSI copy (made with `asyncio.run`) is made
    before any event loop runs, whatever the order the tests come in."""
    if request.param == "ohdsi":
        return request.getfixturevalue("ohdsi_dsn"), OHDSI
    return postgres_dsn, None


@pytest.fixture
async def backends(
    omop_db: Path, layout_dsn: tuple[str, SchemaLayout | None]
) -> AsyncIterator[tuple[Any, Any]]:
    """DuckDB and PostgreSQL on the same data, PostgreSQL's in the layout of `layout_dsn`
    with the connection's `search_path` left alone."""
    dsn, layout = layout_dsn
    pg = PostgresBackend(dsn, connections=2, layout=layout)
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
    if not reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {SERVER}")
        pytest.skip(f"PostgreSQL is not reachable at {SERVER}")
    hub = tmp_path / "hub.duckdb"
    shutil.copy(bare_cdm_db, hub)
    prepare_database(hub, state=tmp_path / "state", release="2026-11")
    name = f"tessera_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
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
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
