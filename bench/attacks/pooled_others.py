"""Class 10: a pooled count minus the other countries' released counts.

The small set S (a diagnosis, a sex, a 10-year band) is small in some countries. Padded with a
fresh birth cohort L, every country's count of S ∪ L and of L is released, and so is each
count pooled securely across all of them. The attacker reads country j's part of a question as
the pooled count minus every other country's count, and j's part of S as the difference over
the two questions: variance 2 (σ_pool² + (k − 1) σ²) per pad, which it combines with j's own
counts of both (2σ²), over several pads.
"""

from __future__ import annotations

from bench.attacks.client import Applicant, BudgetExhausted
from bench.attacks.common import unanswered
from bench.attacks.context import Context
from bench.attacks.estimate import Reading, combine, difference
from bench.attacks.pooled import (
    applicant_for,
    minus,
    padded,
    pooled_minus_others,
    pooled_securely,
    spend_of,
)
from bench.attacks.targets import Cohorts, small_sets
from bench.attacks.verdict import ClassResult, CountTarget
from schema.codes import Jurisdiction

NUMBER = 10
TITLE = "A pooled count minus the other countries' released counts"
METHOD = "(P(S∪L) − Σ others) − (P(L) − Σ others), and j's n(S∪L) − n(L), over pads L"


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "count", allowance=ctx.allowance)
    applicants: list[Applicant] = []
    sets = small_sets(
        ctx.simulation.truth,
        ctx.minimums,
        per_jurisdiction=ctx.plan.count_targets,
        rng=ctx.rng,
    )
    cohorts = Cohorts()
    pads = max(1, ctx.plan.repeats // 2)
    pairs = secure = done = 0
    try:
        for n, small in enumerate(sets):
            applicant = applicant_for(ctx, "pooled-others", n)
            applicants.append(applicant)
            readings: dict[Jurisdiction, list[Reading | None]] = {j: [] for j in small.small_in}
            for _ in range(pads):
                question, pad = padded(small, cohorts)
                with_set, alone = applicant.ask(question), applicant.ask(pad)
                pairs += 1
                secure += pooled_securely(with_set, alone)
                for j in small.small_in:
                    pooled = minus(
                        pooled_minus_others(with_set, j, ctx.jurisdictions),
                        pooled_minus_others(alone, j, ctx.jurisdictions),
                    )
                    readings[j] += [pooled, difference([with_set.node(j)], [alone.node(j)])]
            for j in small.small_in:
                reading = combine(readings[j])
                result.targets.append(
                    CountTarget.of(j, small.where.label(), small.truth[j], reading)
                )
            done += 1
    except BudgetExhausted:
        result.exhausted = True
    result.targets.extend(unanswered(sets[done:]))
    result.questions = sum(a.questions for a in applicants)
    result.approvals = max(1, len(applicants))  # an applicant, with its approval, per set
    result.privacy = spend_of(applicants)
    result.notes.append(f"{secure} of {pairs} pairs of questions pooled securely")
    return result
