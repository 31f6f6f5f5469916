"""Spark against DuckDB per question shape at 1M, 3M and 10M persons, the fixed cost of a
question separated from its scan, and a model of a national hub (opt-in; the spark extra).

    make bench-spark                 # 2,000, 1M, 3M and 10M persons, 3 runs: ~30 min idle
    .venv/bin/python -m bench.spark_scale --sizes 1000000 --runs 1
    .venv/bin/python -m bench.spark_scale --model-only   # the model again, from the last run

Each size's synthetic French CDM is generated once into `--dir` (a DuckDB database, then its
Parquet tables: what a local Spark session reads), and kept. Every question shape is compiled
by the connector's compiler for each engine, its concepts bound by its resolver, and run
through the connector's backends: DuckDB (2 threads) on the database, Spark (`spark:///`,
`local[2]`) on the Parquet tables of the same data. Two timings per shape and engine:

- `statement`: the question's one compiled statement (`Backend.execute`), the tables straight
  from the CDM: the engine's work and nothing else;
- `question`: as the connector runs it (`Backend.cohort`): the cohort computed once (Spark: a
  cached view; DuckDB: a temporary table), its person indexes to Python for the ledger, then
  the tables from the same rows.

Runs alternate the engines (DuckDB, then Spark, shape by shape) so that a shared machine's
load falls on both alike, and each figure is the median of `--runs` after one warm-up. A tiny
CDM (2,000 persons, every shape; the larger sizes run the cohort shapes, `SCALING`, unless
`--shapes` says otherwise) gives each shape's fixed cost directly (session, planning, job launch:
nothing to scan); the straight line of time against the rows of the tables a shape reads,
over the larger sizes, gives it again as its intercept, and its slope the cost of a row.
The model (`model`) takes those costs to a hub of 67 million persons and 1.2 billion events on
a cluster of N executors. Results go to `--dir/spark_scale.json`; nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import functools
import json
import math
import os
import platform
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp

from connectors.backends import Backend, BackendOptions, open_backend
from connectors.backends.spark import SparkBackend
from connectors.compiler import SPARK, CompiledQuery, ConceptResolver, compile_query
from connectors.transfer import copy_to_parquet
from schema.codes import Dimension, Jurisdiction, MeasureKind
from schema.query import RATES, CohortQuery
from synth import generate

REFERENCE: Final = dt.date(2025, 1, 1)
SIZES: Final = (1_000_000, 3_000_000, 10_000_000)
TINY: Final = 2_000
THREADS: Final = 2  # DuckDB's threads, the local Spark's cores: the same two for both
ENGINES: Final = ("duckdb", "spark")
SEED: Final = 42
STATEMENT_TIMEOUT_S: Final = 3600.0

E11: Final = {"vocabulary": "ICD10", "code": "E11"}
SHAPES: Final[dict[str, CohortQuery]] = {
    "count by sex": CohortQuery.model_validate(
        {"criteria": {}, "reference_date": REFERENCE, "tables": [(Dimension.SEX,)]}
    ),
    "condition, age band x sex": CohortQuery.model_validate(
        {
            "criteria": {"conditions": [E11]},
            "reference_date": REFERENCE,
            "tables": [(Dimension.AGE_BAND_10, Dimension.SEX)],
        }
    ),
    "drug within a year of a condition": CohortQuery.model_validate(
        {
            "reference_date": REFERENCE,
            "index": {"events": [{"domain": "CONDITION", "codes": [E11]}]},
            "criteria": {
                "relative": [
                    {
                        "event": {
                            "domain": "DRUG",
                            "codes": [{"vocabulary": "ATC", "code": "A10"}],
                        },
                        "window": {"start_days": 0, "end_days": 365},
                    }
                ]
            },
            "tables": [(Dimension.SEX,)],
        }
    ),
    "incidence rate (person-time)": CohortQuery.model_validate(
        {
            "reference_date": REFERENCE,
            "index": {
                "events": [{"domain": "DRUG", "codes": [{"vocabulary": "ATC", "code": "A10BA"}]}]
            },
            "criteria": {},
            "outcome": {
                "event": {"domain": "CONDITION", "codes": [{"vocabulary": "ICD10", "code": "I21"}]},
                "window": {"start_days": 0, "end_days": 1825},
            },
            "measures": [{"kind": k} for k in (MeasureKind.PERSON_COUNT, *RATES)],
            "tables": [(Dimension.SEX,)],
        }
    ),
    "survival after a diagnosis": CohortQuery.model_validate(
        {
            "reference_date": REFERENCE,
            "index": {"events": [{"domain": "CONDITION", "codes": [E11]}]},
            "criteria": {},
            "tables": [(Dimension.FOLLOW_UP,)],
            "survival": {"outcome": {"domain": "DEATH"}, "interval_days": 365, "max_days": 3650},
        }
    ),
}


# The shapes run above the tiny CDM by default: an incidence rate's and survival's follow-up
# becomes a nested-loop join on Spark (bench/README.md), hours at 1M persons.
SCALING: Final = (
    "count by sex",
    "condition, age band x sex",
    "drug within a year of a condition",
)

# -- the data ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dataset:
    """One size's CDM: the DuckDB database, its Parquet tables, and per table its rows and
    each column's bytes in Parquet (compressed: what a scan of that column reads)."""

    persons: int
    database: Path
    parquet: Path
    rows: Mapping[str, int]
    column_bytes: Mapping[str, Mapping[str, int]]


