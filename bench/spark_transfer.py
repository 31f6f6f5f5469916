"""What moves between Spark and the connector's Python, per question (opt-in; the spark extra).

    .venv/bin/python -m bench.spark_transfer [--persons 1000000] [--dir .tessera/bench]
        [--question NAME ...] [--no-duckdb] [--engine-only] [--no-warm] [--driver-memory 6g]

Generates the synthetic French CDM of `--persons` once into `--dir` (reused), writes it to
Parquet, and asks a few question shapes through the Spark backend on a local session
(`spark:///`) as the connector does (`connectors.population`), with the privacy ledger in
either place:

- beside the connector (`connectors.ledger`): the cohort into a cached view, its person
  indexes to Python for the ledger, then the tables without the persons the ledger leaves out,
  sent back to Spark as a view;
- in the engine (`connectors.backends.spark_ledger`): the cohort cached, admission a cached
  view joined to the ledger's tables, the charges appended there, the tables without the
  persons left out; a count and the tables come back.

Each question is asked twice by a new applicant whose cap it costs: fresh (everyone counted
and charged), then at the cap (everyone left out). For each, the bytes that crossed between
the engine and Python both ways (Arrow buffers, as the backend counts them), and the
wall-clock time of each step; DuckDB with the ledger beside gives the floor. Nothing here is
a test.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

from connectors.backends.duckdb import DuckDBBackend
from connectors.backends.spark import SparkBackend
from connectors.backends.spark_ledger import SparkLedger
from connectors.compiler import ConceptResolver, compile_query
from connectors.ledger import Account, MemoryLedger
from connectors.population import population
from connectors.transfer import copy_to_parquet
from schema.codes import Dimension, Jurisdiction, MeasureKind, Vocabulary
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
    # Each person's follow-up: the observation period, death and outcome joined on the person.
    "incidence of death after metformin, by sex": CohortQuery.model_validate(
        {
            "reference_date": REFERENCE,
            "index": {
                "events": [{"domain": "DRUG", "codes": [{"vocabulary": "ATC", "code": "A10BA"}]}]
            },
            "criteria": {},
            "outcome": {
                "event": {"domain": "DEATH"},
                "window": {"start_days": 0, "end_days": 1900},
            },
            "measures": [{"kind": k} for k in ("PERSON_COUNT", "PERSON_DAYS", "OUTCOME_EVENTS")],
            "tables": [(Dimension.SEX,)],
        }
    ),
}


# One applicant (a researcher of an organisation) per placement and question: its first
# question costs the whole cap (everyone counted and charged), the second finds everyone at
# the cap (everyone left out).
CAP = 100


async def _ask(
    backend: Any, query: CohortQuery, ledger: Any, accounts: tuple[Account, ...]
) -> dict[str, float]:
    """One question as `QueryService` runs it (`connectors.population`), its steps timed and
    the bytes that crossed counted by the backend (Arrow buffers, both ways)."""
    compiled = compile_query(query, dialect=backend.dialect)
    bound = await ConceptResolver(backend.execute, dialect=backend.dialect).bind(compiled)
    moved = getattr(backend, "transferred", None)
    before = (moved.received, moved.sent) if moved is not None else (0, 0)
    async with backend.cohort(bound) as cohort:
        persons = population(ledger, cohort)
        await ledger.prepare(accounts)
        started = time.perf_counter()
        await persons.compute()
        computed = time.perf_counter()
        await persons.admit(accounts, CAP)
        admitted = time.perf_counter()
        flushed = asyncio.ensure_future(persons.flush())
        rows = await persons.tables()
        await flushed
        done = time.perf_counter()
    after = (moved.received, moved.sent) if moved is not None else (0, 0)
    tables = compiled.tabulate(rows)
    (_, cells), *_ = tables
    return {
        "counted": sum(c.values[MeasureKind.PERSON_COUNT] for c in cells),
        "to_python_bytes": after[0] - before[0],
        "to_engine_bytes": after[1] - before[1],
        "rows_bytes": len(pickle.dumps(rows)),
        "cohort_s": computed - started,
        "admit_s": admitted - computed,
        "tables_s": done - admitted,
    }


def _accounts(label: str) -> tuple[Account, ...]:
    return (
        Account("researcher", f"bench-{label}", CAP),
        Account("organisation", f"bench-org-{label}", CAP),
    )


async def _run(
    database: Path,
    parquet: Path,
    state: Path,
    questions: list[str],
    *,
    duckdb: bool,
    warm: bool,
    beside: bool = True,
    driver_memory: str | None = None,
) -> None:
    config = {"spark.driver.memory": driver_memory} if driver_memory else None
    spark = SparkBackend(parquet=parquet, config=config)
    duck = DuckDBBackend(database)
    assert isinstance(spark, SparkBackend)
    in_engine = SparkLedger(spark, directory=state)
    placements = (
        *((("duckdb", "beside", duck, MemoryLedger()),) if duckdb else ()),
        *((("spark", "beside", spark, MemoryLedger()),) if beside else ()),
        ("spark", "engine", spark, in_engine),
    )
    try:
        await spark.ping()  # the JVM starts here
        for name in questions:
            query = QUESTIONS[name]
            for engine, place, backend, ledger in placements:
                if warm:
                    await _ask(backend, query, ledger, _accounts(f"warm-{engine}-{place}-{name}"))
                accounts = _accounts(f"{engine}-{place}-{name}")
                for at_cap in (False, True):
                    m = await _ask(backend, query, ledger, accounts)
                    print(
                        f"{name:40} {'at cap' if at_cap else 'fresh':7} {engine:6} {place:6} "
                        f"{m['counted']:>10,} counted  to Python {m['to_python_bytes']:>11,} B  "
                        f"to engine {m['to_engine_bytes']:>11,} B  rows {m['rows_bytes']:>6,} B  "
                        f"cohort {m['cohort_s']:6.2f} s  admit {m['admit_s']:6.2f} s  "
                        f"tables {m['tables_s']:6.2f} s",
                        flush=True,
                    )
    finally:
        await in_engine.close()
        await spark.close()
        await duck.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path(".tessera/bench"))
    parser.add_argument(
        "--question",
        action="append",
        choices=sorted(QUESTIONS),
        help="ask only this question (repeatable; default: all)",
    )
    parser.add_argument("--no-duckdb", action="store_true", help="Spark only")
    parser.add_argument("--engine-only", action="store_true", help="the ledger in Spark only")
    parser.add_argument("--no-warm", action="store_true", help="no warm-up question first")
    parser.add_argument(
        "--driver-memory",
        help="the local session's memory (spark.driver.memory, e.g. 6g): at 10M persons at the "
        "cap, the tables statement's NOT IN broadcasts every person left out",
    )
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
    with tempfile.TemporaryDirectory(dir=args.dir) as state:
        asyncio.run(
            _run(
                database,
                parquet,
                Path(state),
                args.question or list(QUESTIONS),
                duckdb=not (args.no_duckdb or args.engine_only),
                beside=not args.engine_only,
                driver_memory=args.driver_memory,
                warm=not args.no_warm,
            )
        )


if __name__ == "__main__":
    main()
