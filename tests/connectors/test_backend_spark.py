"""The Spark backend on a real local Spark session and on a Spark Connect server on loopback
(`pytest -m spark`): the fixture CDM written to Parquet gives the same answers as DuckDB for
every query shape, from the same compiled syntax tree; statements are queries only, a
cancelled or overlong statement is interrupted, and readiness names what is missing.

Needs the `spark` extra (`pip install -e '.[spark]'`) and Java 17: skipped without them, and
failed without them in CI (which installs the extra to run these)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_backend_postgres import answer
from test_compiler import NAMED_QUERIES

from connectors.backends import BackendOptions, open_backend
from connectors.backends.duckdb import DuckDBBackend
from connectors.backends.schemas import SchemaLayout
from connectors.errors import BackendFailed, BackendNotReady
from connectors.omop import PERSON_INDEX_TABLE
from connectors.transfer import copy_to_parquet
from schema.codes import Jurisdiction

pytestmark = pytest.mark.spark


def _spark_or_skip() -> None:
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


@pytest.fixture(scope="module")
def parquet_cdm(omop_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("parquet") / "cdm"
    report = copy_to_parquet(omop_db, directory)
    assert report.rows[PERSON_INDEX_TABLE] == 50
    assert "tessera_record_key" not in report.rows  # the node's secret stays in the node
    return directory


@pytest.fixture(scope="module")
def spark(parquet_cdm: Path) -> Iterator[Any]:
    """One local session for the module (the JVM starts once, ~10 s)."""
    _spark_or_skip()
    backend = open_backend(f"spark:///{parquet_cdm}", BackendOptions(threads=2))
    yield backend
    asyncio.run(backend.close())


@pytest.mark.parametrize("name", sorted(NAMED_QUERIES))
async def test_spark_answers_exactly_as_duckdb(spark: Any, omop_db: Path, name: str) -> None:
    duck = DuckDBBackend(omop_db)
    try:
        expected = await answer(duck, NAMED_QUERIES[name])
    finally:
        await duck.close()
    assert await answer(spark, NAMED_QUERIES[name]) == expected
    assert expected[()][()] > 0 or name != "everyone"


SYNTHETIC_PERSONS = 3_000


@pytest.fixture(scope="module")
def synthetic(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    """The synthetic CDM of a few thousand persons (`synth`), as a DuckDB file and as Parquet
    tables read by a second local backend (the same JVM)."""
    from synth import generate

    root = tmp_path_factory.mktemp("synthetic")
    database = root / "fr.duckdb"
    generate(
        database,
        jurisdiction=Jurisdiction.FR,
        persons=SYNTHETIC_PERSONS,
        seed=7,
        state=root / "state",
        progress=False,
    )
    copy_to_parquet(database, root / "parquet")
    backend = open_backend(f"spark:///{root / 'parquet'}")
    yield database, backend
    asyncio.run(backend.close())


@pytest.mark.parametrize("name", sorted(NAMED_QUERIES))
async def test_spark_answers_the_synthetic_cdm_exactly_as_duckdb(
    synthetic: tuple[Path, Any], name: str
) -> None:
    database, spark = synthetic
    duck = DuckDBBackend(database)
    try:
        expected = await answer(duck, NAMED_QUERIES[name])
    finally:
        await duck.close()
    assert await answer(spark, NAMED_QUERIES[name]) == expected
    assert expected[()][()] > 0 or name != "everyone"


async def test_readiness_register_version_and_release(spark: Any, omop_db: Path) -> None:
    duck = DuckDBBackend(omop_db)
    try:
        await spark.ping()
        assert await spark.optout_register_version() == await duck.optout_register_version()
        assert await spark.data_release() == await duck.data_release()
    finally:
        await duck.close()


class _Raw:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.params: tuple[object, ...] = ()


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM person",
        "DROP TABLE person",
        "CREATE TABLE x AS SELECT 1 AS a",
        "SELECT 1 AS a; DROP TABLE person",
        "CACHE TABLE person_copy AS SELECT * FROM person",
    ],
)
async def test_only_queries_are_run(spark: Any, sql: str) -> None:
    with pytest.raises(BackendFailed) as caught:
        await spark.execute(_Raw(sql))
    assert "person" not in caught.value.message
    assert (await spark.execute(_Raw("SELECT COUNT(*) FROM person")))[0][0] == 50


# Long enough to be running when it is cancelled (hours of work on two cores).
ENDLESS = "SELECT MAX(id % 7) AS m FROM range(100000000000)"


async def test_a_cancelled_statement_is_interrupted(spark: Any) -> None:
    task = asyncio.create_task(spark.execute(_Raw(ENDLESS)))
    await asyncio.sleep(3)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 15
    assert (await spark.execute(_Raw("SELECT COUNT(*) FROM person")))[0][0] == 50


async def test_a_statement_past_its_timeout_fails(parquet_cdm: Path, spark: Any) -> None:
    from connectors.backends.spark import SparkBackend

    backend = SparkBackend(parquet=parquet_cdm, statement_timeout_s=2)
    try:
        started = time.monotonic()
        with pytest.raises(BackendFailed, match="did not answer within 2 s"):
            await backend.execute(_Raw(ENDLESS))
        assert time.monotonic() - started < 20
    finally:
        await backend.close()


@pytest.fixture
def without_person_indexes(parquet_cdm: Path, tmp_path: Path) -> Path:
    missing = tmp_path / "cdm"
    missing.mkdir()
    for path in parquet_cdm.iterdir():
        if path.name != f"{PERSON_INDEX_TABLE}.parquet":
            shutil.copy(path, missing / path.name)
    return missing


async def test_readiness_names_the_missing_tables(spark: Any, without_person_indexes: Path) -> None:
    from connectors.backends.spark import SparkBackend

    backend = SparkBackend(parquet=without_person_indexes)
    try:
        with pytest.raises(
            BackendNotReady, match=f"lacks Tessera's tables \\({PERSON_INDEX_TABLE}"
        ):
            await backend.ping()
    finally:
        await backend.close()


async def test_a_relative_path_is_read_where_it_is(
    spark: Any, parquet_cdm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`spark:///cdm` is `cdm` in the connector's working directory, not in Spark's
    warehouse."""
    monkeypatch.chdir(parquet_cdm.parent)
    backend = open_backend(f"spark:///{parquet_cdm.name}")
    try:
        await backend.ping()
        assert (await backend.execute(_Raw("SELECT COUNT(*) FROM person")))[0][0] == 50
    finally:
        await backend.close()


