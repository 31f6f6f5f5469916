"""`generate`: a deterministic synthetic OMOP CDM 5.4 database for one country.

Persons are simulated in fixed-size chunks, each from its own random stream derived from
(seed, country, chunk number), so memory stays bounded at any population size and the same
inputs always give the same rows. Only record keys differ between runs: `prepare_database`
draws them from the operating system, as on a real node.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import duckdb
import numpy as np

from connectors.omop import OPTOUT_TABLE, RECORD_KEY_TABLE
from connectors.prepare import PrepareReport, prepare_database
from connectors.synth.arrays import day
from connectors.synth.countries import params_for
from connectors.synth.database import TableWriter, create_cdm, load_vocabulary, write_cdm_source
from connectors.synth.histories import draw_history
from connectors.synth.population import draw_people
from connectors.synth.progress import ProgressBar
from connectors.synth.rows import Table
from connectors.synth.tables import SOURCE_VALUES, NextIds, build_tables
from schema.codes import Jurisdiction

# Part of the output's definition: changing it changes every database generated from a seed.
CHUNK_PERSONS: Final = 250_000
OPTOUT_SHARE: Final = 0.003
MIN_REFERENCE_YEAR: Final = 2021  # observation may start as late as 2020-12-31
MAX_REFERENCE_YEAR: Final = 2100
_OPTOUT_STREAM: Final = 2**32  # beyond every chunk number, so never a chunk's stream


@dataclass(frozen=True, slots=True)
class SynthReport:
    path: Path
    jurisdiction: Jurisdiction
    persons: int
    seed: int
    reference_date: dt.date
    rows: dict[str, int] = field(default_factory=dict)  # per table
    optout_count: int = 0
    register_version: str = ""
    bytes: int = 0
    elapsed_seconds: float = 0.0


def generate(
    path: Path,
    *,
    jurisdiction: Jurisdiction,
    persons: int,
    seed: int,
    reference_year: int = 2025,
    progress: bool = False,
) -> SynthReport:
    """Writes a synthetic OMOP database for `jurisdiction` to `path`, replacing any file there.

    The data run to 31 December of `reference_year`. The database is built under a temporary
    name in the same directory and renamed into place when complete, so a reader of `path`
    sees either the old database or the whole new one.
    """
    started = time.perf_counter()
    jurisdiction = Jurisdiction(jurisdiction)
    if persons < 1:
        raise ValueError("persons must be at least 1")
    if seed < 0:
        raise ValueError("seed must be a non-negative integer")
    if not MIN_REFERENCE_YEAR <= reference_year <= MAX_REFERENCE_YEAR:
        raise ValueError(
            f"reference_year must lie between {MIN_REFERENCE_YEAR} and {MAX_REFERENCE_YEAR}"
        )
    path = Path(path)
    reference_date = dt.date(reference_year, 12, 31)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    _remove(temporary)
    bar = ProgressBar(persons, f"synth {jurisdiction.value}", enabled=progress)
    try:
        rows = _write(temporary, jurisdiction, persons, seed, reference_date, bar)
        bar.note("opt-outs and record keys")
        prepared = prepare_database(
            temporary,
            optout_ids=synthetic_optout(jurisdiction, persons, seed),
            register_version=f"synth-{seed}",
        )
        rows[OPTOUT_TABLE] = prepared.optout_count
        rows[RECORD_KEY_TABLE] = prepared.keys_added
        # A WAL left beside the old file would be replayed into the new one: drop it first.
        Path(f"{path}.wal").unlink(missing_ok=True)
        os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        bar.close("failed")
        raise
    bar.close()
    return _report(path, jurisdiction, persons, seed, reference_date, rows, prepared, started)


def synthetic_optout(jurisdiction: Jurisdiction, persons: int, seed: int) -> list[int]:
    """About 0.3 % of the person ids, the same for the same inputs."""
    rng = np.random.default_rng([seed, _country_key(jurisdiction), _OPTOUT_STREAM])
    count = round(persons * OPTOUT_SHARE)
    chosen = np.sort(rng.choice(persons, size=count, replace=False)) + 1
    return [int(i) for i in chosen]


def _write(
    path: Path,
    jurisdiction: Jurisdiction,
    persons: int,
    seed: int,
    reference_date: dt.date,
    bar: ProgressBar,
) -> dict[str, int]:
    params = params_for(jurisdiction)
    reference = day(reference_date)
    rows: dict[str, int] = {}
    con = duckdb.connect(str(path))
    try:
        con.execute("SET enable_progress_bar = false")  # ours is on stderr; DuckDB's on stdout
        create_cdm(con)
        rows.update(load_vocabulary(con))
        write_cdm_source(
            con,
            name=f"Tessera synthetic OMOP CDM: {params.name}",
            abbreviation=f"TESSERA-SYNTH-{jurisdiction.value}",
            description=(
                f"Synthetic persons for {params.name} ({jurisdiction.value}); seed {seed}, "
                f"{persons} persons, data to {reference_date.isoformat()}. Not real data."
            ),
            release=reference_date,
        )
        rows["cdm_source"] = 1
        writer = TableWriter(con)
        ids = NextIds()

        def simulate(chunk: int, first: int) -> tuple[int, dict[str, Table]]:
            size = min(CHUNK_PERSONS, persons - first)
            rng = np.random.default_rng([seed, _country_key(jurisdiction), chunk])
            people = draw_people(rng, params, first + 1, size, reference)
            history = draw_history(rng, people, params, reference)
            return size, build_tables(rng, people, history, params, ids)

        # The next chunk is simulated (numpy) while DuckDB inserts this one; chunks are still
        # simulated one after another, in order, so ids and random streams are unchanged.
        starts = list(enumerate(range(0, persons, CHUNK_PERSONS)))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth") as simulator:
            upcoming = simulator.submit(simulate, *starts[0])
            for chunk, _ in starts:
                size, tables = upcoming.result()
                if chunk + 1 < len(starts):
                    upcoming = simulator.submit(simulate, *starts[chunk + 1])
                _insert(writer, tables, rows)
                bar.advance(size, f"chunk {chunk + 1}")
        bar.note("checkpoint")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return rows


def _insert(writer: TableWriter, tables: dict[str, Table], rows: dict[str, int]) -> None:
    for table, columns in tables.items():
        added = writer.insert(table, columns, SOURCE_VALUES.get(table, {}))
        rows[table] = rows.get(table, 0) + added


def _report(
    path: Path,
    jurisdiction: Jurisdiction,
    persons: int,
    seed: int,
    reference_date: dt.date,
    rows: dict[str, int],
    prepared: PrepareReport,
    started: float,
) -> SynthReport:
    return SynthReport(
        path=path,
        jurisdiction=jurisdiction,
        persons=persons,
        seed=seed,
        reference_date=reference_date,
        rows=rows,
        optout_count=prepared.optout_count,
        register_version=prepared.register_version,
        bytes=path.stat().st_size,
        elapsed_seconds=time.perf_counter() - started,
    )


def _country_key(jurisdiction: Jurisdiction) -> int:
    # From the code itself, not the enum's order, so adding a country changes no stream.
    return int.from_bytes(jurisdiction.value.encode("ascii"), "big")


def _remove(path: Path) -> None:
    for candidate in (path, Path(f"{path}.wal")):
        candidate.unlink(missing_ok=True)
