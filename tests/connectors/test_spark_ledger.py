"""The privacy ledger inside Spark (`connectors.backends.spark_ledger`) on a real local session
(`pytest -m spark`): the same admissions, worst cases and tables as the ledger beside the
connector on the same sequence of questions; its spends kept across a restart and a
compaction; a charge on disk before anything is released; only the ledger's own writes sent.

Needs the `spark` extra and Java 17 (skipped without them, failed without them in CI)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_backend_spark import _spark_or_skip
from test_compiler import NAMED_QUERIES

from connectors.backends import open_backend
from connectors.backends.spark_ledger import (
    CHARGE_TABLE,
    SPEND_TABLE,
    SparkLedger,
    check_ledger_statement,
)
from connectors.compiler import ConceptResolver, compile_query
from connectors.errors import BackendFailed
from connectors.ledger import Account, MemoryLedger
from connectors.population import population
from connectors.transfer import copy_to_parquet
from schema.codes import Jurisdiction

RESEARCHER = Account("researcher", "r-1", 100)
ORGANISATION = Account("organisation", "o-1", 150)
OTHER = Account("researcher", "r-2", 100)
BOTH = (RESEARCHER, ORGANISATION)


def test_only_the_ledgers_writes_are_sent() -> None:
    """No Spark needed: the statements a ledger in database `led` may send."""
    assert (CHARGE_TABLE, SPEND_TABLE) == ("tessera_ledger_charge", "tessera_ledger_spend")
    ok = [
        "INSERT INTO led.tessera_ledger_charge SELECT * FROM (SELECT 1 AS a) AS r",
        "CREATE TABLE IF NOT EXISTS led.tessera_ledger_spend (upto BIGINT) USING PARQUET",
        "CREATE SCHEMA IF NOT EXISTS led",
        "CACHE TABLE tessera_excluded AS SELECT person_index FROM tessera_cohort",
        "SELECT COUNT(*) FROM tessera_excluded",
    ]
    for sql in ok:
        check_ledger_statement(sql, "led")
    refused = [
        "INSERT INTO led.person SELECT * FROM person",
        "INSERT INTO other.tessera_ledger_charge SELECT 1",
        "INSERT OVERWRITE led.tessera_ledger_charge SELECT 1",
        "DROP TABLE led.tessera_ledger_charge",
        "DELETE FROM led.tessera_ledger_charge",
        "CREATE TABLE led.tessera_ledger_charge (a INT)",
        "CREATE TABLE IF NOT EXISTS led.tessera_ledger_charge AS SELECT * FROM person",
        "CREATE SCHEMA IF NOT EXISTS cdm",
        "CACHE TABLE person_copy AS SELECT * FROM person",
        "SELECT 1; DROP TABLE led.tessera_ledger_charge",
    ]
    for sql in refused:
        with pytest.raises(BackendFailed):
            check_ledger_statement(sql, "led")


@pytest.fixture(scope="module")
def synthetic_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic CDM of 2,000 persons as Parquet tables."""
    _spark_or_skip()
    from synth import generate

    root = tmp_path_factory.mktemp("ledger-cdm")
    database = root / "fr.duckdb"
    generate(
        database,
        jurisdiction=Jurisdiction.FR,
        persons=2_000,
        seed=11,
        state=root / "state",
        progress=False,
    )
    copy_to_parquet(database, root / "parquet")
    return root / "parquet"


@pytest.fixture(scope="module")
def backend(synthetic_parquet: Path) -> Iterator[Any]:
    spark = open_backend(f"spark:///{synthetic_parquet}")
    yield spark
    asyncio.run(spark.close())


def _persons(*ranges: tuple[int, int]) -> Any:
    return np.concatenate([np.arange(a, b, dtype=np.uint32) for a, b in ranges])


# (accounts, persons, cost): overlapping cohorts, spends running into both caps, a cost
# above a cap, a free question, and a second researcher of the same organisation.
SEQUENCE: list[tuple[Sequence[Account], Any, int]] = [
    (BOTH, _persons((0, 600)), 40),
    (BOTH, _persons((300, 900)), 40),
    ((RESEARCHER,), _persons((0, 100), (850, 1_000)), 30),
    (BOTH, _persons((0, 1_000)), 20),
    ((OTHER, ORGANISATION), _persons((500, 1_200)), 50),
    (BOTH, _persons((250, 400)), 0),
    ((OTHER, ORGANISATION), _persons((0, 50)), 120),
    (BOTH, _persons((0, 2_000)), 10),
    ((OTHER,), _persons((1_100, 1_300)), 60),
]


