"""`tessera synth`: write a synthetic OMOP CDM database for one country, prepared as a hub's
`tessera connector prepare` would (demos, tests, benchmarks)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from schema.codes import Jurisdiction

SubParsers = Any  # argparse's _SubParsersAction is private


def register(sub: SubParsers) -> None:
    synth = sub.add_parser("synth", help="write a synthetic OMOP CDM 5.4 DuckDB database")
    synth.add_argument("--jurisdiction", type=Jurisdiction, required=True, metavar="CODE")
    synth.add_argument("--persons", type=int, default=100_000)
    synth.add_argument("--seed", type=int, default=42)
    synth.add_argument("--reference-year", type=int, default=2025)
    synth.add_argument("--out", type=Path, required=True, help="database file (replaced)")
    synth.add_argument(
        "--state",
        type=Path,
        required=True,
        help="the node's state directory, as for `connector prepare` (created if new)",
    )
    synth.add_argument(
        "--icd10-vocabulary",
        choices=("ICD10", "ICD10GM", "CIM10"),
        default="ICD10",
        help="the OMOP vocabulary diagnoses are recorded in: WHO ICD10 (default), or a national "
        "modification as a German (ICD10GM) or French (CIM10) CDM holds them",
    )
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(handler=_synth)


def _synth(args: argparse.Namespace) -> int:
    from connectors.persons import PersonStateError
    from synth import generate

    try:
        report = generate(
            args.out,
            jurisdiction=args.jurisdiction,
            persons=args.persons,
            seed=args.seed,
            state=args.state,
            reference_year=args.reference_year,
            progress=not args.quiet,
            icd10_vocabulary=args.icd10_vocabulary,
        )
    except (ValueError, OSError, PersonStateError) as e:
        print(f"tessera synth: {e}", file=sys.stderr)
        return 2
    for table, count in sorted(report.rows.items()):
        print(f"{table:24} {count:>14,}")
    print(f"{'elapsed':24} {report.elapsed_seconds:>13.1f}s")
    return 0
