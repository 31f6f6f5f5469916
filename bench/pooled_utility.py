"""What secure pooling gives researchers: for the rare cohorts the federation exists for, the
share of pooled cells released and the error of released pooled cells, on the demo data of
four countries, against pooling the countries' released numbers as before.

    .venv/bin/python -m bench.pooled_utility [--persons 100000] [--draws 20] [--dir DIR]

Synthesises FR, DE, FI and DK (`--persons` each, seed 42 as the demo; once, reused), computes
each country's true table with the connector's own compiler, then releases each table
`--draws` times with fresh noise, both ways, through the code the nodes and the gateway run:

- before: each country releases its table (noise of its own sd, LOW below its minimum) and a
  pooled cell is the sum of the four parts, withheld when any is LOW (INCOMPLETE_POOL);
- secure: each country draws its shares (`connectors.pooling.PooledPart`: sd σ/√4) and masks
  them for the round (`connectors.masking`), the gateway adds the masked vectors and releases
  each cell against the strictest profile (`gateway.combine.secure_cell`).

Per table: the cells whose pooled true count is at least the strictest minimum plus three
sds of the pooled noise (what a researcher should get) and the share of them released; the
share of the cells of at least the strictest minimum released; and the error of released
pooled cells (bias, MAE and RMSE: the pooled noise's own is MAE 4.0, RMSE 5 at sd 5). The
module can be called from another (`measure_all`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from connectors.answers import StoredTable
from connectors.backends.duckdb import DuckDBBackend
from connectors.canonical import canonical_breakdown
from connectors.compiler import DUCKDB, ConceptResolver, compile_query
from connectors.masking import pair_secret
from connectors.noise import DiscreteGaussian, NoiseSource
from connectors.pooling import PooledPart
from connectors.release import counts_by_table, full_table, released_table
from gateway.combine import pool, secure_cell
from gateway.pooling import Pooling, SecurePool
from policies.disclosure import GATEWAY_RULES, CellContext, protect
from policies.domain import table_domain
from policies.loader import load_policy_set
from policies.profiles import DisclosureProfile, strictest
from schema.codes import Dimension, Jurisdiction, MeasureKind
from schema.pooling import PoolingRequest, encode_nonce, pooled_sum
from schema.query import Breakdown, CohortQuery, Criteria, EventCriterion
from schema.result import Value
from synth import generate

COUNTRIES = (Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK)
SEX, AGE5, AGE10, AGE20, YEAR = (
    Dimension.SEX,
    Dimension.AGE_BAND_5,
    Dimension.AGE_BAND_10,
    Dimension.AGE_BAND_20,
    Dimension.CALENDAR_YEAR,
)
E11 = EventCriterion(
    vocabulary="ICD10", code="E11", window={"start": "2015-01-01", "end": "2025-12-31"}
)
I40 = EventCriterion(vocabulary="ICD10", code="I40")
F84 = EventCriterion(vocabulary="ICD10", code="F84")

# The tables of the issue that asked for secure pooling.
TABLES: dict[str, tuple[Criteria, Breakdown]] = {
    "E11 by SEX × AGE_BAND_10": (Criteria(conditions=[E11]), (SEX, AGE10)),
    "E11 by AGE_BAND_5 × CALENDAR_YEAR": (Criteria(conditions=[E11]), (AGE5, YEAR)),
    "I40 by SEX × AGE_BAND_20": (Criteria(conditions=[I40]), (SEX, AGE20)),
    "F84 by SEX × AGE_BAND_10": (Criteria(conditions=[F84]), (SEX, AGE10)),
}
REFERENCE_DATE = dt.date(2026, 1, 1)
Table = dict[tuple[str, ...], int]

COUNT = MeasureKind.PERSON_COUNT


def databases(directory: Path, persons: int) -> dict[Jurisdiction, Path]:
    found = {}
    for j in COUNTRIES:
        path = directory / f"{j.value.lower()}.duckdb"
        manifest = path.with_suffix(".json")
        wanted = {"persons": persons, "seed": 42}
        if not (path.exists() and manifest.exists() and json.loads(manifest.read_text()) == wanted):
            directory.mkdir(parents=True, exist_ok=True)
            generate(
                path,
                jurisdiction=j,
                persons=persons,
                seed=42,
                state=directory / "state" / j.value.lower(),
                progress=True,
            )
            manifest.write_text(json.dumps(wanted))
        found[j] = path
    return found


def question(criteria: Criteria, by: Breakdown) -> CohortQuery:
    return CohortQuery(criteria=criteria, reference_date=REFERENCE_DATE, tables=[by])


async def true_tables(paths: Mapping[Jurisdiction, Path]) -> dict[str, dict[Jurisdiction, Table]]:
    """Each table's true counts per country, keys in the canonical dimension order."""
    found: dict[str, dict[Jurisdiction, Table]] = {name: {} for name in TABLES}
    for j, path in paths.items():
        backend = DuckDBBackend(path)
        resolver = ConceptResolver(backend.execute, dialect=DUCKDB)
        try:
            for name, (criteria, by) in TABLES.items():
                query = question(criteria, by)
                compiled = await resolver.bind(compile_query(query))
                tabulated = compiled.tabulate(await backend.execute(compiled))
                counts = counts_by_table(tabulated, COUNT)
                found[name][j] = full_table(by, counts[by], query)
        finally:
            await backend.close()
    return found


