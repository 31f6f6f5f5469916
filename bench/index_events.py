"""The Coronado cohort (examples/02: the first COVID-19 diagnosis of an inpatient stay from
March 2020 as the index, type 2 diabetes recorded before it, death within 28 days of it), as
Tessera compiles it and as a hand-written DuckDB query, side by side on one synthetic country.

    .venv/bin/python bench/index_events.py [--persons 1000000 10000000] [--repeat 7]
                                           [--dir .tessera/bench]

For each size, a French synthetic database (generated once into `--dir`, reused) and:
- compile: `compile_query` of the question, and binding its codes to concept ids with the
  connector's resolver (the lookups cached, as a running connector has them);
- Tessera, one statement: the compiled SQL (the total), as the connector runs it where it
  computes no cohort table;
- Tessera, the connector's steps on DuckDB: the cohort into a temporary table, its persons
  listed (for the ledger), the tables computed from it, the table dropped;
- hand-written: the same cohort as an analyst would write it for DuckDB, with the same
  concept ids (resolved once, written into the SQL as literals).
Runs alternate (hand-written, then Tessera), after two warm-up runs each; medians of
`--repeat`. The counts must agree, or the script fails: the comparison is of the same cohort.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import duckdb

from connectors.compiler import DUCKDB, CompiledQuery, ConceptResolver, ConceptSet, compile_query
from connectors.compiler.compiled import Row, Statement
from schema.codes import Jurisdiction, MeasureKind
from schema.query import CohortQuery
from synth import generate

REPO: Final = Path(__file__).resolve().parent.parent
REFERENCE: Final = dt.date(2026, 1, 1)
U071: Final = {"vocabulary": "ICD10", "code": "U07.1"}
E11: Final = {"vocabulary": "ICD10", "code": "E11"}
CORONADO: Final = {
    "reference_date": REFERENCE,
    "index": {
        "events": [{"domain": "CONDITION", "codes": [U071], "visit": "INPATIENT"}],
        "occurrence": "FIRST",
        "window": {"start": "2020-03-01"},
    },
    "criteria": {
        "relative": [
            {
                "event": {"domain": "CONDITION", "codes": [E11]},
                "window": {"start_days": -36525, "end_days": -1},
            },
            {"event": {"domain": "DEATH"}, "window": {"start_days": 0, "end_days": 28}},
        ]
    },
}

HAND_WRITTEN: Final = """
WITH admissions AS (
    SELECT c.person_id, MIN(c.condition_start_date) AS index_date
    FROM condition_occurrence c
    JOIN visit_occurrence v ON v.visit_occurrence_id = c.visit_occurrence_id
    WHERE (c.condition_concept_id IN ({covid}) OR c.condition_source_concept_id IN ({covid}))
      AND v.visit_concept_id IN (9201, 262)
      AND c.condition_start_date >= DATE '2020-03-01'
    GROUP BY c.person_id
)
SELECT count(*)
FROM admissions a
JOIN person p ON p.person_id = a.person_id
JOIN tessera_person k ON k.person_id = a.person_id
WHERE p.year_of_birth <= 2026
  AND a.person_id NOT IN (SELECT person_id FROM tessera_optout)
  AND EXISTS (
      SELECT 1 FROM condition_occurrence d
      WHERE d.person_id = a.person_id
        AND (d.condition_concept_id IN ({diabetes})
             OR d.condition_source_concept_id IN ({diabetes}))
        AND d.condition_start_date < a.index_date
        AND d.condition_start_date >= a.index_date - 36525)
  AND EXISTS (
      SELECT 1 FROM death x
      WHERE x.person_id = a.person_id
        AND x.death_date BETWEEN a.index_date AND a.index_date + 28)