# -- Spark Connect (sc://): a server of the pyspark install, on loopback -----------------------

CONNECT_START_S = 240


@pytest.fixture(scope="module")
def connect_server(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Spark Connect server (`sbin/start-connect-server.sh` of the installed pyspark,
    `local[2]`), its URL; stopped afterwards."""
    import pyspark
    from pyspark.sql import SparkSession

    from tessera.processes import free_port

    home = Path(pyspark.__file__).parent
    runtime = tmp_path_factory.mktemp("connect")
    port = free_port()
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOG_DIR": str(runtime / "logs"),
        "SPARK_PID_DIR": str(runtime / "pids"),
        "SPARK_IDENT_STRING": f"tessera-{port}",
    }
    start = [
        str(home / "sbin" / "start-connect-server.sh"),
        "--master",
        "local[2]",
        "--conf",
        f"spark.connect.grpc.binding.port={port}",
        "--conf",
        "spark.ui.enabled=false",
    ]
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=60)
    url = f"sc://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + CONNECT_START_S
        while True:
            try:
                SparkSession.builder.remote(url).create().stop()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        yield url
    finally:
        stop = [str(home / "sbin" / "stop-connect-server.sh")]
        subprocess.run(stop, env=env, check=False, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def on_cluster(connect_server: str, parquet_cdm: Path) -> Iterator[Any]:
    """The fixture CDM as tables of the server's catalog, in the database `cdm` (the OHDSI
    layout's names, one database for both), read through Spark Connect."""
    from pyspark.sql import SparkSession

    admin = SparkSession.builder.remote(connect_server).create()
    admin.sql("CREATE DATABASE cdm").collect()
    for path in sorted(parquet_cdm.iterdir()):
        admin.catalog.createTable(f"cdm.{path.stem}", path=str(path), source="parquet")
    admin.stop()
    backend = open_backend(connect_server, BackendOptions(layout=SchemaLayout("cdm", "cdm")))
    yield backend
    asyncio.run(backend.close())


@pytest.mark.parametrize("name", sorted(NAMED_QUERIES))
async def test_spark_connect_answers_exactly_as_duckdb(
    on_cluster: Any, omop_db: Path, name: str
) -> None:
    duck = DuckDBBackend(omop_db)
    try:
        expected = await answer(duck, NAMED_QUERIES[name])
    finally:
        await duck.close()
    assert await answer(on_cluster, NAMED_QUERIES[name]) == expected


async def test_spark_connect_readiness_and_cancellation(on_cluster: Any) -> None:
    await on_cluster.ping()
    task = asyncio.create_task(on_cluster.execute(_Raw(ENDLESS)))
    await asyncio.sleep(3)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 15
    assert (await on_cluster.execute(_Raw("SELECT COUNT(*) FROM person")))[0][0] == 50
