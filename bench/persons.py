"""What stable person indexes cost: hashing and mapping at 10M persons, prepare at 1M.

    .venv/bin/python bench/persons.py [--persons 10000000] [--prepare-persons 1000000]
                                      [--dir .tessera/bench] [--repeat 3]

Part 1 builds a `person` table of `--persons` rows (5% without a source value) and times,
with the module's own functions: reading the stable identifiers, hashing them under a secret,
the first indexing (every person new) and saving it, then loading the saved index and
looking every person up again (nothing new), and a rebuild whose person_ids are all new and
1% of whose persons are new (load, extend, save). Part 2 times `prepare_database` on a
synthetic database of `--prepare-persons` (generated once into `--dir`, reused): the first
prepare of the bare CDM and a prepare run again. Medians of `--repeat` runs, wall clock and
CPU time (all threads); nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

from connectors.omop import CDM_DDL
from connectors.persons import (
    SECRET_BYTES,
    PersonIndex,
    person_hashes,
    stable_identifiers,
)
from connectors.prepare import prepare_database
from schema.codes import Jurisdiction
from synth import generate

T = TypeVar("T")
_TESSERA_TABLES = (
    "tessera_optout",
    "tessera_optout_register",
    "tessera_record_key",
    "tessera_person",
    "tessera_data_release",
)


Times = tuple[float, float]  # wall-clock seconds, and CPU seconds of this process


def timed(run: Callable[[], T]) -> tuple[T, Times]:
    """`run()` and how long it took: on a shared machine its CPU time (all threads) moves far
    less with the load than the wall clock does."""
    started, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, (time.perf_counter() - started, time.process_time() - cpu)


def plus(*times: Times) -> Times:
    return sum(t[0] for t in times), sum(t[1] for t in times)


def person_table(path: Path, persons: int, *, first_id: int, new_share: float = 0.0) -> None:
    """`persons` persons with ids from `first_id`; source values FR-<ordinal>, the last
    `new_share` of them with ordinals beyond the first table's (new persons)."""
    fresh = int(persons * new_share)
    with duckdb.connect(str(path)) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(CDM_DDL[0])
        con.execute(
            "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, "
            "ethnicity_concept_id, person_source_value) "
            "SELECT $first + i, 8532, 1970, 0, 0, "
            "CASE WHEN i % 20 = 0 THEN NULL "
            "ELSE 'FR-' || lpad(CAST(CASE WHEN i >= $kept THEN i + $persons ELSE i END "
            "AS VARCHAR), 12, '0') END FROM range($persons) AS t(i)",
            {"first": first_id, "persons": persons, "kept": persons - fresh},
        )


def hashing_and_mapping(directory: Path, persons: int) -> list[tuple[str, Times]]:
    secret = os.urandom(SECRET_BYTES)
    state = directory / "state"
    state.mkdir()
    table = directory / "persons.duckdb"
    person_table(table, persons, first_id=1)
    figures: list[tuple[str, Times]] = []
    with duckdb.connect(str(table), read_only=True) as con:
        (_, identifiers), t_read = timed(lambda: stable_identifiers(con))
    hashes, t_hash = timed(lambda: person_hashes(identifiers, secret))
    index = PersonIndex.load(state, secret)
    _, t_assign = timed(lambda: index.assign(hashes))
    _, t_save = timed(index.save)
    figures += [
        ("read stable identifiers", t_read),
        ("hash them (keyed BLAKE2b-64)", t_hash),
        ("first indexing: assign (all new)", t_assign),
        ("first indexing: save", t_save),
        ("→ read + hash + assign + save", plus(t_read, t_hash, t_assign, t_save)),
    ]
    loaded, t_load = timed(lambda: PersonIndex.load(state, secret))
    _, t_lookup = timed(lambda: loaded.assign(hashes))
    figures += [
        ("load the index (verify its MAC)", t_load),
        ("look every person up (none new)", t_lookup),
        ("→ load + look up", plus(t_load, t_lookup)),
    ]
    rebuilt = directory / "rebuilt.duckdb"
    person_table(rebuilt, persons, first_id=10**9, new_share=0.01)
    with duckdb.connect(str(rebuilt), read_only=True) as con:
        _, identifiers = stable_identifiers(con)
    rebuilt_hashes = person_hashes(identifiers, secret)

    def extend() -> None:
        index = PersonIndex.load(state, secret)
        index.assign(rebuilt_hashes)
        index.save()

    _, t_extend = timed(extend)
    figures.append(("rebuild, 1% new: load + extend + save", t_extend))
    return figures


def bare_copy(source: Path, target: Path) -> None:
    shutil.copy(source, target)
    with duckdb.connect(str(target)) as con:
        for table in _TESSERA_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute("CHECKPOINT")


def prepare_times(directory: Path, cache: Path, persons: int) -> tuple[Times, Times]:
    source = cache / f"persons-bench-fr-{persons}.duckdb"
    if not source.exists():
        cache.mkdir(parents=True, exist_ok=True)
        generate(
            source,
            jurisdiction=Jurisdiction.FR,
            persons=persons,
            seed=1,
            state=cache / f"persons-bench-fr-{persons}.state",
        )
    work = directory / "prepare.duckdb"
    bare_copy(source, work)
    state = directory / f"prepare-state-{time.monotonic_ns()}"
    _, first = timed(lambda: prepare_database(work, state=state))
    _, again = timed(lambda: prepare_database(work, state=state))
    return first, again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--persons", type=int, default=10_000_000)
    parser.add_argument("--prepare-persons", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path(".tessera/bench"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    runs: list[list[tuple[str, Times]]] = []
    prepares: list[tuple[Times, Times]] = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="tessera-persons-") as work:
            runs.append(hashing_and_mapping(Path(work), args.persons))
        with tempfile.TemporaryDirectory(prefix="tessera-prepare-") as work:
            prepares.append(prepare_times(Path(work), args.dir, args.prepare_persons))

    def row(name: str, times: list[Times]) -> str:
        wall = statistics.median(t[0] for t in times)
        cpu = statistics.median(t[1] for t in times)
        return f"  {name:42} {wall:7.2f} {cpu:7.2f}"

    print(f"{args.persons:,} persons, medians of {args.repeat} runs: wall, CPU (seconds)")
    for i, (name, _) in enumerate(runs[0]):
        print(row(name, [run[i][1] for run in runs]))
    print(f"prepare_database, {args.prepare_persons:,} synthetic persons")
    for i, name in enumerate(("first prepare of the bare CDM", "prepare again")):
        print(row(name, [p[i] for p in prepares]))


if __name__ == "__main__":
    main()
