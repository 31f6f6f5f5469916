"""`python -m bench.attacks.survival_noise [--quick] [--postgres] [--trials N] [--shared]`:
the noise behind class 20 (a survival step isolating a known decedent), measured.

Class 20's attacker sums, over ten yearly intervals, the differences of two curves' events:
of a birth cohort L with a known decedent D and of L alone, each indexed on a first record
of diagnosis X. Where its accuracy comes out well above what its standard error allows, its
errors are not what it believes: either the noise of the cells it combines is dependent (one
draw replayed for overlapping questions, a question and its padded variant sharing noise,
correlated draws), or smaller than stated, or its readings of one pair in several wordings
are not independent, or the trials' errors are correlated with one another (overlapping
paddings, persons dropping out of one curve and not the other as their budget runs out).
This experiment tells them apart, through the public endpoint and the nodes' own release
path, with every cell compared with the truth:

- each released cell's error against the truth, and its spread against the stated sd;
- the correlation of the two curves' errors in the same interval (the attacker's difference);
- the reading's error (the sum of the ten differences) against its stated standard error,
  and the correlation of one pair's readings in two wordings;
- the trials' combined errors: their spread against the stated standard error, and their
  correlation between trials asked one after the other and between trials whose paddings
  overlap and share the diagnosis;
- answers replayed: wordings whose numbers repeat an earlier wording's, and pairs whose two
  curves came back identical (equal numbers for two questions would be shared noise).

The trials are class 20's, chosen and padded as it chooses them (the same seed, the same
targets). Each trial is asked by an applicant of its own (no answer or budget is shared
between trials), or with `--shared` by one applicant for all, as in the class's run (persons
of overlapping paddings then spend their budget and drop out, which shows as bias against
the truth). The truth of every cell comes from the simulator's own reading of the databases:
each cohort person's first death on or after the index date and the end of the observation
period holding it, as `schema.survival` defines the intervals.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import duckdb
import numpy as np
from scipy import stats

from bench.attacks.client import Released
from bench.attacks.context import FULL, QUICK, Context
from bench.attacks.deaths import DEATH_CODES
from bench.attacks.estimate import Reading, combine, decide, score
from bench.attacks.federation import Simulation
from bench.attacks.pair_noise import _corr, _sd_interval
from bench.attacks.survival import events, pair, reading
from bench.attacks.targets import Cohorts, DeathTrial, death_trials
from bench.attacks.truth import NO_INDEX, NodeTruth
from bench.attacks.where import Where
from schema.codes import Jurisdiction

# Class 20's follow-up (`bench.attacks.survival.FOLLOW_UP`): yearly intervals for ten years.
WIDTH: Final = 365
TOP: Final = 3650
INTERVALS: Final = TOP // WIDTH
WORDINGS: Final = 1 + FULL.rewordings
# Cells this far above the minimum are released whatever their noise (15 = 3 sds): their
# errors are the noise alone, never cut by the minimum.
MARGIN: Final = 15

_PERIODS: Final = """
SELECT person_id, observation_period_start_date - DATE '1970-01-01' AS first,
    observation_period_end_date - DATE '1970-01-01' AS last