def dataset(persons: int, directory: Path) -> Dataset:
    """The CDM of `persons` persons in `directory`: generated and written to Parquet the
    first time (each into a name of its own, renamed when complete), read after that."""
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / f"spark-{persons}.duckdb"
    if not database.exists():
        partial = directory / f"spark-{persons}.duckdb.partial"
        partial.unlink(missing_ok=True)
        state = directory / f"spark-{persons}.state"
        shutil.rmtree(state, ignore_errors=True)
        generate(
            partial,
            jurisdiction=Jurisdiction.FR,
            persons=persons,
            seed=SEED,
            state=state,
            progress=False,
        )
        partial.rename(database)
    parquet = directory / f"spark-{persons}.parquet"
    if not parquet.exists():
        partial_dir = directory / f"spark-{persons}.parquet.partial"
        shutil.rmtree(partial_dir, ignore_errors=True)
        copy_to_parquet(database, partial_dir)
        partial_dir.rename(parquet)
    rows: dict[str, int] = {}
    column_bytes: dict[str, dict[str, int]] = {}
    for path in sorted(parquet.glob("*.parquet")):
        meta = pq.ParquetFile(path).metadata
        table = path.name.removesuffix(".parquet")
        rows[table] = meta.num_rows
        sizes: dict[str, int] = {}
        for group in range(meta.num_row_groups):
            row_group = meta.row_group(group)
            for c in range(row_group.num_columns):
                column = row_group.column(c)
                sizes[column.path_in_schema] = (
                    sizes.get(column.path_in_schema, 0) + column.total_compressed_size
                )
        column_bytes[table] = sizes
    return Dataset(persons, database, parquet, rows, column_bytes)


@dataclass(frozen=True, slots=True)
class Reads:
    """What a shape's statement reads: each table's rows, and the bytes of the columns it
    names (Parquet's column pruning: a scan reads those columns only)."""

    rows: Mapping[str, int]
    pruned_bytes: Mapping[str, int]

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def total_pruned_bytes(self) -> int:
        return sum(self.pruned_bytes.values())


def reads(compiled: CompiledQuery, data: Dataset) -> Reads:
    """The tables of `data` that the Spark statement of a shape names, with their rows, and
    the bytes of the columns it names in them."""
    tree = sqlglot.parse_one(compiled.sql, read=SPARK.sqlglot)
    tables = {t.name for t in tree.find_all(exp.Table)} & set(data.rows)
    columns = {c.name for c in tree.find_all(exp.Column)}
    return Reads(
        rows={t: data.rows[t] for t in sorted(tables)},
        pruned_bytes={
            t: sum(size for name, size in data.column_bytes[t].items() if name in columns)
            for t in sorted(tables)
        },
    )


