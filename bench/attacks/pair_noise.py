"""`python -m bench.attacks.pair_noise [--quick] [--postgres] [--only 13,17] [--targets N]`:
the noise behind the differencing attacks (classes 13, 14 and 17), measured.

Each class attacks a small set as the difference of two large questions, asked in several
wordings; the attacker combines the distinct readings by inverse variance and states the
standard error its released sds give. Where its errors come out below that standard error,
four explanations are possible, and this experiment tells them apart, through the public
endpoint and the nodes' own release path:

- the two questions' noise is not independent (shared or correlated draws): the correlation
  of the two questions' errors against the truth, per wording;
- the noise is smaller than stated: the spread of each question's error, and of their
  difference, against √2 times the stated sd;
- the attacker counts its readings wrong: readings of one pair in different wordings must be
  uncorrelated, and as many as the distinct wordings;
- too few targets: the root-mean-square error over many targets, with its confidence
  interval under the stated standard error.

Every small set is asked by an applicant (an organisation) of its own, so that nobody's
budget runs out (a person who drops out would bias the difference) and no answer is shared
between sets. The truth of every question comes from the simulator's own reading of the
databases.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import numpy as np
from scipy import stats

from bench.attacks import complements, ladders, pairs, windows
from bench.attacks.context import FULL, QUICK, Context
from bench.attacks.federation import Simulation
from bench.attacks.targets import SmallSet, small_sets
from bench.attacks.verdict import CountTarget
from bench.attacks.where import Where
from schema.codes import Jurisdiction

CLASSES: Final[dict[int, ModuleType]] = {13: complements, 14: ladders, 17: windows}
# The wordings the full plan asks each pair in.
WORDINGS: Final = 1 + FULL.rewordings


def sets_of(ctx: Context, number: int, per_jurisdiction: int) -> list[SmallSet]:
    """The class's small sets, chosen as the class chooses them, `per_jurisdiction` each."""
    module = CLASSES[number]
    found: Sequence[Where] = ()
    if number != complements.NUMBER:
        found = module.candidates(ctx.simulation.truth, ctx.minimums)
    return small_sets(
        ctx.simulation.truth,
        ctx.minimums,
        per_jurisdiction=per_jurisdiction,
        rng=ctx.rng,
        candidates=found,
    )


@dataclass
class Draws:
    """Per node: each distinct wording's errors against the truth (plus, minus), the readings
    of each pair, and the attacker's combined estimates of its small counts."""

    plus: list[float] = field(default_factory=list)
    minus: list[float] = field(default_factory=list)
    sds: list[float] = field(default_factory=list)  # the released sds, both questions
    # Pairs of readings' errors of one set in two distinct wordings (first, each later).
    across: list[tuple[float, float]] = field(default_factory=list)
    readings: list[int] = field(default_factory=list)  # distinct readings per set
    targets: list[CountTarget] = field(default_factory=list)
    # Every set as asked: its label, the truths and every wording's released values.
    raw: list[dict[str, Any]] = field(default_factory=list)


def measure(
    ctx: Context,
    number: int,
    sets: Sequence[SmallSet],
    wordings: int,
    echo: Callable[[str], None] = print,
) -> dict[Jurisdiction, Draws]:
    module = CLASSES[number]
    draws = {j: Draws() for j in ctx.jurisdictions}
    for n, small in enumerate(sets):
        pair: pairs.Pair = module.pair(small)
        applicant = ctx.applicant(f"pair-noise-{number}-{n}")
        asked = pairs.ask(applicant, pair, wordings)
        applicant.close()
        for j, d in draws.items():
            truth = ctx.simulation.truth[j]
            plus_truth, minus_truth = truth.count(pair.plus), truth.count(pair.minus)
            errors = []
            for plus, minus in asked.distinct(j):
                p, m = plus.node(j), minus.node(j)
                if p is None or m is None or p.value is None or m.value is None:
                    continue
                d.plus.append(p.value - plus_truth)
                d.minus.append(m.value - minus_truth)
                d.sds += [p.sd or 0.0, m.sd or 0.0]
                errors.append((p.value - m.value) - (plus_truth - minus_truth))
            d.raw.append(
                {
                    "set": small.where.label(),
                    "plus": plus_truth,
                    "minus": minus_truth,
                    "small": small.truth[j],
                    "target": j in small.small_in,
                    "wordings": [
                        [None if (r := a.node(j)) is None else r.value for a in (p_, m_)]
                        for p_, m_ in asked.answers
                    ],
                }
            )
            d.across += [(errors[0], e) for e in errors[1:]]
            d.readings.append(len(errors))
            if j in small.small_in:
                d.targets.append(
                    CountTarget.of(j, small.where.label(), small.truth[j], asked.reading(j))
                )
        if (n + 1) % 10 == 0:
            echo(f"    {n + 1} of {len(sets)} sets asked")
    return draws


