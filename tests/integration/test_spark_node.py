"""A node whose OMOP CDM is read by Spark (a local session over Parquet tables), its privacy
ledger in the engine (`--ledger engine`), beside a DuckDB node, behind the real gateway: it
answers a cohort question with the count its data hold, as DuckDB computes it from the same
data, and its noise, and the charges are in the ledger's tables (`pytest -m spark`, with the
spark extra and Java 17)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.backends.duckdb import DuckDBBackend
from connectors.compiler import ConceptResolver, compile_query
from connectors.transfer import copy_to_parquet
from schema.codes import Jurisdiction, MeasureKind, Vocabulary
from schema.query import AgeRange, CohortQuery, Criteria, EventCriterion
from tessera.local import LocalFederation
from tessera.processes import Service, free_port
from tests.integration.federation_kit import PERSONS, TWIN_QUESTION, post

pytestmark = [pytest.mark.integration, pytest.mark.spark]

FR, DE = Jurisdiction.FR, Jurisdiction.DE
# The node's JVM starts before it is ready (~10 s on an idle machine, more on a busy one),
# and a question on a local Spark takes seconds where DuckDB takes milliseconds: the gateway
# waits for it as long as a slow hub's class would be given (README, "Apache Spark").
START_TIMEOUT_S = 300
SLOW_NODE_S = 240


@pytest.fixture(scope="module")
def spark_federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    problem = None
    try:
        import pyspark  # noqa: F401
    except ImportError:
        problem = "the spark extra is not installed (pip install -e '.[spark]')"
    if problem is None and shutil.which("java") is None:
        problem = "Java is not installed"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    directory = tmp_path_factory.mktemp("spark")
    federation = LocalFederation(
        directory=directory,
        jurisdictions=(FR, DE),
        persons=PERSONS,
        seed=7,
        gateway_port=free_port(),
        node_ports=[free_port(), free_port()],
        console=False,
        env={"TESSERA_CONNECTOR_QUERY_TIMEOUT_S": str(SLOW_NODE_S)},
        gateway_env={
            "TESSERA_GATEWAY_DEADLINE_S": str(SLOW_NODE_S),
            "TESSERA_GATEWAY_MAX_DEADLINE_S": str(SLOW_NODE_S),
        },
    )
    federation.prepare()
    parquet = directory / "de-parquet"
    copy_to_parquet(federation.database(DE), parquet)
    federation.dsns = {DE: f"spark:///{parquet}"}
    plain = federation.connector_service

    def in_the_engine(jurisdiction: Jurisdiction, **kwargs: Any) -> Service:
        service = plain(jurisdiction, **kwargs)
        if jurisdiction is DE:
            service = dataclasses.replace(service, args=[*service.args, "--ledger", "engine"])
        return service

    federation.connector_service = in_the_engine  # type: ignore[method-assign]
    try:
        asyncio.run(federation.start(START_TIMEOUT_S))
        yield federation
    finally:
        federation.stop()


async def _true_count(database: Path) -> int:
    """The exact count of TWIN_QUESTION's cohort in `database`, as DuckDB computes it."""
    query = CohortQuery(
        criteria=Criteria(
            age=AgeRange(min=40),
            conditions=[EventCriterion(vocabulary=Vocabulary.ICD10, code="E11")],
            drugs=[EventCriterion(vocabulary=Vocabulary.ATC, code="A10")],
        ),
        reference_date=dt.date(2026, 1, 1),
        tables=[],
    )
    duck = DuckDBBackend(database)
    try:
        compiled = compile_query(query, dialect=duck.dialect)
        bound = await ConceptResolver(duck.execute, dialect=duck.dialect).bind(compiled)
        (_, cells), *_ = compiled.tabulate(await duck.execute(bound))
        return cells[0].values[MeasureKind.PERSON_COUNT]
    finally:
        await duck.close()


def test_a_spark_node_answers_as_its_data_say(spark_federation: LocalFederation) -> None:
    """The released count of the node on Spark is its true count (computed by DuckDB from the
    same data) with the node's noise (sd 5): within 6 sd, or it counted other persons."""
    args = spark_federation.service("connector DE").args
    assert args[args.index("--database") + 1].startswith("spark:///")
    assert args[args.index("--ledger") + 1] == "engine"
    status, body = post(
        spark_federation.gateway_url,
        {"query": TWIN_QUESTION},
        spark_federation.researcher(),
        timeout_s=SLOW_NODE_S + 30,
    )
    assert status == 200
    assert "errors" not in body, body["errors"]
    answer = body["data"]["cohort"]
    de = next(n for n in answer["byJurisdiction"] if n["jurisdiction"] == "DE")
    assert de["status"] == "OK"
    truth = asyncio.run(_true_count(spark_federation.database(DE)))
    assert truth > 100
    assert abs(de["count"]["value"] - truth) <= 30
    fr = next(n for n in answer["byJurisdiction"] if n["jurisdiction"] == "FR")
    assert fr["status"] == "OK"  # its neighbour on DuckDB, behind the same gateway
    # The question's charges are a file of the ledger's table in the engine, not the files
    # of the ledger beside the connector.
    state = spark_federation.node_state(DE)
    assert list((state / "ledger-tables" / "tessera_ledger_charge").glob("part-*.parquet"))
    assert not (state / "ledger" / "spend").exists()