# -- the runs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timing:
    """One shape on one engine at one size: medians of the runs, in seconds."""

    statement_s: float
    # As the connector runs it (None where only the statement was run, `--statement-only`):
    question_s: float | None
    persons_s: float | None  # the cohort computed and its persons listed
    tables_s: float | None  # the tables from the cohort's rows
    cohort: int | None
    statement_runs: tuple[float, ...]
    question_runs: tuple[float, ...]


async def _timed(work: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await work()
    return time.perf_counter() - started


async def _question(backend: Backend, bound: CompiledQuery) -> tuple[float, float, int]:
    """The question as the connector runs it, nobody left out by the ledger."""
    async with backend.cohort(bound) as cohort:
        started = time.perf_counter()
        persons = await cohort.persons()
        listed = time.perf_counter()
        await cohort.tables(persons[:0])
        done = time.perf_counter()
    return listed - started, done - listed, int(persons.size)


async def _bound(backend: Backend, query: CohortQuery) -> CompiledQuery:
    compiled = compile_query(query, dialect=backend.dialect)
    return await ConceptResolver(backend.execute, dialect=backend.dialect).bind(compiled)


async def measure(
    data: Dataset,
    *,
    runs: int,
    shapes: Mapping[str, CohortQuery] = SHAPES,
    question: bool = True,
    warm_up: bool = True,
    measured: Callable[[str, dict[str, Timing]], None] | None = None,
) -> float:
    """Every shape on both engines, each told to `measured` (`shape, {engine: Timing}`) as
    soon as it is measured; without `question`, the statement only. Returns the seconds the
    local Spark session took to start (its JVM: once a connector, not once a question)."""
    backends: dict[str, Backend] = {
        "duckdb": open_backend(f"duckdb:///{data.database}", BackendOptions(threads=THREADS)),
        # As `spark:///` opens it, without the console's progress bars, and with time enough
        # for a 10M-person scan on a busy machine.
        "spark": SparkBackend(
            parquet=data.parquet,
            threads=THREADS,
            statement_timeout_s=STATEMENT_TIMEOUT_S,
            config={"spark.ui.showConsoleProgress": "false"},
        ),
    }
    try:
        session_s = await _timed(backends["spark"].ping)
        await backends["duckdb"].ping()
        for shape, (name, query) in enumerate(shapes.items()):
            bound = {engine: await _bound(b, query) for engine, b in backends.items()}
            samples: dict[str, list[tuple[float, float, float, int]]] = {e: [] for e in ENGINES}
            # One warm-up for the size (the JVM's code, the files in the page cache): a
            # question on Spark reuses no plan or cache of another.
            first = warm_up and shape == 0
            for run in range(runs + first):
                for engine in ENGINES:
                    backend, compiled = backends[engine], bound[engine]
                    statement_s = await _timed(functools.partial(backend.execute, compiled))
                    asked = await _question(backend, compiled) if question else (0.0, 0.0, -1)
                    if run or not first:
                        samples[engine].append((statement_s, *asked))
            timings = {engine: _timing(samples[engine], question) for engine in ENGINES}
            _print_shape(name, timings)
            if measured is not None:
                measured(name, timings)
        return session_s
    finally:
        for backend in backends.values():
            await backend.close()


def _timing(samples: Sequence[tuple[float, float, float, int]], question: bool) -> Timing:
    statement = tuple(s[0] for s in samples)
    asked = tuple(s[1] + s[2] for s in samples) if question else ()
    return Timing(
        statement_s=statistics.median(statement),
        question_s=statistics.median(asked) if question else None,
        persons_s=statistics.median(s[1] for s in samples) if question else None,
        tables_s=statistics.median(s[2] for s in samples) if question else None,
        cohort=samples[-1][3] if question else None,
        statement_runs=statement,
        question_runs=asked,
    )


def _print_shape(name: str, timings: Mapping[str, Timing]) -> None:
    duck, spark = timings["duckdb"], timings["spark"]
    text = (
        f"  {name:36} statement: DuckDB {duck.statement_s:7.3f} s  Spark "
        f"{spark.statement_s:7.2f} s ({_ratio(spark.statement_s, duck.statement_s)})"
    )
    if spark.question_s is not None and duck.question_s is not None:
        text += (
            f"  question: DuckDB {duck.question_s:7.3f} s  Spark {spark.question_s:7.2f} s "
            f"({_ratio(spark.question_s, duck.question_s)}), cohort {spark.cohort:,}"
        )
    print(text, flush=True)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:,.0f}x" if a is not None and b else "n/a"