async def _spends(ledger: SparkLedger, backend: Any, accounts: Sequence[Account]) -> dict[Any, int]:
    """Each account's and person's spend as the engine's tables hold it (read by the test)."""
    session = await backend._call(backend._session)
    keys = ", ".join(f"'{a.key}'" for a in accounts)
    charge, spend = ledger._statements.tables
    base = ledger._base
    sql = (
        "SELECT account, person_index, SUM(amount) FROM ("  # noqa: S608 (fixed names)
        f"SELECT account, person_index, amount FROM {charge} WHERE seq > {base} "
        f"UNION ALL SELECT account, person_index, spent FROM {spend} WHERE upto = {base}) "
        f"WHERE account IN ({keys}) AND person_index IS NOT NULL GROUP BY account, person_index"
    )

    def read(s: Any) -> list[Any]:
        for table in (charge, spend):
            s.catalog.refreshTable(table)  # the root session's listing of the files is old
        return list(s.sql(sql).collect())

    rows = await backend._interruptible(session, read)
    return {(r[0], int(r[1])): int(r[2]) for r in rows if int(r[2])}


def _memory_spends(memory: MemoryLedger, accounts: Sequence[Account]) -> dict[Any, int]:
    found: dict[Any, int] = {}
    for account in accounts:
        spend = memory.array(account, 0)
        for person in np.flatnonzero(spend):
            found[account.key, int(person)] = int(spend[person])
    return found


