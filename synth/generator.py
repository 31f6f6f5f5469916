"""`generate`: a deterministic synthetic OMOP CDM 5.4 database for one country.

Persons are simulated in fixed-size chunks, each from its own random stream derived from
(seed, country, chunk number), so memory stays bounded at any population size and the same
inputs always give the same rows. Only record keys differ between runs: `prepare_database`
draws them from the operating system, as on a real node. The database is prepared against
the node's state directory, so its person indexes are the ones a hub's prepare would give.

Each person has a pseudonymous `person_source_value` (`FR-048213907651`) derived from the
country, the seed and the person's ordinal only, never from how `person_id`s are numbered:
a copy of the database with renumbered person_ids holds the same people.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import duckdb
import numpy as np
from numpy.typing import NDArray

from connectors.omop import OPTOUT_TABLE, RECORD_KEY_TABLE
from connectors.prepare import PrepareReport, prepare_database
from schema.codes import Jurisdiction
from synth import vocabulary as v
from synth.arrays import day
from synth.countries import params_for
from synth.database import (
    IdMap,
    TableWriter,
    Writable,
    create_cdm,
    load_vocabulary,
    write_cdm_source,
)
from synth.histories import draw_history
from synth.population import draw_people
from synth.progress import ProgressBar
from synth.tables import SOURCE_VALUES, NextIds, build_tables

# Part of the output's definition: changing it changes every database generated from a seed.
CHUNK_PERSONS: Final = 250_000
OPTOUT_SHARE: Final = 0.003
MIN_REFERENCE_YEAR: Final = 2021  # observation may start as late as 2020-12-31
MAX_REFERENCE_YEAR: Final = 2100
Strings = NDArray[np.str_]

_OPTOUT_STREAM: Final = 2**32  # beyond every chunk number, so never a chunk's stream
_PSEUDONYM_STREAM: Final = 2**32 + 1
_SIGNAL_STREAM: Final = 2**32 + 2  # with the chunk number: the vaccine signal's, per chunk
_HALF_DIGITS: Final = 6  # a pseudonym has two halves of six digits
_HALF: Final = 10**_HALF_DIGITS
_ROUND_PRIME: Final = 1_000_003
_FEISTEL_ROUNDS: Final = 4
_MAX_ORDINAL: Final = _HALF**2


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
    state: Path,
    reference_year: int = 2025,
    progress: bool = False,
    icd10_vocabulary: str = "ICD10",
) -> SynthReport:
    """Writes a synthetic OMOP database for `jurisdiction` to `path`, replacing any file there,
    prepared against the node state directory `state` (see `prepare_database`).

    The data run to 31 December of `reference_year`. Diagnoses are recorded as ICD-10 source
    concepts of `icd10_vocabulary` (WHO "ICD10", or a national modification: "ICD10GM",
    "CIM10"), each with its 'Maps to' standard SNOMED concept, as a national ETL records them.
    The database is built under a temporary name in the same directory and renamed into place
    when complete, so a reader of `path` sees either the old database or the whole new one.
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
    national = IdMap(v.icd10_ids(icd10_vocabulary))  # refuses an unknown vocabulary
    path = Path(path)
    reference_date = dt.date(reference_year, 12, 31)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    _remove(temporary)
    bar = ProgressBar(persons, f"synth {jurisdiction.value}", enabled=progress)
    try:
        rows = _write(
            temporary, jurisdiction, persons, seed, reference_date, bar, icd10_vocabulary, national
        )
        bar.note("opt-outs and record keys")
        prepared = prepare_database(
            temporary,
            state=state,
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


def pseudonyms(jurisdiction: Jurisdiction, seed: int, ordinals: NDArray[np.int64]) -> Strings:
    """The `person_source_value` of the persons with these ordinals (1, 2, …): the country
    code and 12 digits, distinct for distinct ordinals and scattered like a pseudonym."""
    if len(ordinals) and not 0 <= int(ordinals.min()) <= int(ordinals.max()) < _MAX_ORDINAL:
        raise ValueError(f"ordinals must lie in [0, {_MAX_ORDINAL})")
    rng = np.random.default_rng([seed, _country_key(jurisdiction), _PSEUDONYM_STREAM])
    keys = rng.integers(1, _HALF, size=(_FEISTEL_ROUNDS, 2), dtype=np.int64)
    # A Feistel network on the two 6-digit halves is a bijection of [0, 10^12) whatever its
    # round function, so distinct persons never share a pseudonym; squaring scatters them.
    left = ordinals.astype(np.int64) // _HALF
    right = ordinals.astype(np.int64) % _HALF
    for factor, offset in keys:
        mixed = (right + offset) ** 2 % _ROUND_PRIME * factor % _ROUND_PRIME % _HALF
        left, right = right, (left + mixed) % _HALF
    # Written as UTF-32 code points and viewed as strings: no Python object per person.
    powers = 10 ** np.arange(_HALF_DIGITS - 1, -1, -1, dtype=np.int64)
    prefix = [ord(c) for c in f"{jurisdiction.value}-"]
    codes = np.empty((len(left), len(prefix) + 2 * _HALF_DIGITS), dtype="<u4")
    codes[:, : len(prefix)] = prefix
    for start, half in ((len(prefix), left), (len(prefix) + _HALF_DIGITS, right)):
        codes[:, start : start + _HALF_DIGITS] = half[:, None] // powers % 10 + ord("0")
    strings: Strings = codes.view(f"<U{codes.shape[1]}").ravel()
    return strings


def _write(
    path: Path,
    jurisdiction: Jurisdiction,
    persons: int,
    seed: int,
    reference_date: dt.date,
    bar: ProgressBar,
    icd10_vocabulary: str,
    national: IdMap,
) -> dict[str, int]:
    params = params_for(jurisdiction)
    reference = day(reference_date)
    rows: dict[str, int] = {}
    con = duckdb.connect(str(path))
    try:
        con.execute("SET enable_progress_bar = false")  # ours is on stderr; DuckDB's on stdout
        create_cdm(con)
        rows.update(load_vocabulary(con, icd10_vocabulary))
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

        def simulate(chunk: int, first: int) -> tuple[int, dict[str, Mapping[str, Writable]]]:
            size = min(CHUNK_PERSONS, persons - first)
            rng = np.random.default_rng([seed, _country_key(jurisdiction), chunk])
            people = draw_people(rng, params, first + 1, size, reference)
            history = draw_history(rng, people, params, reference)
            tables: dict[str, Mapping[str, Writable]] = {
                **build_tables(
                    rng,
                    people,
                    history,
                    params,
                    ids,
                    signal=np.random.default_rng(
                        [seed, _country_key(jurisdiction), _SIGNAL_STREAM, chunk]
                    ),
                )
            }
            source = pseudonyms(jurisdiction, seed, people.person_id)
            tables["person"] = {**tables["person"], "person_source_value": source}
            if national:
                for table, column in ICD10_SOURCE_COLUMNS.items():
                    columns = tables[table]
                    recorded = columns[column]
                    assert recorded.dtype == np.int64
                    tables[table] = {**columns, column: national(recorded.astype(np.int64))}
            return size, tables

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


# The columns holding ICD-10 source concepts (WHO ids as simulated).
ICD10_SOURCE_COLUMNS: Final = {
    "condition_occurrence": "condition_source_concept_id",
    "death": "cause_source_concept_id",
}


def _insert(
    writer: TableWriter, tables: dict[str, Mapping[str, Writable]], rows: dict[str, int]
) -> None:
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