@dataclass(frozen=True)
class Measured:
    cells: int
    expected: int  # cells whose pooled truth is at least the strictest minimum + 3 sds
    expected_share: float  # of those, released
    at_minimum: int  # cells whose pooled truth is at least the strictest minimum
    at_minimum_share: float
    bias: float  # of released cells whose pooled truth is at least the minimum + 3 sds
    mae: float
    rmse: float


NODE_IDS = {j: f"tessera-node-{j.value.lower()}" for j in COUNTRIES}
KEYS = {
    j: X25519PrivateKey.from_private_bytes(hashlib.sha256(NODE_IDS[j].encode()).digest())
    for j in COUNTRIES
}


def secrets_of(j: Jurisdiction) -> dict[str, bytes]:
    return {NODE_IDS[k]: pair_secret(KEYS[j], KEYS[k].public_key()) for k in COUNTRIES if k != j}


def secure_round(
    truths: Mapping[Jurisdiction, Table],
    query: CohortQuery,
    by: Breakdown,
    sigma: float,
    noise: NoiseSource,
    secrets: Mapping[Jurisdiction, Mapping[str, bytes]],
) -> dict[tuple[str, ...], int]:
    """One pooled round as the nodes and the gateway run it: each country's shares, drawn
    and masked; their sum, unmasked; per cell key (in `by`'s order)."""
    request = PoolingRequest(
        nonce=encode_nonce(np.random.default_rng().bytes(32)),
        round=1,
        participants=sorted(NODE_IDS.values()),
        sigma=sigma,
        tables=[by],
        national=[()],
    )
    vectors = []
    for j in COUNTRIES:
        part = PooledPart.of(
            request,
            node_id=NODE_IDS[j],
            secrets=secrets[j],
            query=query,
            owner="bench",
            release="1",
        )
        stored = part.draw({part.shelved[by]: truths[j]}, noise)
        vectors.append(part.masked(stored)[by])
    sums = pooled_sum(vectors)
    return dict(zip(table_domain(by, query), sums.tolist(), strict=True))


def measure(
    truths: Mapping[Jurisdiction, Table],
    by: Breakdown,
    criteria: Criteria,
    profiles: Mapping[Jurisdiction, DisclosureProfile],
    draws: int,
    *,
    secure: bool,
) -> Measured:
    query = question(criteria, by)
    noise = DiscreteGaussian()
    combined = strictest(profiles.values())
    context = CellContext(combined, None)
    sigma = combined.sigma
    canonical = canonical_breakdown(by)
    order = [canonical.index(d) for d in by]
    pooled_truth = {
        tuple(key[i] for i in order): sum(t[key] for t in truths.values())
        for key in next(iter(truths.values()))
    }
    expected = [k for k, n in pooled_truth.items() if n >= combined.min_count + 3 * sigma]
    at_minimum = [k for k, n in pooled_truth.items() if n >= combined.min_count]
    secrets = {j: secrets_of(j) for j in COUNTRIES}
    released_expected = released_minimum = 0
    errors: list[int] = []
    for _ in range(draws):
        if secure:
            sums = secure_round(truths, query, by, sigma, noise, secrets)
            cells = dict(zip(sums, _release_secure(sums, by, sigma, context), strict=True))
        else:
            cells = _release_before(truths, by, profiles, noise, context)
        released_expected += sum(cells[k].value is not None for k in expected)
        released_minimum += sum(cells[k].value is not None for k in at_minimum)
        errors += [
            (cells[k].value or 0) - pooled_truth[k] for k in expected if cells[k].value is not None
        ]
    return Measured(
        cells=len(pooled_truth),
        expected=len(expected),
        expected_share=released_expected / (len(expected) * draws) if expected else 1.0,
        at_minimum=len(at_minimum),
        at_minimum_share=released_minimum / (len(at_minimum) * draws) if at_minimum else 1.0,
        bias=statistics.fmean(errors) if errors else 0.0,
        mae=statistics.fmean(abs(e) for e in errors) if errors else 0.0,
        rmse=math.sqrt(statistics.fmean(e * e for e in errors)) if errors else 0.0,
    )


