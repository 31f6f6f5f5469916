"""A node whose OMOP CDM lives in PostgreSQL, beside a DuckDB node, behind the real gateway:
the same data gives the same released numbers whichever engine holds it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from connectors.transfer import copy_to_postgres
from schema.codes import Jurisdiction
from tessera.local import LocalFederation
from tessera.processes import free_port
from tests.integration.federation_kit import PERSONS, TWIN_QUESTION, post

pytestmark = pytest.mark.integration

SERVER = os.environ.get("TESSERA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
FR, DE = Jurisdiction.FR, Jurisdiction.DE


async def _admin(sql: str) -> None:
    con = await asyncpg.connect(f"{SERVER}/postgres", timeout=5)
    try:
        await con.execute(sql)
    finally:
        await con.close()


def answers(federation: LocalFederation) -> dict[str, Any]:
    token = federation.researcher()
    status, body = post(federation.gateway_url, {"query": TWIN_QUESTION}, token)
    assert status == 200
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]["cohort"]
    return result


@pytest.fixture(scope="module")
def postgres_federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError):
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {SERVER}")
        pytest.skip(f"PostgreSQL is not reachable at {SERVER}")
    name = f"tessera_it_{uuid.uuid4().hex[:12]}"
    federation = LocalFederation(
        directory=tmp_path_factory.mktemp("postgres"),
        jurisdictions=(FR, DE),
        persons=PERSONS,
        seed=7,
        gateway_port=free_port(),
        node_ports=[free_port(), free_port()],
        console=False,
    )
    federation.prepare()
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(copy_to_postgres(federation.database(DE), f"{SERVER}/{name}"))
        federation.dsns = {DE: f"{SERVER}/{name}"}
        asyncio.run(federation.start())
        yield federation
    finally:
        federation.stop()
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_a_postgres_node_answers_like_its_duckdb_twin(
    postgres_federation: LocalFederation,
) -> None:
    args = postgres_federation.service("connector DE").args
    assert args[args.index("--database") + 1].startswith("postgresql://")
    from_postgres = answers(postgres_federation)
    # The same federation with DE back on its DuckDB file.
    postgres_federation.stop()
    postgres_federation.supervisor.services.clear()
    postgres_federation.dsns = {}
    asyncio.run(postgres_federation.start())
    from_duckdb = answers(postgres_federation)
    assert from_postgres == from_duckdb
    de = next(n for n in from_postgres["byJurisdiction"] if n["jurisdiction"] == "DE")
    assert de["status"] == "OK"
    assert de["count"]["value"] > 100
