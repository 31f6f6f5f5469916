"""Class 21: a survival curve pooled securely minus the other countries' own curves.

A survival question asked without each country's curves (`byCountry: false`) has its exits
pooled securely: one noisy count of the whole per cell. The same question with each country's
curves is answered nationally. The attacker takes a small set S (a diagnosis, a sex, a 10-year
band; each person's index their first record of the diagnosis) that is small in some country
j, pads it with a fresh birth cohort L so that every part is released (a diagnosis common at
other ages, so that L's persons with it are many), and reads j's persons
at risk at the start (the sum of j's exit cells: its cohort) as the pooled curve's minus every
other country's, for S ∪ L and for L; the difference is j's count of S. Each reading carries
the pooled cells' noise (σ_pool per cell) and the others' (σ per cell): never below the
variance of one count per cell, and each of the four questions is charged. It combines those
readings with j's own curves' (S ∪ L against L) over several pads.

The secure and the national releases of one table are stored apart (a pool's shares under
their participant set), so neither replays the other's noise: were they the same draw, the
pooled curve minus the others would hand j's cells over with the national noise cancelled.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from bench.attacks.client import Applicant, BudgetExhausted, QuestionRefused
from bench.attacks.common import unanswered
from bench.attacks.context import Context
from bench.attacks.estimate import Reading, combine
from bench.attacks.pooled import applicant_for, minus, padded, spend_of
from bench.attacks.targets import Cohorts, small_sets
from bench.attacks.verdict import ClassResult, CountTarget
from bench.attacks.where import Index, Where
from schema.codes import Jurisdiction

NUMBER = 21
TITLE = "A survival curve pooled securely minus the other countries' own curves"
METHOD = "(P(S∪L) − Σ others) − (P(L) − Σ others) at risk at the start, and j's own, over pads"
# One yearly interval: three exit cells, the fewest a curve has.
FOLLOW_UP: Final = "{ outcome: { domain: DEATH }, intervalDays: 365, maxDays: 365 }"

# Diagnoses common at other ages: the cohort follows persons from their first record of the
# diagnosis, so only the pad's persons who have it pad the question.
PADDED_CODES: Final = ("E11", "I10", "I21", "G40")

Curves = dict[Jurisdiction | None, tuple[float, float]]


def indexed(where: Where, small: Where) -> Where:
    """`where` followed from each person's first record of the small set's diagnosis."""
    return replace(where, index=Index(small.conditions[0].code))


def part_of(
    pooled: Curves, national: Curves, j: Jurisdiction, jurisdictions: list[Jurisdiction]
) -> Reading | None:
    """Country j's persons at risk at the start: the pooled curve's minus every other's."""
    parts = [pooled.get(None), *(national.get(k) for k in jurisdictions if k is not j)]
    if any(p is None for p in parts):
        return None
    first, *others = [p for p in parts if p is not None]
    return Reading(first[0] - sum(o[0] for o in others), first[1] + sum(o[1] for o in others))


def own(national: Curves, j: Jurisdiction) -> Reading | None:
    found = national.get(j)
    return None if found is None else Reading(*found)


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "count", allowance=ctx.allowance)
    applicants: list[Applicant] = []
    sets = small_sets(
        ctx.simulation.truth,
        ctx.minimums,
        per_jurisdiction=ctx.plan.count_targets,
        rng=ctx.rng,
        codes=PADDED_CODES,
    )
    cohorts = Cohorts()
    pads = max(1, ctx.plan.repeats // 2)
    jurisdictions = list(ctx.jurisdictions)
    pairs = secure = done = 0
    try:
        for n, small in enumerate(sets):
            applicant = applicant_for(ctx, "pooled-survival", n)
            applicants.append(applicant)
            readings: dict[Jurisdiction, list[Reading | None]] = {j: [] for j in small.small_in}
            for _ in range(pads):
                question, pad = (indexed(w, small.where) for w in padded(small, cohorts))
                asked = {
                    (w, by_country): applicant.followed(w, FOLLOW_UP, by_country=by_country)
                    for w in (question, pad)
                    for by_country in (False, True)
                }
                pairs += 1
                secure += all(None in asked[w, False] for w in (question, pad))
                for j in small.small_in:
                    pooled = minus(
                        part_of(asked[question, False], asked[question, True], j, jurisdictions),
                        part_of(asked[pad, False], asked[pad, True], j, jurisdictions),
                    )
                    national = minus(own(asked[question, True], j), own(asked[pad, True], j))
                    readings[j] += [pooled, national]
            for j in small.small_in:
                truth = ctx.simulation.truth[j].count(indexed(small.where, small.where))
                label = f"{small.where.label()} (followed from the first)"
                result.targets.append(CountTarget.of(j, label, truth, combine(readings[j])))
            done += 1
    except (BudgetExhausted, QuestionRefused):
        result.exhausted = True
    result.targets.extend(unanswered(sets[done:]))
    result.questions = sum(a.questions for a in applicants)
    result.approvals = max(1, len(applicants))  # an applicant, with its approval, per set
    result.privacy = spend_of(applicants)
    result.notes.append(
        f"{secure} of {pairs} pairs of pooled curves drawn; one yearly interval per curve"
    )
    return result