# -- fixed cost and cost per row --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """Time against rows read: `fixed_s + per_row_s * rows` (least squares)."""

    fixed_s: float
    per_row_s: float

    @classmethod
    def fit(cls, points: Sequence[tuple[float, float]]) -> Line:
        if len(points) < 2:
            raise ValueError("a line needs two sizes")
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
        spread = sum((x - mean_x) ** 2 for x in xs)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
        return cls(fixed_s=mean_y - slope * mean_x, per_row_s=slope)


def lines(saved: Mapping[str, Any], *, kind: str) -> dict[str, dict[str, Line]]:
    """Per shape and engine, the line of `kind` (`statement` or `question`) seconds against
    rows read, over the saved sizes above the tiny one, or through the tiny one too where a
    shape was measured at one larger size only."""
    fitted: dict[str, dict[str, Line]] = {}
    for shape in SHAPES:
        fitted[shape] = {}
        for engine in ENGINES:
            points: list[tuple[float, float]] = []
            tiny: list[tuple[float, float]] = []
            for size in sorted(int(s) for s in saved["sizes"]):
                at = saved["sizes"][str(size)]
                seconds = at["results"].get(shape, {}).get(engine, {}).get(f"{kind}_s")
                if seconds is not None:
                    rows = float(sum(at["reads"][shape]["rows"].values()))
                    (tiny if size <= TINY else points).append((rows, float(seconds)))
            if len(points) == 1:
                points += tiny
            if len(points) >= 2:
                fitted[shape][engine] = Line.fit(points)
    return fitted


# -- the model of a national hub ----------------------------------------------------------------

HUB_PERSONS: Final = 67_000_000
HUB_EVENTS: Final = 1_200_000_000
# The tables of events (a row per care event); the others have a row per person at most, or
# are vocabularies and Tessera's one-row tables, whose size does not grow with the hub.
EVENT_TABLES: Final = frozenset(
    {"condition_occurrence", "drug_exposure", "measurement", "visit_occurrence"}
)
PERSON_TABLES: Final = frozenset(
    {"person", "observation_period", "death", "tessera_person", "tessera_optout"}
)
EXECUTORS: Final = (8, 32, 128)


@dataclass(frozen=True, slots=True)
class Cluster:
    """The assumptions of the model, each stated in bench/README.md.

    `cores` per executor; each core scans at the rate of one core here (`per_row_s` of the
    local line times its cores); `job_s` a job's fixed cost on a cluster over the local
    session's (driver to executors over the network, task launch); `task_s` each task's own
    overhead, one task per `split_bytes` of the pruned columns, run `cores × N` at a time;
    the shuffle moves at most the pruned bytes read (`shuffle_expansion` times, decoded) at
    `network_bytes_s` per executor, both ends busy; Python's side of the connector receives
    4 bytes a cohort person at `arrow_bytes_s` (Arrow, Spark Connect)."""

    cores: int = 4
    job_s: float = 1.0
    task_s: float = 0.05
    split_bytes: int = 128 * 2**20
    shuffle_expansion: float = 3.0
    network_bytes_s: float = 1.25e9  # 10 Gb/s
    arrow_bytes_s: float = 200e6