def _corr(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Pearson's correlation and its 95% interval (Fisher's z)."""
    r = float(np.corrcoef(a, b)[0, 1])
    half = 1.96 / math.sqrt(max(len(a) - 3, 1))
    z = math.atanh(max(min(r, 0.999999), -0.999999))
    return r, math.tanh(z - half), math.tanh(z + half)


def _sd_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """The sample sd around zero (the errors are unbiased by design) and its 95% interval."""
    n = len(values)
    ss = float(np.sum(np.square(values)))
    return (
        math.sqrt(ss / n),
        math.sqrt(ss / stats.chi2.ppf(0.975, n)),
        math.sqrt(ss / stats.chi2.ppf(0.025, n)),
    )


def rmse_row(targets: Sequence[CountTarget]) -> str:
    """RMSE over the targets, its 95% interval, the root-mean-square stated SE, and how
    often an RMSE this low happens when the errors have the stated SEs."""
    found = [t for t in targets if t.error is not None and t.se]
    if not found:
        return "no estimates"
    errors = [t.error for t in found if t.error is not None]
    ses = [t.se for t in found if t.se is not None]
    rmse, low, high = _sd_interval(errors)
    stated = math.sqrt(float(np.mean(np.square(ses))))
    # Σ (error / SE)² is χ² with one degree per target under the stated SEs.
    statistic = float(np.sum(np.square(np.divide(errors, ses))))
    below = float(stats.chi2.cdf(statistic, len(found)))
    bias = float(np.mean(errors))
    return (
        f"{len(found):>4} targets  RMSE {rmse:5.2f} (95% {low:4.2f}–{high:4.2f})  "
        f"stated SE {stated:4.2f}  P(this low | stated SE) {below:.3f}  "
        f"mean error {bias:+.2f} ± {stated / math.sqrt(len(found)):.2f}"
    )


def report(number: int, draws: dict[Jurisdiction, Draws], echo: Callable[[str], None]) -> None:
    module = CLASSES[number]
    echo(f"[{number}] {module.TITLE}")
    everyone = Draws()
    for j, d in [*draws.items(), (None, everyone)]:
        if j is not None:
            everyone.plus += d.plus
            everyone.minus += d.minus
            everyone.sds += d.sds
            everyone.across += d.across
            everyone.readings += d.readings
            everyone.targets += d.targets
        scope = "all" if j is None else j.value
        if len(d.plus) < 4:
            echo(f"    {scope:<4} too few draws")
            continue
        sd = float(np.sqrt(np.mean(np.square(d.sds))))
        p_sd, p_low, p_high = _sd_interval(d.plus)
        m_sd, m_low, m_high = _sd_interval(d.minus)
        diff = np.subtract(d.plus, d.minus)
        d_sd, d_low, d_high = _sd_interval(list(diff))
        r, r_low, r_high = _corr(d.plus, d.minus)
        echo(
            f"    {scope:<4} {len(d.plus):>4} wordings, stated sd {sd:.2f}: "
            f"plus error sd {p_sd:.2f} ({p_low:.2f}–{p_high:.2f}), "
            f"minus {m_sd:.2f} ({m_low:.2f}–{m_high:.2f}), "
            f"difference {d_sd:.2f} ({d_low:.2f}–{d_high:.2f}; √2·sd {math.sqrt(2) * sd:.2f}), "
            f"corr(plus, minus) {r:+.3f} ({r_low:+.3f}–{r_high:+.3f}); "
            f"mean error plus {np.mean(d.plus):+.2f} minus {np.mean(d.minus):+.2f}"
        )
        if len(d.across) >= 4:
            a, b = zip(*d.across, strict=True)
            r, r_low, r_high = _corr(a, b)
            echo(
                f"         readings per pair {np.mean(d.readings):.2f}; corr(first reading, "
                f"a later one) {r:+.3f} ({r_low:+.3f}–{r_high:+.3f}) over {len(d.across)}"
            )
        echo(f"         small counts: {rmse_row(d.targets)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attacks.pair_noise", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 nodes of 20,000 persons")
    parser.add_argument("--persons", type=int, help="persons per node (default: by the run)")
    parser.add_argument("--postgres", action="store_true", help="every node's CDM in PostgreSQL")
    parser.add_argument("--only", default="13,17", help="classes among 13, 14, 17")
    parser.add_argument("--targets", type=int, default=30, help="small sets per node")
    parser.add_argument("--wordings", type=int, default=WORDINGS, help="wordings per pair")
    parser.add_argument("--seed", type=int, default=1, help="the choice of targets")
    parser.add_argument("--json", type=Path, help="also write every set's answers as JSON")
    args = parser.parse_args(argv)
    numbers = [int(n) for n in args.only.split(",") if n.strip()]
    if any(n not in CLASSES for n in numbers):
        parser.error(f"classes among {', '.join(map(str, CLASSES))}")
    plan = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="tessera-pair-noise-"))
    simulation = Simulation.start(
        work,
        persons=args.persons or plan.persons,
        postgres=args.postgres,
        jurisdictions=plan.jurisdictions,
    )
    ctx = Context(simulation, plan, seed=args.seed)
    dumped: dict[int, dict[str, list[dict[str, Any]]]] = {}
    try:
        print(
            f"pair noise ({plan.name}, {'PostgreSQL' if args.postgres else 'DuckDB'}): "
            + ", ".join(f"{j.value} minimum {ctx.minimums[j]}" for j in ctx.jurisdictions)
        )
        for number in numbers:
            sets = sets_of(ctx, number, args.targets)
            print(f"[{number}] {len(sets)} small sets, {args.wordings} wordings each")
            draws = measure(ctx, number, sets, args.wordings)
            report(number, draws, print)
            dumped[number] = {j.value: d.raw for j, d in draws.items()}
            if args.json is not None:
                args.json.write_text(json.dumps(dumped, indent=1))
    finally:
        ctx.close()
        simulation.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
