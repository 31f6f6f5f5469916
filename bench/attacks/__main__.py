"""`python -m bench.attacks [--quick] [--persons N] [--postgres] [--only 1,5,8] [--targets N]
[--json FILE]`:
run the attack simulator and print its tables (see bench/attacks/__init__.py)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.attacks.context import FULL, QUICK
from bench.attacks.runner import CLASSES, run
from bench.attacks.verdict import PINNED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attacks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the reduced run of `make test`")
    parser.add_argument("--persons", type=int, help="persons per node (default: by the run)")
    parser.add_argument("--postgres", action="store_true", help="every node's CDM in PostgreSQL")
    parser.add_argument("--only", default="", help="attack classes to run, e.g. 1,5,8")
    parser.add_argument("--seed", type=int, default=1, help="the attacker's choice of targets")
    parser.add_argument(
        "--targets", type=int, help="small sets per country for the counting attacks"
    )
    parser.add_argument("--every-target", action="store_true", help="list every count target")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    try:
        only = [int(n) for n in args.only.split(",") if n.strip()]
    except ValueError:
        parser.error("--only takes class numbers, e.g. 1,5,8")
    last = max(module.NUMBER for module in CLASSES)
    if any(not 1 <= n <= last for n in only):
        parser.error(f"attack classes are numbered 1 to {last}")
    if args.persons is not None and args.persons < 1000:
        parser.error("--persons must be at least 1000")
    if args.targets is not None and args.targets < 1:
        parser.error("--targets must be at least 1")
    plan = QUICK if args.quick else FULL
    if args.targets is not None:
        plan = dataclasses.replace(plan, count_targets=args.targets)
    work = Path(tempfile.mkdtemp(prefix="tessera-attacks-"))
    try:
        outcome = run(
            plan,
            persons=args.persons,
            postgres=args.postgres,
            only=only,
            directory=work,
            seed=args.seed,
            every_target=args.every_target,
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nran in {outcome.seconds:.0f} s")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "protection": outcome.protection,
                    "classes": [
                        {**dataclasses.asdict(r), "verdict": r.verdict, "pinned_in": r.pinned_in}
                        for r in outcome.results
                    ],
                },
                indent=2,
                default=str,
            )
        )
    return 1 if any(r.verdict == PINNED for r in outcome.results) else 0


if __name__ == "__main__":
    sys.exit(main())
