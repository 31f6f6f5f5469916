"""What disclosure control costs researchers: for typical tables on the demo data, the share of
cells released and the mean absolute error of released cells against the truth, per profile.

    .venv/bin/python bench/disclosure_utility.py [--persons 100000] [--dir .tessera/bench]

Synthesises one country's OMOP database (once, reused), computes each table's true counts and
cell keys with the connector's own compiler, and runs the node's disclosure pipeline with each
profile. Times are printed as ratios (the whole pipeline against its cell rules alone),
measured side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time
from pathlib import Path

from connectors.backends.duckdb import DuckDBBackend
from connectors.compiler import ConceptResolver, compile_query
from connectors.synth import generate
from policies.disclosure import NODE_RULES, protect_tables
from policies.loader import shipped_disclosure_profile
from policies.profiles import DisclosureProfile
from policies.tables import TableCell, TableSet
from schema.codes import Dimension, Jurisdiction, ValueStatus
from schema.query import Breakdown, CohortQuery, Criteria, EventCriterion
from schema.result import Value

SEX, AGE5, AGE10, YEAR = (
    Dimension.SEX,
    Dimension.AGE_BAND_5,
    Dimension.AGE_BAND_10,
    Dimension.CALENDAR_YEAR,
)
E11 = EventCriterion(vocabulary="ICD10", code="E11")
C49 = EventCriterion(vocabulary="ICD10", code="C49")

TYPICAL: dict[str, tuple[Criteria, list[Breakdown]]] = {
    "diabetes by sex × 10-year band": (
        Criteria(conditions=[E11]),
        [(SEX, AGE10), (SEX,), (AGE10,)],
    ),
    "diabetic women 40-69 by 5-year band × year": (
        Criteria(sex="FEMALE", age={"min": 40, "max": 69}, conditions=[E11]),
        [(AGE5, YEAR), (AGE5,), (YEAR,)],
    ),
    "everyone by sex × 5-year band": (Criteria(), [(SEX, AGE5), (SEX,), (AGE5,)]),
    "sarcoma by sex × 10-year band": (Criteria(conditions=[C49]), [(SEX, AGE10)]),
}

PROFILES = {
    "FR (min 11)": shipped_disclosure_profile(Jurisdiction.FR),
    "DK (min 5)": shipped_disclosure_profile(Jurisdiction.DK),
    "DE (min 3, cell-key ±2)": shipped_disclosure_profile(Jurisdiction.DE),
    "min 10, rounding to 5": DisclosureProfile(min_count=10, source="bench", rounding_base=5),
}


def database(directory: Path, persons: int) -> Path:
    path = directory / "fr.duckdb"
    manifest = path.with_suffix(".json")
    wanted = {"persons": persons, "seed": 42}
    if not (path.exists() and manifest.exists() and json.loads(manifest.read_text()) == wanted):
        directory.mkdir(parents=True, exist_ok=True)
        generate(
            path,
            jurisdiction=Jurisdiction.FR,
            persons=persons,
            seed=42,
            state=directory / "state",
            progress=True,
        )
        manifest.write_text(json.dumps(wanted))
    return path


async def true_tables(path: Path) -> dict[str, TableSet]:
    backend = DuckDBBackend(path)
    resolver = ConceptResolver(backend.execute, dialect="duckdb")
    found = {}
    try:
        for name, (criteria, tables) in TYPICAL.items():
            query = CohortQuery(
                criteria=criteria, reference_date=dt.date(2026, 1, 1), tables=list(tables)
            )
            compiled = await resolver.bind(compile_query(query))
            rows = compiled.tabulate(await backend.execute(compiled))
            found[name] = TableSet(
                {
                    by: {
                        c.key: TableCell(Value.exact(c.persons), _PLACEHOLDER, None, c.cell_key)
                        for c in cells
                    }
                    for by, cells in rows
                }
            )
    finally:
        await backend.close()
    return found


_PLACEHOLDER = DisclosureProfile(min_count=1, source="placeholder")


def with_profile(tables: TableSet, profile: DisclosureProfile) -> TableSet:
    return TableSet(
        {
            by: {
                key: TableCell(cell.value, profile, Jurisdiction.FR, cell.cell_key)
                for key, cell in cells.items()
            }
            for by, cells in tables.tables.items()
        }
    )


def measure(truth: TableSet, profile: DisclosureProfile) -> tuple[float, float, float, float]:
    tables = with_profile(truth, profile)
    started = time.perf_counter()
    cells_only = protect_tables(tables, NODE_RULES, ())
    cell_time = time.perf_counter() - started
    started = time.perf_counter()
    protected = protect_tables(tables)
    whole_time = time.perf_counter() - started
    del cells_only
    released, errors, total = 0, [], 0
    for by, cells in protected.tables.items():
        if not by:
            continue
        for key, cell in cells.items():
            total += 1
            if cell.value.status is ValueStatus.SUPPRESSED:
                continue
            released += 1
            errors.append(abs((cell.value.value or 0) - (truth.tables[by][key].value.value or 0)))
    share = released / total if total else 1.0
    mae = sum(errors) / len(errors) if errors else 0.0
    return share, mae, whole_time * 1000, whole_time / max(cell_time, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=Path(".tessera/bench"))
    args = parser.parse_args()
    truths = asyncio.run(true_tables(database(args.dir, args.persons)))
    print(f"{args.persons:,} synthetic persons (FR); cells of the breakdowns, total excluded\n")
    print(
        f"{'table':<46} {'profile':<26} {'cells':>6} {'released':>9} {'MAE':>6}"
        f" {'ms':>7} {'time ×':>7}"
    )
    for name, truth in truths.items():
        cells = sum(len(c) for by, c in truth.tables.items() if by)
        for label, profile in PROFILES.items():
            share, mae, ms, ratio = measure(truth, profile)
            print(
                f"{name:<46} {label:<26} {cells:>6} {share:>8.1%} {mae:>6.2f} {ms:>7.1f}"
                f" {ratio:>7.1f}"
            )
    print("\nreleased: share of breakdown cells not suppressed (primary and secondary);")
    print("MAE: mean absolute error of released cells against the truth;")
    print("ms: the whole node pipeline; time ×: that over its cell rules alone.")


if __name__ == "__main__":
    main()
