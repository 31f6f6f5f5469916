"""The DuckDB backend: off-loop execution, connection reuse, errors mapped once, readiness."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import shutil
import threading
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from connectors.backends.duckdb import DuckDBBackend
from connectors.compiler import CompiledQuery, ConceptResolver, Row, compile_query
from connectors.errors import BackendFailed, BackendNotReady
from schema.codes import Dimension, Vocabulary
from schema.errors import ErrorCode
from schema.query import CohortQuery, Criteria, EventCriterion

REFERENCE_DATE = dt.date(2024, 6, 30)


@dataclass(frozen=True)
class Raw:
    sql: str
    params: tuple[object, ...] = ()


@pytest.fixture
async def backend(omop_db: Path) -> AsyncIterator[DuckDBBackend]:
    backend = DuckDBBackend(omop_db, threads=2)
    yield backend
    await backend.close()


def diabetes_by_sex() -> CohortQuery:
    return CohortQuery(
        criteria=Criteria(conditions=[EventCriterion(vocabulary=Vocabulary.ICD10, code="E11")]),
        reference_date=REFERENCE_DATE,
        tables=[(Dimension.SEX,)],
    )


async def run(backend: DuckDBBackend, query: CohortQuery) -> list[Row]:
    compiled = compile_query(query, dialect=backend.dialect)
    bound = await ConceptResolver(backend.execute, dialect=backend.dialect).bind(compiled)
    return await backend.execute(bound)


NOBODY = np.empty(0, dtype=np.uint32)


async def test_executes_a_compiled_query(backend: DuckDBBackend) -> None:
    rows = await run(backend, diabetes_by_sex())
    # (grouping id, sex, persons)
    assert sorted(rows, key=str) == sorted(
        [(1, None, 19), (0, "FEMALE", 9), (0, "MALE", 10)], key=str
    )


async def test_statements_run_on_worker_threads_reusing_their_cursors(
    backend: DuckDBBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[str] = set()
    cursor = backend._cursor

    def spy() -> duckdb.DuckDBPyConnection:
        threads.add(threading.current_thread().name)
        return cursor()

    monkeypatch.setattr(backend, "_cursor", spy)
    results = await asyncio.gather(*(run(backend, diabetes_by_sex()) for _ in range(12)))
    assert all(sorted(r, key=str) == sorted(results[0], key=str) for r in results)
    assert threads
    assert all(name.startswith("duckdb") for name in threads)
    assert threading.current_thread().name not in threads
    assert len(backend._cursors) <= 2


async def test_ping_and_register_version(backend: DuckDBBackend) -> None:
    await backend.ping()
    assert await backend.optout_register_version() == "optout-2024-06-01"


async def test_database_errors_become_backend_failed_without_sql(backend: DuckDBBackend) -> None:
    with pytest.raises(BackendFailed) as raised:
        await backend.execute(Raw("SELECT secret_column FROM person WHERE person_id = $1", (7,)))
    assert raised.value.code is ErrorCode.BACKEND_FAILED
    assert "secret_column" not in raised.value.message
    assert "SELECT" not in raised.value.message
    assert isinstance(raised.value.__cause__, duckdb.Error)


async def test_the_database_is_opened_read_only(backend: DuckDBBackend) -> None:
    with pytest.raises(BackendFailed):
        await backend.execute(Raw("DELETE FROM tessera_optout"))
    assert await backend.execute(Raw("SELECT count(*) FROM tessera_optout")) == [(2,)]


async def test_readiness_fails_closed_without_tessera_tables(bare_cdm_db: Path) -> None:
    backend = DuckDBBackend(bare_cdm_db)
    try:
        with pytest.raises(BackendNotReady, match="tessera connector prepare") as raised:
            await backend.ping()
        assert "tessera_optout" in raised.value.message
        with pytest.raises(BackendNotReady, match="tessera connector prepare"):
            await backend.optout_register_version()
    finally:
        await backend.close()


async def test_readiness_fails_with_an_empty_optout_register(omop_db: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copy(omop_db, tmp_path / "copy.duckdb"))
    with duckdb.connect(str(copy)) as con:
        con.execute("DELETE FROM tessera_optout_register")
    backend = DuckDBBackend(copy)
    try:
        with pytest.raises(BackendNotReady, match="no version"):
            await backend.ping()
    finally:
        await backend.close()


async def test_readiness_names_missing_cdm_tables(tmp_path: Path) -> None:
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    backend = DuckDBBackend(empty)
    try:
        with pytest.raises(BackendNotReady, match="OMOP CDM tables: person"):
            await backend.ping()
    finally:
        await backend.close()


async def test_a_missing_database_is_not_ready_and_the_path_is_not_shown(tmp_path: Path) -> None:
    backend = DuckDBBackend(tmp_path / "nowhere" / "secret-name.duckdb")
    try:
        with pytest.raises(BackendNotReady) as raised:
            await backend.ping()
        assert "secret-name" not in raised.value.message
    finally:
        await backend.close()


async def test_a_closed_backend_refuses_statements(omop_db: Path) -> None:
    backend = DuckDBBackend(omop_db)
    await backend.ping()
    await backend.close()
    with pytest.raises(BackendFailed, match="closed"):
        await backend.execute(Raw("SELECT 1"))


def test_threads_must_be_positive(omop_db: Path) -> None:
    with pytest.raises(ValueError, match="threads"):
        DuckDBBackend(omop_db, threads=0)


# Minutes of work for DuckDB: only an interrupt ends it within the test's patience.
ENDLESS = Raw(
    "SELECT count(*) FROM range(200000) a, range(200000) b WHERE a.range * b.range = $1", (-1,)
)


async def check_interrupted(backend: DuckDBBackend, work: Coroutine[Any, Any, object]) -> None:
    """Cancels `work` once its statement runs, and checks that the statement stopped: were it
    only abandoned, the task would wait for minutes (the statement holds the one worker) and
    still be pending here."""
    task = asyncio.create_task(work)
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.wait({task}, timeout=30)
    assert task.cancelled()
    assert await backend.execute(Raw("SELECT 41 + $1", (1,))) == [(42,)]


async def test_a_cancelled_statement_is_interrupted_and_frees_its_worker(
    omop_db: Path,
) -> None:
    backend = DuckDBBackend(omop_db, threads=1)
    try:
        await backend.ping()  # opens the worker's cursor
        await check_interrupted(backend, backend.execute(ENDLESS))
    finally:
        await backend.close()


async def test_a_statement_cancelled_before_it_starts_never_runs(omop_db: Path) -> None:
    backend = DuckDBBackend(omop_db, threads=1)
    try:
        blocker = asyncio.create_task(backend.execute(ENDLESS))
        await asyncio.sleep(0.2)
        queued = asyncio.create_task(backend.execute(ENDLESS))
        await asyncio.sleep(0.05)
        queued.cancel()
        blocker.cancel()
        await asyncio.wait({queued, blocker}, timeout=30)
        assert queued.cancelled()
        assert blocker.cancelled()
        assert await backend.execute(Raw("SELECT 1")) == [(1,)]
    finally:
        await backend.close()


async def bound(backend: DuckDBBackend, query: CohortQuery) -> CompiledQuery:
    compiled = compile_query(query, dialect=backend.dialect)
    return await ConceptResolver(backend.execute, dialect=backend.dialect).bind(compiled)


async def test_concurrent_cohorts_each_keep_their_own_temporary_table(
    backend: DuckDBBackend,
) -> None:
    everyone = await bound(backend, CohortQuery(criteria=Criteria(), reference_date=REFERENCE_DATE))
    diabetic = await bound(backend, diabetes_by_sex())

    async def persons_and_tables(query: CompiledQuery) -> tuple[list[int], list[Row]]:
        async with backend.cohort(query) as cohort:
            persons = sorted(await cohort.persons())
            await asyncio.sleep(0)  # let the other cohort create its table meanwhile
            return persons, sorted(await cohort.tables(NOBODY), key=str)

    results = await asyncio.gather(*(persons_and_tables(q) for q in [everyone, diabetic] * 4))
    for query, (persons, rows) in zip([everyone, diabetic] * 4, results, strict=True):
        assert persons == sorted(r[0] for r in await backend.execute(query.population()))
        assert rows == sorted(await backend.execute(query), key=str)
    assert len(results[0][0]) > len(results[1][0]) == 19
    # Released with their cursors: a fresh cohort may create the table again.
    async with backend.cohort(diabetic) as cohort:
        assert len(await cohort.persons()) == 19


async def test_persons_the_ledger_leaves_out_are_not_counted(backend: DuckDBBackend) -> None:
    diabetic = await bound(backend, diabetes_by_sex())
    async with backend.cohort(diabetic) as cohort:
        persons = await cohort.persons()
        rows = await cohort.tables(persons[:4])
    assert dict((r[1], r[2]) for r in rows)[None] == 15
    # The same through the one-statement form (PostgreSQL's).
    leaving_out = diabetic.tables_statement(persons[:4])
    assert dict((r[1], r[2]) for r in await backend.execute(leaving_out))[None] == 15


async def test_concurrent_cohorts_each_leave_out_their_own_persons(backend: DuckDBBackend) -> None:
    diabetic = await bound(backend, diabetes_by_sex())

    async def total_without(leave_out: int) -> int:
        async with backend.cohort(diabetic) as cohort:
            persons = await cohort.persons()
            await asyncio.sleep(0)  # the other cohorts list theirs meanwhile
            rows = await cohort.tables(persons[:leave_out])
            return int(dict((r[1], r[2]) for r in rows)[None])

    totals = await asyncio.gather(*(total_without(n) for n in (0, 4, 9, 19) * 2))
    assert totals == [19, 15, 10, 0] * 2


async def test_a_cohort_cancelled_while_computing_is_interrupted(omop_db: Path) -> None:
    backend = DuckDBBackend(omop_db, threads=1)
    try:
        compiled = compile_query(CohortQuery(criteria=Criteria(), reference_date=REFERENCE_DATE))
        assert compiled.cohort_table is not None
        endless = dataclasses.replace(
            compiled,
            params=(-1,),
            cohort_table=dataclasses.replace(
                compiled.cohort_table,
                create_sql="CREATE TEMPORARY TABLE tessera_cohort AS SELECT a.range AS "
                "person_index FROM range(200000) a, range(200000) b WHERE a.range * b.range = $1",
                create_params=(0,),
            ),
        )

        async def persons() -> None:
            async with backend.cohort(endless) as cohort:
                await cohort.persons()

        await check_interrupted(backend, persons())
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("persons", "message"),
    [
        ("SELECT -5 AS person_index", "person index out of range"),
        ("SELECT 4294967296 AS person_index", "person index out of range"),
        (
            "SELECT CAST(NULL AS BIGINT) AS person_index UNION ALL SELECT 7",
            "person without an index",
        ),
    ],
)
async def test_a_person_index_out_of_range_fails_the_cohort(
    backend: DuckDBBackend, persons: str, message: str
) -> None:
    compiled = compile_query(CohortQuery(criteria=Criteria(), reference_date=REFERENCE_DATE))
    assert compiled.cohort_table is not None
    hostile = dataclasses.replace(
        compiled,
        cohort_table=dataclasses.replace(
            compiled.cohort_table,
            create_sql=f"CREATE TEMPORARY TABLE tessera_cohort AS {persons}",
            create_params=(),
        ),
    )
    with pytest.raises(BackendFailed, match=message):
        async with backend.cohort(hostile) as cohort:
            await cohort.persons()


async def test_the_register_version_is_read_once_while_the_file_is_open(
    backend: DuckDBBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No process can write the file while this one has it open (DuckDB's lock), so the
    # version cannot change under the backend.
    statements: list[str] = []
    run = backend._run

    async def spy(sql: str, params: tuple[object, ...]) -> list[Row]:
        statements.append(sql)
        return await run(sql, params)

    monkeypatch.setattr(backend, "_run", spy)
    versions = {await backend.optout_register_version() for _ in range(3)}
    assert versions == {"optout-2024-06-01"}
    assert len(statements) == 1