@dataclass(frozen=True, slots=True)
class Forecast:
    """One shape on a hub of N executors, in seconds: where the time goes."""

    executors: int
    fixed_s: float
    scan_s: float
    tasks_s: float
    shuffle_s: float
    to_python_s: float

    @property
    def total_s(self) -> float:
        return self.fixed_s + self.scan_s + self.tasks_s + self.shuffle_s + self.to_python_s


def forecast(
    *,
    rows: int,
    pruned_bytes: int,
    cohort: int,
    fixed_s: float,
    per_core_row_s: float,
    executors: int,
    cluster: Cluster,
) -> Forecast:
    cores = executors * cluster.cores
    tasks = max(1, math.ceil(pruned_bytes / cluster.split_bytes))
    waves = math.ceil(tasks / cores)
    return Forecast(
        executors=executors,
        fixed_s=fixed_s + cluster.job_s,
        scan_s=rows * per_core_row_s / cores,
        tasks_s=waves * cluster.task_s,
        shuffle_s=pruned_bytes * cluster.shuffle_expansion / (executors * cluster.network_bytes_s),
        to_python_s=cohort * 4 / cluster.arrow_bytes_s,
    )


def model(
    saved: Mapping[str, Any], cluster: Cluster = Cluster(), *, core_rows_s: float | None = None
) -> list[str]:
    """The hub's forecast per shape and cluster size, as the lines of a Markdown table, from
    a run's saved figures: the largest size's reads and cohorts scaled to the hub; each
    shape's Spark statement: its fixed cost (measured at the tiny size, else the line's
    intercept) and the slope of its line (the cost of a row, here on `THREADS` cores), or
    `core_rows_s` rows a second on each core where given (a rate measured elsewhere)."""
    largest = max(int(s) for s in saved["sizes"])
    at = saved["sizes"][str(largest)]
    fitted = lines(saved, kind="statement")
    tiny = saved["sizes"].get(str(TINY), {}).get("results", {})
    out = [
        "| shape | rows read at the hub | pruned columns | cohort | "
        + " | ".join(
            f"N = {n}: total (fixed / scan / tasks / shuffle / to Python)" for n in EXECUTORS
        )
        + " |",
        "|---|---:|---:|---:|" + "---:|" * len(EXECUTORS),
    ]
    for shape in SHAPES:
        line = fitted[shape].get("spark")
        if line is None or shape not in at["reads"]:
            continue
        rows_here = at["reads"][shape]["rows"]
        hub = _scaled(saved, largest, rows_here)
        factor = hub / max(sum(rows_here.values()), 1)
        pruned = round(sum(at["reads"][shape]["pruned_bytes"].values()) * factor)
        cohort = _hub_cohort(saved, shape)
        # The slope of the line is the cost of a row on this machine's cores together.
        per_core = max(line.per_row_s, 0.0) * THREADS if core_rows_s is None else 1 / core_rows_s
        fixed = tiny[shape]["spark"]["statement_s"] if shape in tiny else max(line.fixed_s, 0.0)
        cells = []
        for n in EXECUTORS:
            f = forecast(
                rows=hub,
                pruned_bytes=pruned,
                cohort=cohort,
                fixed_s=fixed,
                per_core_row_s=per_core,
                executors=n,
                cluster=cluster,
            )
            cells.append(
                f"**{f.total_s:.0f} s** ({f.fixed_s:.1f} / {f.scan_s:.1f} / {f.tasks_s:.1f} / "
                f"{f.shuffle_s:.1f} / {f.to_python_s:.1f})"
            )
        out.append(
            f"| {shape} | {hub / 1e6:,.0f} M | {pruned / 2**30:,.1f} GiB | {cohort / 1e6:,.1f} M | "
            + " | ".join(cells)
            + " |"
        )
    return out