def _release_secure(
    sums: Mapping[tuple[str, ...], int], by: Breakdown, sigma: float, context: CellContext
) -> list[Value]:
    pooling = Pooling(
        tables=(by,),
        domains={by: tuple(sums)},
        pool=SecurePool(contributors=COUNTRIES, sigma=sigma, cells={by: sums}, measure=COUNT),
    )
    return [secure_cell(by, key, {}, pooling, context) for key in sums]


def _release_before(
    truths: Mapping[Jurisdiction, Table],
    by: Breakdown,
    profiles: Mapping[Jurisdiction, DisclosureProfile],
    noise: NoiseSource,
    context: CellContext,
) -> dict[tuple[str, ...], Value]:
    """Each country's table released on its own, and every cell pooled from the parts."""
    parts: dict[Jurisdiction, dict[tuple[str, ...], Value]] = {}
    for j, truth in truths.items():
        profile = profiles[j]
        keys = list(truth)
        noisy = noise.draw([truth[k] for k in keys], profile.sigma)
        stored = StoredTable(dict(zip(keys, noisy, strict=True)))
        table = released_table(by, {COUNT: stored}, profile.sigma, CellContext(profile, j))
        parts[j] = {tuple(c.key): c.values[COUNT] for c in table.cells}
    return {
        k: protect(pool([(j, parts[j][k]) for j in COUNTRIES]), context, GATEWAY_RULES)
        for k in parts[COUNTRIES[0]]
    }


def measure_all(persons: int, draws: int, directory: Path) -> dict[str, dict[str, Measured]]:
    """Per table, `before` and `secure`."""
    truths = asyncio.run(true_tables(databases(directory, persons)))
    policies = load_policy_set()
    profiles = {j: policies.profile(j) for j in COUNTRIES}
    return {
        name: {
            way: measure(truths[name], by, criteria, profiles, draws, secure=way == "secure")
            for way in ("before", "secure")
        }
        for name, (criteria, by) in TABLES.items()
    }


def render(results: Mapping[str, Mapping[str, Measured]], persons: int, draws: int) -> str:
    lines = [
        f"{persons:,} synthetic persons in each of FR, DE, FI, DK; {draws} noise draws per table",
        "",
        f"{'table':<34} {'pooling':<7} {'cells':>5} {'≥t+3sd':>7} {'released':>9}"
        f" {'≥t':>4} {'released':>9} {'bias':>6} {'MAE':>5} {'RMSE':>5}",
    ]
    for name, ways in results.items():
        for way, m in ways.items():
            lines.append(
                f"{name:<34} {way:<7} {m.cells:>5} {m.expected:>7} {m.expected_share:>9.1%}"
                f" {m.at_minimum:>4} {m.at_minimum_share:>9.1%} {m.bias:>+6.2f} {m.mae:>5.2f}"
                f" {m.rmse:>5.2f}"
            )
    lines += [
        "",
        "≥t+3sd: cells whose pooled true count is at least the strictest minimum (11) plus three",
        "sds of the pooled noise, and the share of them released; ≥t: at least the minimum;",
        "bias, MAE, RMSE: of released cells among the ≥t+3sd ones against the pooled truth.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=Path(".tessera/bench-pooled"))
    args = parser.parse_args(argv)
    print(render(measure_all(args.persons, args.draws, args.dir), args.persons, args.draws))


if __name__ == "__main__":
    main()