"""


def database(directory: Path, persons: int) -> Path:
    path = directory / f"index-events-{persons}" / "fr.duckdb"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        generate(
            path,
            jurisdiction=Jurisdiction.FR,
            persons=persons,
            seed=1,
            state=path.with_suffix(".state"),
        )
        print(f"generated {persons:,} persons in {time.perf_counter() - started:.0f} s")
    return path


class Engine:
    def __init__(self, path: Path) -> None:
        self.con = duckdb.connect(str(path), read_only=True)
        self.con.execute("SET enable_progress_bar = false")
        self.resolver = ConceptResolver(self._execute, dialect=DUCKDB)

    async def _execute(self, statement: Statement) -> list[Row]:
        rows: list[Row] = self.con.execute(statement.sql, list(statement.params)).fetchall()
        return rows

    def rows(self, sql: str, params: tuple[object, ...] = ()) -> list[Row]:
        rows: list[Row] = self.con.execute(sql, list(params)).fetchall()
        return rows

    def steps(self, bound: CompiledQuery) -> int:
        """The connector's steps on DuckDB: cohort table, its persons, the tables."""
        create = bound.create_cohort()
        self.rows(create.sql, create.params)
        try:
            self.rows(bound.cohort_persons().sql)
            tables = bound.cohort_tables()
            rows = self.rows(tables.sql, tables.params)
        finally:
            self.con.execute("DROP TABLE IF EXISTS tessera_cohort")
        return total(bound, rows)


def total(compiled: CompiledQuery, rows: list[Row]) -> int:
    ((_, cells), *_) = compiled.tabulate(rows)
    return int(cells[0].values[MeasureKind.PERSON_COUNT])


def timed(run: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = run()
    return result, (time.perf_counter() - started) * 1000


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values):,.1f} ms"


def measure(path: Path, repeat: int) -> None:
    engine = Engine(path)
    query = CohortQuery.model_validate(CORONADO)
    compiled, _ = timed(lambda: compile_query(query, dialect=DUCKDB))
    bound: CompiledQuery = asyncio.run(engine.resolver.bind(compiled))  # resolves and caches
    compile_ms = [timed(lambda: compile_query(query, dialect=DUCKDB))[1] for _ in range(repeat)]
    bind_ms = [timed(lambda: asyncio.run(engine.resolver.bind(compiled)))[1] for _ in range(repeat)]
    # The ids each concept set resolved to: a list of ints where the set stood.
    ids: dict[str, list[int]] = {
        cs.code: [int(i) for i in p]
        for cs, p in zip(compiled.params, bound.params, strict=True)
        if isinstance(cs, ConceptSet) and isinstance(p, list)
    }
    hand = HAND_WRITTEN.format(
        covid=", ".join(str(i) for i in ids["U07.1"]),
        diabetes=", ".join(str(i) for i in ids["E11"]),
    )

    def by_hand() -> int:
        return int(engine.rows(hand)[0][0])

    def one_statement() -> int:
        return total(bound, engine.rows(bound.sql, bound.params))

    def connector_steps() -> int:
        return engine.steps(bound)

    runs: dict[str, tuple[Callable[[], int], list[float]]] = {
        "hand-written DuckDB": (by_hand, []),
        "Tessera, one statement": (one_statement, []),
        "Tessera, the connector's steps": (connector_steps, []),
    }
    counts = {name: {run()} for name, (run, _) in runs.items()}
    for name, (run, _) in runs.items():
        counts[name].add(run())  # the second warm-up
    for _ in range(repeat):
        for name, (run, times) in runs.items():
            count, ms = timed(run)
            counts[name].add(count)
            times.append(ms)
    distinct = {c for found in counts.values() for c in found}
    if len(distinct) != 1:
        raise SystemExit(f"the counts disagree: {counts}")
    hand_ms = statistics.median(runs["hand-written DuckDB"][1])
    print(f"cohort: {distinct.pop():,} persons")
    print(f"compile: {median_ms(compile_ms)}; bind codes (cached): {median_ms(bind_ms)}")
    for name, (_, times) in runs.items():
        ratio = statistics.median(times) / hand_ms
        print(f"{name}: {median_ms(times)} ({ratio:.2f}x hand-written)")
    engine.con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--persons", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=REPO / ".tessera" / "bench")
    args = parser.parse_args()
    for persons in args.persons:
        print(f"== {persons:,} persons (FR)")
        measure(database(args.dir, persons), args.repeat)


if __name__ == "__main__":
    main()