def _hub_cohort(saved: Mapping[str, Any], shape: str) -> int:
    """The shape's cohort at the largest size it was counted at, scaled to the hub."""
    for size in sorted((int(s) for s in saved["sizes"]), reverse=True):
        cohort = saved["sizes"][str(size)]["results"].get(shape, {}).get("spark", {}).get("cohort")
        if cohort is not None:
            return round(int(cohort) * HUB_PERSONS / size)
    return 0


def _scaled(saved: Mapping[str, Any], size: int, rows: Mapping[str, int]) -> int:
    at = saved["sizes"][str(size)]
    events_here = sum(n for t, n in at["rows"].items() if t in EVENT_TABLES)
    total = 0
    for table, n in rows.items():
        if table in EVENT_TABLES:
            total += round(n * HUB_EVENTS / events_here)
        elif table in PERSON_TABLES:
            total += round(n * HUB_PERSONS / size)
        else:
            total += n
    return total


# -- the report ---------------------------------------------------------------------------------


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.1f} (5 min {five:.1f})"


async def run(
    persons: int,
    directory: Path,
    runs: int,
    *,
    question: bool,
    warm_up: bool,
    save: Callable[[Any], None],
    shapes: Sequence[str] = tuple(SHAPES),
    before: Mapping[str, Any] | None = None,
) -> None:
    """One size's figures, given to `save` as they grow (after each shape): the `shapes`
    named, those of `before` (the size's saved figures) kept for the others."""
    data = dataset(persons, directory)
    load = _load()
    print(f"\n{persons:,} persons ({sum(data.rows.values()):,} rows), load {load}", flush=True)
    at: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "runs": runs,
        "rows": dict(data.rows),
        "load_before": load,
        "reads": {
            name: dataclasses.asdict(reads(compile_query(query, dialect=SPARK), data))
            for name, query in SHAPES.items()
        },
        "results": {} if before is None else dict(before.get("results", {})),
    }
    if before is not None:
        at["earlier"] = {k: before.get(k) for k in ("date", "runs", "load_before", "warm_up")}

    def measured(shape: str, timings: dict[str, Timing]) -> None:
        at["results"][shape] = {e: dataclasses.asdict(t) for e, t in timings.items()}
        at["load_after"] = _load()
        save(at)

    at["warm_up"] = warm_up
    at["session_s"] = await measure(
        data,
        runs=runs,
        shapes={name: SHAPES[name] for name in shapes},
        question=question,
        warm_up=warm_up,
        measured=measured,
    )
    print(f"  Spark session start {at['session_s']:.1f} s, load {_load()}", flush=True)
    save(at)


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f} s" if value < 10 else f"{value:.0f} s"


