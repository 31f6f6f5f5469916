"""Class 17: relative windows. "X within d days of the index" minus "within d − 1".

The index is each person's first record of a chronic diagnosis C; within a cohort (everyone, a
sex, or a sex and a 10-year band), the persons whose records of X around the index begin on
exactly day d after it (or end exactly d days before it) are the difference of two windows
one day apart. The simulator picks (C, X, cohort, d) where both windows hold many persons at
every node and their difference is a small set somewhere. Every pair is asked in several
wordings, distinct readings averaged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from bench.attacks import pairs
from bench.attacks.context import Context
from bench.attacks.ladders import cohorts
from bench.attacks.targets import SmallSet
from bench.attacks.truth import NodeTruth
from bench.attacks.verdict import ClassResult
from bench.attacks.where import Index, Relative, Where
from schema.codes import Jurisdiction

NUMBER = 17
TITLE = "Relative windows: X within d days of the index minus within d − 1"
METHOD = (
    "|first C, X in [0, d]| − |first C, X in [0, d−1]| (and before the index: [−d, 0] − "
    "[−d+1, 0]) = |X first on day d|"
)

INDEX_CODES: Final = ("E11", "I10")
OUTCOME_CODES: Final = ("I21", "I50", "E66", "I10", "E11", "G40")
DAYS: Final = (7, 30, 90, 180, 365, 730, 1095, 1825)
# Both windows hold this many times each node's minimum, so both questions are released.
RELEASED: Final = 3


def windows(code: str, d: int, after: bool) -> tuple[Relative, Relative]:
    """The wider window and the one a day narrower, after the index or before it."""
    if after:
        return Relative(code, 0, d), Relative(code, 0, d - 1)
    return Relative(code, -d, 0), Relative(code, -d + 1, 0)


def candidates(
    truth: Mapping[Jurisdiction, NodeTruth], minimums: Mapping[Jurisdiction, int]
) -> list[Where]:
    """Small sets written as one question: the wider window without the narrower one."""
    found = []
    for index in INDEX_CODES:
        for outcome in OUTCOME_CODES:
            if outcome == index:
                continue
            for cohort in cohorts():
                for after in (True, False):
                    for d in DAYS:
                        wide, narrow = windows(outcome, d, after)
                        asked = replace(cohort, index=Index(index), relative=(narrow,))
                        if any(t.count(asked) < RELEASED * minimums[j] for j, t in truth.items()):
                            continue
                        small = (wide, replace(narrow, exclude=True))
                        found.append(replace(cohort, index=Index(index), relative=small))
    return found


def pair(small: SmallSet) -> pairs.Pair:
    wide, narrow = small.where.relative
    return pairs.Pair(
        replace(small.where, relative=(wide,)),
        replace(small.where, relative=(replace(narrow, exclude=False),)),
    )


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "count", allowance=ctx.allowance)
    return pairs.candidate_attack(ctx, result, candidates, pair)