FROM observation_period
"""


@dataclass(frozen=True)
class Observed:
    """One node's observation periods, by person index (into `NodeTruth`'s arrays)."""

    person: np.ndarray[Any, np.dtype[np.int64]]
    first: np.ndarray[Any, np.dtype[np.int64]]
    last: np.ndarray[Any, np.dtype[np.int64]]

    @classmethod
    def load(cls, database: Path, truth: NodeTruth) -> Observed:
        with duckdb.connect(str(database), read_only=True) as con:
            rows = con.execute(_PERIODS).fetchnumpy()
        ids = np.asarray(rows["person_id"], dtype=np.int64)
        return cls(
            person=np.searchsorted(truth.person_id, ids).astype(np.int64),
            first=np.asarray(rows["first"], dtype=np.int64),
            last=np.asarray(rows["last"], dtype=np.int64),
        )


def true_events(truth: NodeTruth, observed: Observed, where: Where) -> list[int]:
    """The persons of `where`'s cohort whose first death on or after their index date falls
    in each yearly interval, within the observation period holding that date (an outcome on
    its last day counts), before ten years."""
    assert where.index is not None
    cohort = truth.mask(where)
    index = truth.index_day(where.index)
    # The end of the observation period holding the index date (none: censored on it).
    holding = (observed.first <= index[observed.person]) & (observed.last >= index[observed.person])
    end = np.full(len(cohort), -1, dtype=np.int64)
    np.maximum.at(end, observed.person[holding], observed.last[holding])
    end_days = np.where(end >= 0, end - index, 0)
    # The first death on or after the index date.
    after = truth.death_day >= index[truth.death_person]
    death = np.full(len(cohort), NO_INDEX, dtype=np.int64)
    np.minimum.at(death, truth.death_person[after], truth.death_day[after])
    outcome = death - index
    event = cohort & (death != NO_INDEX) & (outcome <= end_days) & (outcome < TOP)
    counts = np.bincount(outcome[event] // WIDTH, minlength=INTERVALS)
    return [int(n) for n in counts[:INTERVALS]]


@dataclass
class Trials:
    """Per node: every trial as asked, and what the measures need of it."""

    # (plus error, minus error) of one interval in one distinct wording, both released.
    cells: list[tuple[float, float]] = field(default_factory=list)
    # The same, of cells whose truth lies MARGIN or more above the minimum on both sides.
    large: list[tuple[float, float]] = field(default_factory=list)
    sds: list[float] = field(default_factory=list)
    # The reading of each distinct wording: error against the true difference, variance.
    readings: list[tuple[float, float]] = field(default_factory=list)
    # Pairs of one trial's readings' errors in two distinct wordings (first, each later).
    across: list[tuple[float, float]] = field(default_factory=list)
    distinct: list[int] = field(default_factory=list)
    replayed: int = 0  # wordings whose answers repeat an earlier wording's
    # Distinct wordings one of whose curves repeats an earlier wording's: half a new reading.
    half: int = 0
    identical: int = 0  # wordings whose two curves came back equal, cell by cell
    # Per trial, in the order asked: combined error, its stated variance, member, guessed
    # member, the true difference, padding window and diagnosis.
    trials: list[dict[str, Any]] = field(default_factory=list)


def _values(side: Sequence[Released] | None) -> tuple[int | None, ...]:
    return () if side is None else tuple(r.value for r in side)


def measure(
    ctx: Context,
    trials: Sequence[DeathTrial],
    observed: dict[Jurisdiction, Observed],
    *,
    wordings: int,
    shared: bool,
    echo: Callable[[str], None] = print,
) -> dict[Jurisdiction, Trials]:
    found = {j: Trials() for j in ctx.jurisdictions}
    cohorts = Cohorts()
    one = ctx.applicant("survival-noise") if shared else None
    for n, trial in enumerate(trials):
        j = trial.decedent.jurisdiction
        node, minimum = ctx.simulation.truth[j], ctx.minimums[j]
        both = pair(trial, cohorts)
        assert both.minus.age_min is not None
        assert both.minus.age_max is not None
        plus_truth = true_events(node, observed[j], both.plus)
        minus_truth = true_events(node, observed[j], both.minus)
        difference = sum(plus_truth) - sum(minus_truth)
        applicant = one or ctx.applicant(f"survival-noise-{n}")
        seen: set[tuple[tuple[int | None, ...], ...]] = set()
        sides: tuple[set[tuple[int | None, ...]], set[tuple[int | None, ...]]] = (set(), set())
        d = found[j]
        errors, kept, scores = [], [], []
        for i in range(wordings):
            worded = both.reworded(i)
            plus, minus = events(applicant, worded.plus, j), events(applicant, worded.minus, j)
            values = (_values(plus), _values(minus))
            if values in seen:
                d.replayed += 1
                continue
            seen.add(values)
            if any(
                v in side and any(x is not None for x in v)
                for v, side in zip(values, sides, strict=True)
            ):
                d.half += 1
            for v, side in zip(values, sides, strict=True):
                side.add(v)
            if plus is None or minus is None:
                continue
            if values[0] == values[1] and any(v is not None for v in values[0]):
                d.identical += 1
            for k, (a, b) in enumerate(zip(plus, minus, strict=True)):
                d.sds += [a.sd or 0.0, b.sd or 0.0]
                if a.value is None or b.value is None:
                    continue
                cell = (float(a.value - plus_truth[k]), float(b.value - minus_truth[k]))
                d.cells.append(cell)
                if min(plus_truth[k], minus_truth[k]) >= minimum + MARGIN:
                    d.large.append(cell)
            read = reading(plus, minus)
            scores.append(score(read))
            if read is not None:
                errors.append(read.estimate - difference)
                kept.append(read)
                d.readings.append((read.estimate - difference, read.variance))
        d.across += [(errors[0], e) for e in errors[1:]]
        d.distinct.append(len(kept))
        combined: Reading | None = combine(kept)
        d.trials.append(
            {
                "label": trial.label,
                "code": trial.code,
                "window": [both.minus.age_min, both.minus.age_max],
                "member": trial.member,
                "guess": decide(scores),
                "difference": difference,
                "plus": plus_truth,
                "minus": minus_truth,
                "error": None if combined is None else combined.estimate - difference,
                "variance": None if combined is None else combined.variance,
            }
        )
        if one is None:
            applicant.close()
        if (n + 1) % 8 == 0:
            echo(f"    {n + 1} of {len(trials)} trials asked")
    return found


def _overlapping(a: dict[str, Any], b: dict[str, Any]) -> bool:
    (a_low, a_high), (b_low, b_high) = a["window"], b["window"]
    return bool(a["code"] == b["code"] and a_low <= b_high and b_low <= a_high)


def _balanced(trials: Sequence[dict[str, Any]]) -> str:
    members = [t for t in trials if t["member"]]
    others = [t for t in trials if not t["member"]]
    if not members or not others:
        return "—"
    right_in = sum(t["guess"] for t in members)
    right_out = sum(not t["guess"] for t in others)
    accuracy = (right_in / len(members) + right_out / len(others)) / 2
    return f"{accuracy:.0%} ({right_in}/{len(members)} + {right_out}/{len(others)})"


def report(found: dict[Jurisdiction, Trials], echo: Callable[[str], None]) -> None:
    everyone = Trials()
    for j, d in [*found.items(), (None, everyone)]:
        if j is not None:
            everyone.cells += d.cells
            everyone.large += d.large
            everyone.sds += d.sds
            everyone.readings += d.readings
            everyone.across += d.across
            everyone.distinct += d.distinct
            everyone.replayed += d.replayed
            everyone.identical += d.identical
            everyone.half += d.half
            everyone.trials += d.trials
        scope = "all" if j is None else j.value
        if len(d.cells) < 4:
            echo(f"    {scope:<4} too few released cells")
            continue
        sd = float(np.sqrt(np.mean(np.square(d.sds))))
        echo(
            f"    {scope:<4} {len(d.trials)} trials, {np.mean(d.distinct):.2f} distinct "
            f"wordings each ({d.replayed} replayed, {d.half} with one curve replayed, "
            f"{d.identical} with both curves equal); "
            f"stated sd {sd:.2f}; balanced accuracy {_balanced(d.trials)}"
        )
        for name, cells in (("cells released on both sides", d.cells), ("large cells", d.large)):
            if len(cells) < 4:
                echo(f"         {name}: too few")
                continue
            plus, minus = zip(*cells, strict=True)
            p_sd, p_low, p_high = _sd_interval(plus)
            m_sd, m_low, m_high = _sd_interval(minus)
            diff_sd, diff_low, diff_high = _sd_interval(np.subtract(plus, minus).tolist())
            r, r_low, r_high = _corr(plus, minus)
            echo(
                f"         {name} ({len(cells)}): error sd plus {p_sd:.2f} "
                f"({p_low:.2f}–{p_high:.2f}), minus {m_sd:.2f} ({m_low:.2f}–{m_high:.2f}); "
                f"difference {diff_sd:.2f} ({diff_low:.2f}–{diff_high:.2f}; √2·sd "
                f"{math.sqrt(2) * sd:.2f}); corr(plus, minus) {r:+.3f} "
                f"({r_low:+.3f}–{r_high:+.3f}); "
                f"mean error plus {np.mean(plus):+.2f} minus {np.mean(minus):+.2f}"
            )
        if d.readings:
            errors, variances = zip(*d.readings, strict=True)
            z = np.divide(errors, np.sqrt(variances))
            echo(
                f"         readings ({len(errors)}): error sd {_sd_interval(errors)[0]:.2f}, "
                f"stated {math.sqrt(float(np.mean(variances))):.2f}; sd of error / stated "
                f"{_sd_interval(z.tolist())[0]:.2f} ({_sd_interval(z.tolist())[1]:.2f}–"
                f"{_sd_interval(z.tolist())[2]:.2f}); mean error {np.mean(errors):+.2f}"
            )
        if len(d.across) >= 4:
            r, r_low, r_high = _corr(*zip(*d.across, strict=True))
            echo(
                f"         corr(first reading, a later one) {r:+.3f} ({r_low:+.3f}–{r_high:+.3f}) "
                f"over {len(d.across)}"
            )
        _trial_rows(d.trials, echo)


def _trial_rows(trials: Sequence[dict[str, Any]], echo: Callable[[str], None]) -> None:
    """The trials' combined errors: spread against the stated SE, member against not, and
    correlation between trials asked one after the other or sharing a padding."""
    found = [t for t in trials if t["error"] is not None]
    if len(found) < 4:
        return
    errors = [t["error"] for t in found]
    ses = [math.sqrt(t["variance"]) for t in found]
    rmse, low, high = _sd_interval(errors)
    stated = math.sqrt(float(np.mean(np.square(ses))))
    statistic = float(np.sum(np.square(np.divide(errors, ses))))
    below = float(stats.chi2.cdf(statistic, len(found)))
    by_member = {
        m: [t["error"] for t in found if t["member"] is m and t["error"] is not None]
        for m in (True, False)
    }
    means = ", ".join(
        f"{'members' if m else 'others'} {np.mean(e):+.2f} ± {stated / math.sqrt(len(e)):.2f}"
        for m, e in by_member.items()
        if e
    )
    echo(
        f"         trials ({len(found)}): RMSE {rmse:.2f} ({low:.2f}–{high:.2f}), stated SE "
        f"{stated:.2f}, P(this low | stated) {below:.3f}; mean error {means}"
    )
    following = [(a["error"], b["error"]) for a, b in itertools.pairwise(found)]
    overlapping = [
        (a["error"], b["error"])
        for n, a in enumerate(found)
        for b in found[n + 1 :]
        if _overlapping(a, b)
    ]
    for name, pairs_ in (("one after the other", following), ("overlapping", overlapping)):
        if len(pairs_) >= 4:
            r, r_low, r_high = _corr(*zip(*pairs_, strict=True))
            echo(
                f"         corr of trials' errors, {name}: {r:+.3f} ({r_low:+.3f}–{r_high:+.3f})"
                f" over {len(pairs_)} pairs"
            )
        else:
            echo(f"         trials {name}: {len(pairs_)} pairs")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.attacks.survival_noise", description=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="3 nodes of 20,000 persons")
    parser.add_argument("--persons", type=int, help="persons per node (default: by the run)")
    parser.add_argument("--postgres", action="store_true", help="every node's CDM in PostgreSQL")
    parser.add_argument("--trials", type=int, default=16, help="trials per node (class 20: 16)")
    parser.add_argument("--wordings", type=int, default=WORDINGS, help="wordings per pair")
    parser.add_argument("--seed", type=int, default=1, help="the choice of targets")
    parser.add_argument(
        "--shared", action="store_true", help="one applicant for every trial, as the class"
    )
    parser.add_argument("--json", type=Path, help="also write every trial as JSON")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="tessera-survival-noise-"))
    simulation = Simulation.start(
        work,
        persons=args.persons or plan.persons,
        postgres=args.postgres,
        jurisdictions=plan.jurisdictions,
    )
    ctx = Context(simulation, plan, seed=args.seed)
    try:
        print(
            f"survival noise ({plan.name}, {'PostgreSQL' if args.postgres else 'DuckDB'}, "
            f"{'one applicant' if args.shared else 'an applicant per trial'}): "
            + ", ".join(f"{j.value} minimum {ctx.minimums[j]}" for j in ctx.jurisdictions)
        )
        observed = {
            j: Observed.load(simulation.federation.database(j), simulation.truth[j])
            for j in ctx.jurisdictions
        }
        trials = death_trials(
            simulation.truth,
            per_jurisdiction=args.trials,
            rng=ctx.rng,
            codes=tuple(dict.fromkeys(DEATH_CODES)),
        )
        print(f"[20] {len(trials)} trials, {args.wordings} wordings each")
        found = measure(ctx, trials, observed, wordings=args.wordings, shared=args.shared)
        report(found, print)
        if args.json is not None:
            args.json.write_text(
                json.dumps({j.value: d.trials for j, d in found.items()}, indent=1)
            )
    finally:
        ctx.close()
        simulation.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
