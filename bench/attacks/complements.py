"""Class 13: complements in one question. "A without X" next to "A".

A is a sex and a 10-year band, large; X a diagnosis. |A| − |A and no X| = |A ∧ X|, a small set
(`exclude: true` writes the complement inside one question, no union of ranges needed). Every
pair is asked in several wordings and the distinct readings are averaged; each question goes to
every jurisdiction at once.
"""

from __future__ import annotations

from dataclasses import replace

from bench.attacks import pairs
from bench.attacks.context import Context
from bench.attacks.targets import SmallSet, small_sets
from bench.attacks.verdict import ClassResult

NUMBER = 13
TITLE = "Complements in one question: A versus A without X"
METHOD = "|A| − |A ∧ no X| = |A ∧ X|; A a sex and age band, X a diagnosis (exclude: true)"


def pair(small: SmallSet) -> pairs.Pair:
    (event,) = small.where.conditions
    cohort = replace(small.where, conditions=())
    return pairs.Pair(cohort, replace(cohort, conditions=(replace(event, exclude=True),)))


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "count", allowance=ctx.allowance)
    sets = small_sets(
        ctx.simulation.truth, ctx.minimums, per_jurisdiction=ctx.plan.count_targets, rng=ctx.rng
    )
    return pairs.count_attack(ctx, result, sets, pair)
