"""What moves between Spark and the connector's Python, per question (opt-in; the spark extra).

    .venv/bin/python -m bench.spark_transfer [--persons 1000000] [--dir .tessera/bench]

Generates the synthetic French CDM of `--persons` once into `--dir` (reused), writes it to
Parquet, and asks a few question shapes through the Spark backend on a local session
(`spark:///`), as the connector does: the cohort into a cached view, its person indexes to
Python for the ledger, then the tables without the persons the ledger leaves out, sent back
to Spark as a view. For each, the bytes of the person indexes that came to Python (Arrow,
int32), of the persons sent back (int64: none for an applicant with budget left, every one of
the cohort at the cap), and of the tables' rows; and the wall-clock time of each step. The
same questions on DuckDB, on the same data, give the floor. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np

from connectors.backends import open_backend
from connectors.backends.duckdb import DuckDBBackend
from connectors.compiler import ConceptResolver, compile_query
from connectors.transfer import copy_to_parquet
from schema.codes import Dimension, Jurisdiction, Vocabulary
from schema.query import AgeRange, CohortQuery, Criteria, EventCriterion
from synth import generate

REFERENCE = dt.date(2025, 1, 1)
QUESTIONS: dict[str, CohortQuery] = {
    "everyone, by sex": CohortQuery(
        criteria=Criteria(), reference_date=REFERENCE, tables=[(Dimension.SEX,)]
    ),
    "diabetic women 40-69, by 10-year band": CohortQuery(
        criteria=Criteria(
            sex="FEMALE",
            age=AgeRange(min=40, max=69),
            conditions=[EventCriterion(vocabulary=Vocabulary.ICD10, code="E11")],
        ),
        reference_date=REFERENCE,
        tables=[(Dimension.AGE_BAND_10,)],
    ),
    "hypertension, three tables": CohortQuery(
        criteria=Criteria(conditions=[EventCriterion(vocabulary=Vocabulary.ICD10, code="I10")]),
        reference_date=REFERENCE,
        tables=[
            (Dimension.SEX,),
            (Dimension.SEX, Dimension.AGE_BAND_5),
            (Dimension.AGE_BAND_20, Dimension.CALENDAR_YEAR),
        ],
    ),
}


async def _ask(backend: Any, query: CohortQuery, *, at_cap: bool) -> dict[str, float]:
    compiled = compile_query(query, dialect=backend.dialect)
    bound = await ConceptResolver(backend.execute, dialect=backend.dialect).bind(compiled)
    async with backend.cohort(bound) as cohort:
        started = time.perf_counter()
        persons = await cohort.persons()
        listed = time.perf_counter()
        # At the cap, the ledger leaves every person out; with budget left, nobody.
        excluded = persons if at_cap else persons[:0]
        rows = await cohort.tables(excluded)
        done = time.perf_counter()
    return {
        "persons": len(persons),
        "to_python_bytes": int(persons.size * 4),  # int32 person indexes, as Arrow sends them
        "to_engine_bytes": int(np.asarray(excluded, dtype=np.int64).nbytes),
        "rows_bytes": len(pickle.dumps(rows)),
        "persons_s": listed - started,
        "tables_s": done - listed,
    }


async def _run(database: Path, parquet: Path) -> None:
    spark = open_backend(f"spark:///{parquet}")
    duck = DuckDBBackend(database)
    try:
        await spark.ping()  # the JVM starts here
        for name, query in QUESTIONS.items():
            for at_cap in (False, True):
                for label, backend in (("duckdb", duck), ("spark", spark)):
                    await _ask(backend, query, at_cap=at_cap)  # warm
                    m = await _ask(backend, query, at_cap=at_cap)
                    print(
                        f"{name:40} {'at cap' if at_cap else 'fresh':7} {label:7} "
                        f"{m['persons']:>9,} persons  to Python {m['to_python_bytes']:>11,} B  "
                        f"to engine {m['to_engine_bytes']:>11,} B  rows {m['rows_bytes']:>6,} B  "
                        f"persons {m['persons_s']:6.2f} s  tables {m['tables_s']:6.2f} s",
                        flush=True,
                    )
    finally:
        await spark.close()
        await duck.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path(".tessera/bench"))
    args = parser.parse_args()
    database = args.dir / f"spark-{args.persons}.duckdb"
    if not database.exists():
        generate(
            database,
            jurisdiction=Jurisdiction.FR,
            persons=args.persons,
            seed=42,
            state=args.dir / f"spark-{args.persons}.state",
            progress=False,
        )
    parquet = args.dir / f"spark-{args.persons}.parquet"
    if not parquet.exists():
        copy_to_parquet(database, parquet)
    asyncio.run(_run(database, parquet))


if __name__ == "__main__":
    main()