def measured_table(saved: Mapping[str, Any]) -> list[str]:
    """The measured figures, a Markdown row per size and shape."""
    out = [
        "| persons | shape | rows read | DuckDB statement | Spark statement | ratio | "
        "DuckDB question | Spark question | ratio | cohort |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sorted(int(s) for s in saved["sizes"]):
        at = saved["sizes"][str(size)]
        for shape, by in at["results"].items():
            rows = sum(at["reads"][shape]["rows"].values())
            duck, spark = by["duckdb"], by["spark"]
            cohort = "–" if spark["cohort"] is None else f"{spark['cohort']:,}"
            out.append(
                f"| {size:,} | {shape} | {rows:,} | {_seconds(duck['statement_s'])} | "
                f"{_seconds(spark['statement_s'])} | "
                f"{_ratio(spark['statement_s'], duck['statement_s'])} | "
                f"{_seconds(duck['question_s'])} | {_seconds(spark['question_s'])} | "
                f"{_ratio(spark['question_s'], duck['question_s'])} | {cohort} |"
            )
    return out


def lines_table(saved: Mapping[str, Any]) -> list[str]:
    """Per shape and engine: the fixed cost measured at the tiny size, the line's intercept,
    and its cost per million rows (its rows a second on one core)."""
    tiny = saved["sizes"].get(str(TINY), {}).get("results", {})
    fitted = lines(saved, kind="statement")
    out = [
        "| shape | engine | fixed, tiny CDM | intercept | per million rows read | rows/s a core |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for shape, by_engine in fitted.items():
        for engine, line in by_engine.items():
            fixed = tiny.get(shape, {}).get(engine, {}).get("statement_s")
            rate = THREADS * line.per_row_s
            out.append(
                f"| {shape} | {engine} | {_seconds(fixed)} | {line.fixed_s:.2f} s | "
                f"{line.per_row_s * 1e6:.3f} s | "
                + (f"{1 / rate / 1e6:.2f} M |" if rate > 0 else "– |")
            )
    return out


def report(saved: Mapping[str, Any], *, core_rows_s: float | None = None) -> None:
    """The measured figures, the lines, and the hub's model, from the saved figures (as
    Markdown tables, for bench/README.md)."""
    for size in sorted(int(s) for s in saved["sizes"]):
        at = saved["sizes"][str(size)]
        print(
            f"{size:,} persons: {at.get('date', '?')}, load {at.get('load_before', '?')} → "
            f"{at.get('load_after', '?')}, runs {at.get('runs', '?')}, "
            f"Spark session start {_seconds(at.get('session_s'))}"
        )
    print()
    print("\n".join(measured_table(saved)))
    if any(lines(saved, kind="statement").values()):
        print()
        print("\n".join(lines_table(saved)))
        print(f"\nA hub of {HUB_PERSONS:,} persons and {HUB_EVENTS:,} events (Spark):")
        print("\n".join(model(saved)))
        if core_rows_s is not None:
            print(f"\nThe same at {core_rows_s / 1e6:g} M rows/s a core:")
            print("\n".join(model(saved, core_rows_s=core_rows_s)))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[TINY, *SIZES])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(".tessera/bench"))
    parser.add_argument("--model-only", action="store_true", help="report the saved figures")
    parser.add_argument(
        "--statement-only", action="store_true", help="not the question as the connector runs it"
    )
    parser.add_argument("--no-warm-up", action="store_true", help="no warm-up run for the size")
    parser.add_argument(
        "--shapes",
        nargs="+",
        choices=list(SHAPES),
        help="these shapes only; the size's other shapes keep their saved figures (default: "
        "every shape on the tiny CDM, the cohort shapes above it)",
    )
    parser.add_argument(
        "--core-rows-s", type=float, help="the model again at this many rows a second a core"
    )
    args = parser.parse_args(argv)
    path = args.dir / "spark_scale.json"
    # Each size's figures replace that size's in the saved file as soon as they are measured:
    # the sizes may be run apart, and a long run stopped keeps what it measured.
    saved: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    saved.setdefault("sizes", {})
    saved.update(machine=f"{platform.machine()}, {os.cpu_count()} cores", threads=THREADS)
    if not args.model_only:
        for persons in sorted(args.sizes):
            shapes = args.shapes or list(SHAPES if persons <= TINY else SCALING)

            def save(at: Any, persons: int = persons) -> None:
                # Read again: another size may have been saved meanwhile by another run.
                if path.exists():
                    saved["sizes"] = json.loads(path.read_text()).get("sizes", {})
                saved["sizes"][str(persons)] = at
                partial = path.with_suffix(f".{os.getpid()}.partial")
                partial.write_text(json.dumps(saved, indent=1))
                partial.replace(path)

            asyncio.run(
                run(
                    persons,
                    args.dir,
                    args.runs,
                    question=not args.statement_only,
                    warm_up=not args.no_warm_up,
                    save=save,
                    shapes=shapes,
                    before=saved["sizes"].get(str(persons)) if set(shapes) != set(SHAPES) else None,
                )
            )
        print(f"\nsaved to {path}", flush=True)
    report(saved, core_rows_s=args.core_rows_s)


if __name__ == "__main__":
    main()
