"""Copying an OMOP CDM 5.4 DuckDB database (with Tessera's tables) into PostgreSQL, or out to
Parquet files for Spark (`copy_to_parquet`).

How the demo data, or a hub's DuckDB extract, gets into a real database server: the tables
are created from the same DDL (translated to PostgreSQL by sqlglot), filled with binary COPY,
indexed for the connector's queries and analysed. Record keys, person indexes and the data
release label are copied as they are, so the released numbers, and the persons the node's
privacy ledger charges, stay the same whichever backend answers. (Tessera's tables index
`person_id` by their primary keys.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import asyncpg
import duckdb
import sqlglot
from sqlglot import exp

from connectors.compiler import DUCKDB, POSTGRES
from connectors.omop import CDM_DDL, RECORD_KEY_TABLE, TESSERA_DDL

CHUNK_ROWS: Final = 200_000

# The lookups the connector's SQL makes: by person, by concept, by code.
INDEXES: Final = (
    "CREATE INDEX IF NOT EXISTS idx_person_id ON person (person_id)",
    "CREATE INDEX IF NOT EXISTS idx_condition_person ON condition_occurrence (person_id)",
    "CREATE INDEX IF NOT EXISTS idx_condition_concept ON condition_occurrence "
    "(condition_concept_id)",
    "CREATE INDEX IF NOT EXISTS idx_condition_source ON condition_occurrence "
    "(condition_source_concept_id)",
    "CREATE INDEX IF NOT EXISTS idx_drug_person ON drug_exposure (person_id)",
    "CREATE INDEX IF NOT EXISTS idx_drug_concept ON drug_exposure (drug_concept_id)",
    "CREATE INDEX IF NOT EXISTS idx_measurement_person ON measurement (person_id)",
    "CREATE INDEX IF NOT EXISTS idx_measurement_concept ON measurement (measurement_concept_id)",
    "CREATE INDEX IF NOT EXISTS idx_observation_person ON observation_period (person_id)",
    "CREATE INDEX IF NOT EXISTS idx_concept_code ON concept (vocabulary_id, concept_code)",
    "CREATE INDEX IF NOT EXISTS idx_ancestor ON concept_ancestor (ancestor_concept_id)",
)


@dataclass
class TransferReport:
    rows: dict[str, int] = field(default_factory=dict)
    elapsed_seconds: float = 0.0


def postgres_ddl() -> list[str]:
    ddls = (*CDM_DDL, *TESSERA_DDL)
    return [sqlglot.transpile(ddl, read=DUCKDB.sqlglot, write=POSTGRES.sqlglot)[0] for ddl in ddls]


def _table_name(ddl: str) -> str:
    table = sqlglot.parse_one(ddl, read=POSTGRES.sqlglot).find(exp.Table)
    assert table is not None
    return str(table.name)


# Table names come from Tessera's own DDL; the statements are still built as syntax trees.
def _drop(table: str) -> str:
    return str(
        exp.Drop(tables=[exp.to_table(table)], kind="TABLE", exists=True).sql(POSTGRES.sqlglot)
    )


def _has_rows(table: str) -> str:
    probe = exp.select("1").from_(exp.to_table(table))
    return str(exp.select(exp.Exists(this=probe)).sql(POSTGRES.sqlglot))


def _all_rows(table: str) -> str:
    return str(exp.select("*").from_(exp.to_table(table)).sql(DUCKDB.sqlglot))


async def copy_to_postgres(
    source: Path,
    dsn: str,
    *,
    replace: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> TransferReport:
    """Copy every CDM table Tessera reads, and Tessera's own tables, from `source` to `dsn`.
    With `replace`, existing tables of those names are dropped first; without it, a table that
    already exists and holds rows is an error (nothing is appended to a hub's data)."""
    started = time.perf_counter()
    report = TransferReport()
    ddls = postgres_ddl()
    con = await asyncpg.connect(dsn)
    try:
        with duckdb.connect(str(source), read_only=True) as db:
            present = {row[0] for row in db.execute("SHOW TABLES").fetchall()}
            for ddl in ddls:
                table = _table_name(ddl)
                if table not in present:
                    continue
                if replace:
                    await con.execute(_drop(table))
                await con.execute(ddl)
                if await con.fetchval(_has_rows(table)):
                    raise ValueError(f"{table} already holds rows; pass replace to overwrite")
                report.rows[table] = await _copy_table(db, con, table, progress)
        for index in INDEXES:
            await con.execute(index)
        await con.execute("ANALYZE")
    finally:
        await con.close()
    report.elapsed_seconds = time.perf_counter() - started
    return report


async def _copy_table(
    db: duckdb.DuckDBPyConnection,
    con: asyncpg.Connection,
    table: str,
    progress: Callable[[str, int], None] | None,
) -> int:
    cursor = db.cursor()
    try:
        cursor.execute(_all_rows(table))
        columns = [d[0] for d in cursor.description or ()]
        copied = 0
        while True:
            # DuckDB blocks while it reads: off the loop, one chunk at a time.
            chunk = await asyncio.to_thread(cursor.fetchmany, CHUNK_ROWS)
            if not chunk:
                return copied
            await con.copy_records_to_table(table, records=chunk, columns=columns)
            copied += len(chunk)
            if progress is not None:
                progress(table, copied)
    finally:
        cursor.close()


# Never exported: the record keys are a secret of the node, and no statement an engine runs
# reads them.
NOT_EXPORTED: Final = frozenset({RECORD_KEY_TABLE})


def _copy_to_file(table: str, path: Path) -> str:
    copy = exp.Copy(
        this=exp.select("*").from_(exp.to_table(table)).subquery(),
        kind=False,
        files=[exp.Literal.string(str(path))],
        params=[exp.CopyParameter(this=exp.var("FORMAT"), expression=exp.var("PARQUET"))],
    )
    return str(copy.sql(DUCKDB.sqlglot))


def copy_to_parquet(source: Path, directory: Path, *, replace: bool = False) -> TransferReport:
    """Write every CDM table Tessera reads, and Tessera's own tables but the record keys, from
    the DuckDB `source` to `directory`, one `<table>.parquet` each: what a local Spark session
    reads (`spark:///DIRECTORY`), and how a hub's extract reaches a data lake. Without
    `replace`, a table whose file exists is an error (nothing is overwritten)."""
    started = time.perf_counter()
    report = TransferReport()
    directory.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(source), read_only=True) as db:
        present = {row[0] for row in db.execute("SHOW TABLES").fetchall()}
        for ddl in (*CDM_DDL, *TESSERA_DDL):
            table = _table_name(ddl)
            if table not in present or table in NOT_EXPORTED:
                continue
            path = directory / f"{table}.parquet"
            if path.exists() and not replace:
                raise ValueError(f"{path.name} exists; pass replace to overwrite")
            db.execute(_copy_to_file(table, path))
            count = db.execute(exp.select("COUNT(*)").from_(exp.to_table(table)).sql()).fetchone()
            report.rows[table] = int(count[0]) if count else 0
    report.elapsed_seconds = time.perf_counter() - started
    return report
