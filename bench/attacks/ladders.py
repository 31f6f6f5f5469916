"""Class 14: count ladders. "At least N records of C" minus "at least N+1".

Within a cohort (everyone, a sex, or a sex and a 10-year band), the persons with exactly N
condition records of C are the difference of two occurrence thresholds (`atLeast`); the
simulator picks (C, cohort, N) where both thresholds hold for many persons at every node and
exactly N is a small set somewhere. Every pair is asked in several wordings, distinct readings
averaged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from bench.attacks import pairs
from bench.attacks.context import Context
from bench.attacks.targets import OLDEST, SmallSet
from bench.attacks.truth import NodeTruth
from bench.attacks.verdict import ClassResult
from bench.attacks.where import SEXES, Event, Where
from schema.codes import Jurisdiction

NUMBER = 14
TITLE = "Count ladders: at least N records of C minus at least N+1"
METHOD = "|≥N of C| − |≥N+1 of C| = |exactly N|, within everyone, a sex or a sex and age band"

# Chronic diagnoses recorded again and again, and rarer ones.
LADDER_CODES: Final = ("E11", "I10", "I50", "G40", "F84", "E10", "E66", "F70", "I21")
RUNGS: Final = range(1, 21)
# The attacker's lucky rungs: both thresholds hold for this many times each node's minimum
# there, so both questions are released, while exactly N is small somewhere.
RELEASED: Final = 3


def exactly(code: str, n: int) -> tuple[Event, Event]:
    return Event(code, at_least=n), Event(code, at_least=n + 1, exclude=True)


def cohorts() -> list[Where]:
    """Everyone, each sex, and each sex in 10-year bands."""
    return [
        Where(age_min=0, age_max=OLDEST),
        *(Where(sex=sex, age_min=0, age_max=OLDEST) for sex in SEXES),
        *(
            Where(sex=sex, age_min=low, age_max=low + 9)
            for sex in SEXES
            for low in range(0, OLDEST, 10)
        ),
    ]


def candidates(
    truth: Mapping[Jurisdiction, NodeTruth], minimums: Mapping[Jurisdiction, int]
) -> list[Where]:
    found = []
    for code in LADDER_CODES:
        for cohort in cohorts():
            for n in RUNGS:
                above = replace(cohort, conditions=(Event(code, at_least=n + 1),))
                if any(t.count(above) < RELEASED * minimums[j] for j, t in truth.items()):
                    break
                found.append(replace(cohort, conditions=exactly(code, n)))
    return found


def pair(small: SmallSet) -> pairs.Pair:
    at_least, fewer = small.where.conditions
    return pairs.Pair(
        replace(small.where, conditions=(at_least,)),
        replace(small.where, conditions=(replace(fewer, exclude=False),)),
    )


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "count", allowance=ctx.allowance)
    return pairs.candidate_attack(ctx, result, candidates, pair)