@pytest.mark.spark
@pytest.mark.parametrize("compact_every", [1_000, 2])
async def test_the_same_admissions_as_the_ledger_beside(
    backend: Any, tmp_path: Path, compact_every: int
) -> None:
    """Every question of SEQUENCE admits the same persons and tells the same worst cases;
    the spends left are the same, person by person (with a compaction every two questions
    too)."""
    memory = MemoryLedger()
    engine = SparkLedger(backend, directory=tmp_path / "ledger", compact_every=compact_every)
    try:
        for accounts, persons, cost in SEQUENCE:
            beside = await memory.admit(accounts, persons, cost)
            inside = await engine.admit(accounts, persons, cost)
            assert inside.counted.tolist() == beside.counted.tolist()
            assert inside.worst_case == beside.worst_case
            await engine.flush()  # a compaction, when due
        await engine.close()
        everyone = (RESEARCHER, ORGANISATION, OTHER)
        assert await _spends(engine, backend, everyone) == _memory_spends(memory, everyone)
        if compact_every == 2:
            assert engine._base > 0  # the last reads went through a compaction
        # A ledger opened again on the same tables (a restart) holds the same.
        again = SparkLedger(backend, directory=tmp_path / "ledger")
        for account in everyone:
            assert await again.worst_case(account) == await memory.worst_case(account)
        last = await memory.admit(BOTH, _persons((0, 2_000)), 40)
        assert (await again.admit(BOTH, _persons((0, 2_000)), 40)).counted.tolist() == (
            last.counted.tolist()
        )
        # A fit's iteration: what the rest of the fit may cost must be affordable too, and is
        # not charged (`Ledger.admit`'s reserve).
        for reserve in (0, BOTH[0].cap // 2, BOTH[0].cap):
            fit = await memory.admit(BOTH, _persons((0, 2_000)), 40, reserve=reserve)
            inside = await again.admit(BOTH, _persons((0, 2_000)), 40, reserve=reserve)
            assert inside.counted.tolist() == fit.counted.tolist()
            assert inside.worst_case == fit.worst_case
        await again.close()
    finally:
        await engine.close()


async def _ask(backend: Any, name: str, ledger: Any, accounts: Sequence[Account], cost: int) -> Any:
    """One question as the query service runs it: compute, admit, flush, tables."""
    query = NAMED_QUERIES[name]
    compiled = compile_query(query, dialect=backend.dialect)
    bound = await ConceptResolver(backend.execute, dialect=backend.dialect).bind(compiled)
    async with backend.cohort(bound) as cohort:
        persons = population(ledger, cohort)
        await ledger.prepare(accounts)
        await persons.compute()
        worst = await persons.admit(accounts, cost)
        flushed = asyncio.ensure_future(persons.flush())
        rows = await persons.tables()
        await flushed
    return compiled.tabulate(rows), worst


def _total(tables: Any) -> int:
    (_, cells), *_ = tables
    return sum(int(v) for c in cells for v in c.values.values())


COHORT_QUESTIONS = [
    ("everyone", 40),
    ("diabetic_women_40_69", 60),
    ("everyone", 40),
    ("exclusions_and_occurrences", 30),
    ("everyone", 30),
    ("prior_observation_at_reference_date", 50),
]


@pytest.mark.spark
async def test_cohorts_decided_in_the_engine_answer_as_beside(backend: Any, tmp_path: Path) -> None:
    """The service's way (`connectors.population`) with the ledger beside (person indexes to
    Python and back) and in the engine (nothing per person out): the same tables, exactly,
    question after question, as budgets run out; and nothing per person crossed."""
    memory = MemoryLedger()
    engine = SparkLedger(backend, directory=tmp_path / "ledger")
    try:
        everyone: list[int] = []
        for name, cost in COHORT_QUESTIONS:
            beside, worst_beside = await _ask(backend, name, memory, BOTH, cost)
            before = (backend.transferred.received, backend.transferred.sent)
            inside, worst_inside = await _ask(backend, name, engine, BOTH, cost)
            received = backend.transferred.received - before[0]
            sent = backend.transferred.sent - before[1]
            assert inside == beside
            assert worst_inside == worst_beside
            # The tables and a count: far below the 4 bytes a person of the beside way.
            assert sent == 0
            assert received < 2_000 + 200 * sum(len(cells) for _, cells in inside)
            if name == "everyone":
                everyone.append(_total(inside))
        free = await _ask(backend, "everyone", memory, BOTH, 0)
        assert free[0] == (await _ask(backend, "everyone", engine, BOTH, 0))[0]
        assert await _spends(engine, backend, BOTH) == _memory_spends(memory, BOTH)
        # The budgets ran out on the way: for some persons (the diabetic women), then for all.
        assert everyone[0] > everyone[1] > everyone[2] == 0
    finally:
        await engine.close()


@pytest.mark.spark
async def test_a_charge_is_on_disk_before_the_tables_are_released(
    synthetic_parquet: Path, tmp_path: Path
) -> None:
    """A connector that stops right after a question's charge (before its answer leaves)
    leaves the charge in the tables: a connector started again on them does not count the
    persons again. The charge's file is synced: its bytes are there for a new process."""
    directory = tmp_path / "ledger"
    spark = open_backend(f"spark:///{synthetic_parquet}")
    ledger = SparkLedger(spark, directory=directory)
    try:
        tables, worst = await _ask(spark, "everyone", ledger, (RESEARCHER,), 100)
        assert worst == {RESEARCHER.key: 100}
        files = [p for p in (directory / CHARGE_TABLE).iterdir() if p.suffix == ".parquet"]
        assert len(files) == 1
        assert files[0].stat().st_size > 0
    finally:
        await spark.close()  # the node stops, its ledger never closed
    again = open_backend(f"spark:///{synthetic_parquet}")
    restarted = SparkLedger(again, directory=directory)
    try:
        assert await restarted.worst_case(RESEARCHER) == 100
        tables, _ = await _ask(again, "everyone", restarted, (RESEARCHER,), 10)
        (_, cells), *_ = tables
        assert all(not any(c.values.values()) for c in cells)  # everyone is at the cap
    finally:
        await again.close()


def test_the_ledger_setting(tmp_path: Path) -> None:
    """`TESSERA_CONNECTOR_LEDGER`: beside by default; in the engine on Spark only, a cluster's
    ledger in the database the hub names."""
    from connectors.settings import ConnectorSettings
    from schema.errors import SettingsError

    base = {
        "TESSERA_CONNECTOR_JURISDICTION": "FR",
        "TESSERA_CONNECTOR_STATE_DIR": str(tmp_path / "state"),
        "TESSERA_CONNECTOR_AUDIT_DB": str(tmp_path / "audit.sqlite3"),
    }
    local = {**base, "TESSERA_CONNECTOR_DATABASE": "spark:///cdm"}
    cluster = {**base, "TESSERA_CONNECTOR_DATABASE": "sc://127.0.0.1:15002"}
    assert ConnectorSettings.from_env(local).ledger == "beside"
    engine = {"TESSERA_CONNECTOR_LEDGER": "engine"}
    assert ConnectorSettings.from_env({**local, **engine}).ledger == "engine"
    named = {**cluster, **engine, "TESSERA_CONNECTOR_LEDGER_SCHEMA": "tessera_ledger"}
    assert ConnectorSettings.from_env(named).ledger_schema == "tessera_ledger"
    refused = [
        ({**base, "TESSERA_CONNECTOR_DATABASE": "cdm.duckdb", **engine}, "needs a Spark"),
        ({**cluster, **engine}, "needs TESSERA_CONNECTOR_LEDGER_SCHEMA|needs --ledger-schema"),
        ({**local, **engine, "TESSERA_CONNECTOR_LEDGER_SCHEMA": "x"}, "cluster"),
        ({**named, "TESSERA_CONNECTOR_LEDGER_SCHEMA": "no-such name"}, "not a database name"),
        ({**local, "TESSERA_CONNECTOR_LEDGER": "elsewhere"}, "beside"),
    ]
    for env, problem in refused:
        with pytest.raises(SettingsError, match=problem):
            ConnectorSettings.from_env(env)
