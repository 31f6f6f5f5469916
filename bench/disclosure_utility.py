"""What disclosure control costs researchers: for typical tables on the demo data, the share of
cells released and the error of released cells against the truth, per profile, with the node's
own release path (full public domain, discrete Gaussian noise, minimum applied to the noisy
value).

    .venv/bin/python bench/disclosure_utility.py [--persons 100000] [--dir .tessera/bench]

Synthesises one country's OMOP database (once, reused), computes each table's true counts with
the connector's own compiler, then releases each table `--draws` times with fresh noise and
reports, per profile: the share of cells released among those whose true count is at least
the minimum plus three standard deviations of the noise (the cells a researcher should get),
the share of all cells released, the bias and mean absolute error of released cells, and how
many tables a person can be counted in before their budget is spent.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from connectors.backends.duckdb import DuckDBBackend
from connectors.compiler import ConceptResolver, compile_query
from connectors.noise import DiscreteGaussian
from connectors.release import counts_by_table, draw, full_table, released_table
from connectors.synth import generate
from policies.disclosure import CellContext
from policies.loader import shipped_disclosure_profile
from policies.profiles import DisclosureProfile
from schema.codes import Dimension, Jurisdiction, NoiseLevel
from schema.query import Breakdown, CohortQuery, Criteria, EventCriterion

SEX, AGE5, AGE10, YEAR = (
    Dimension.SEX,
    Dimension.AGE_BAND_5,
    Dimension.AGE_BAND_10,
    Dimension.CALENDAR_YEAR,
)
E11 = EventCriterion(
    vocabulary="ICD10", code="E11", window={"start": "2015-01-01", "end": "2025-12-31"}
)
C49 = EventCriterion(vocabulary="ICD10", code="C49")

TYPICAL: dict[str, tuple[Criteria, Breakdown]] = {
    "diabetes by sex × 10-year band": (Criteria(conditions=[E11]), (SEX, AGE10)),
    "diabetes by 5-year band × year": (Criteria(conditions=[E11]), (AGE5, YEAR)),
    "everyone by sex × 5-year band": (Criteria(), (SEX, AGE5)),
    "sarcoma by sex × 10-year band": (Criteria(conditions=[C49]), (SEX, AGE10)),
}
REFERENCE_DATE = dt.date(2026, 1, 1)


@dataclass(frozen=True)
class Measured:
    expected_share: float  # released among cells with truth >= minimum + 3 sd
    share: float  # released among all cells
    bias: float
    mae: float


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


def question(criteria: Criteria, by: Breakdown) -> CohortQuery:
    return CohortQuery(criteria=criteria, reference_date=REFERENCE_DATE, tables=[by])


async def true_tables(path: Path) -> dict[str, dict[tuple[str, ...], int]]:
    backend = DuckDBBackend(path)
    resolver = ConceptResolver(backend.execute, dialect="duckdb")
    found = {}
    try:
        for name, (criteria, by) in TYPICAL.items():
            query = question(criteria, by)
            compiled = await resolver.bind(compile_query(query))
            counts = counts_by_table(compiled.tabulate(await backend.execute(compiled)))
            found[name] = full_table(by, counts[by], query)
    finally:
        await backend.close()
    return found


def measure(
    truth: dict[tuple[str, ...], int],
    by: Breakdown,
    profile: DisclosureProfile,
    sd: float,
    draws: int,
) -> Measured:
    noise = DiscreteGaussian()
    ctx = CellContext(profile, Jurisdiction.FR)
    expected = [k for k, n in truth.items() if n >= profile.min_count + 3 * sd]
    released_expected = released_all = 0
    errors: list[int] = []
    for _ in range(draws):
        stored = draw({"t": truth}, sd, noise)["t"]
        table = released_table(by, stored, sd, ctx)
        values = {tuple(c.key): c.count.value for c in table.cells}
        released_all += sum(v is not None for v in values.values())
        released_expected += sum(values.get(_asked(by, k)) is not None for k in expected)
        errors += [v - truth[_canonical(by, k)] for k, v in values.items() if v is not None]
    return Measured(
        expected_share=released_expected / (len(expected) * draws) if expected else 1.0,
        share=released_all / (len(truth) * draws),
        bias=statistics.fmean(errors) if errors else 0.0,
        mae=statistics.fmean(abs(e) for e in errors) if errors else 0.0,
    )


def _asked(by: Breakdown, canonical_key: tuple[str, ...]) -> tuple[str, ...]:
    order = sorted(by, key=list(Dimension).index)
    values = dict(zip(order, canonical_key, strict=True))
    return tuple(values[d] for d in by)


def _canonical(by: Breakdown, key: tuple[str, ...]) -> tuple[str, ...]:
    values = dict(zip(by, key, strict=True))
    return tuple(values[d] for d in sorted(by, key=list(Dimension).index))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=Path(".tessera/bench"))
    args = parser.parse_args()
    truths = asyncio.run(true_tables(database(args.dir, args.persons)))
    noise = DiscreteGaussian()
    print(f"{args.persons:,} synthetic persons (FR); {args.draws} noise draws per table\n")
    print(
        f"{'table':<34} {'profile':<20} {'cells':>6} {'≥t+3sd':>7} {'all':>6}"
        f" {'bias':>6} {'MAE':>5} {'tables/person':>14}"
    )
    for name, truth in truths.items():
        by = TYPICAL[name][1]
        for j in (Jurisdiction.FR, Jurisdiction.DK, Jurisdiction.DE):
            profile = shipped_disclosure_profile(j)
            for level in NoiseLevel:
                sd = profile.noise_sd(level)
                m = measure(truth, by, profile, sd, args.draws)
                per_person = profile.rho_per_applicant / noise.rho(sd)
                label = f"{j.value} (min {profile.min_count}) {level.value.lower()}"
                print(
                    f"{name:<34} {label:<20} {len(truth):>6} {m.expected_share:>6.1%}"
                    f" {m.share:>6.1%} {m.bias:>+6.2f} {m.mae:>5.2f} {per_person:>14.0f}"
                )
    print("\n≥t+3sd: share released of the cells whose true count is at least the minimum plus")
    print("three noise sds; all: share of every cell of the public domain released;")
    print("bias, MAE: of released cells against the truth (persons);")
    print("tables/person: how many released tables a person can be counted in (budget / cost).")


if __name__ == "__main__":
    main()
