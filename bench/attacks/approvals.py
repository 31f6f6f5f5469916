"""Class 6: several approvals of one applicant, from several HDABs. A second application of
the same researcher continues where the first stopped; every question carries one permit per
jurisdiction, each from that jurisdiction's HDAB, and the second application's permits name
another organisation of the researcher (an affiliation).

The pair "A ∪ S" and "A" (S small, A a large birth cohort) differs by S alone: asked under
one approval, the second question is the classic differencing pair. The attacker asks A ∪ S
under one approval and A under the other, alternating, with fresh padding for every pair, and
averages the differences. Each pair's second question is also asked under the first
approval, to show what the approval boundary changes.
"""

from __future__ import annotations

from bench.attacks.client import BudgetExhausted
from bench.attacks.common import spend
from bench.attacks.context import Context
from bench.attacks.estimate import Reading, combine, difference
from bench.attacks.targets import Cohorts, small_sets
from bench.attacks.verdict import ClassResult, CountTarget
from bench.attacks.where import union
from schema.codes import Jurisdiction

NUMBER = 6
TITLE = "Several approvals of one applicant, from every HDAB"
METHOD = "|A∪S| under one approval minus |A| under another, alternating, averaged"


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "count", allowance=ctx.allowance, approvals=2)
    applicant = ctx.applicant("approvals", approvals=2, affiliations=True)
    sets = small_sets(
        ctx.simulation.truth, ctx.minimums, per_jurisdiction=ctx.plan.count_targets, rng=ctx.rng
    )
    cohorts = Cohorts()
    readings: dict[tuple[int, Jurisdiction], list[Reading | None]] = {}
    denied = same_approval = 0
    try:
        for n, small in enumerate(sets):
            for k in range(ctx.plan.approval_pairs):
                first, second = k % 2, (k + 1) % 2
                a, _ = cohorts.cohort(small.band)
                with_set = applicant.ask(union(a, small.where), approval=first)
                padding = applicant.ask(a, approval=second)
                once = applicant.ask(a, approval=first)
                for j in small.small_in:
                    readings.setdefault((n, j), []).append(
                        difference([with_set.node(j)], [padding.node(j)])
                    )
                    same_approval += 1
                    denied += once.denied(j)
    except BudgetExhausted:
        result.exhausted = True
    for n, small in enumerate(sets):
        for j in small.small_in:
            result.targets.append(
                CountTarget.of(
                    j, small.where.label(), small.truth[j], combine(readings.get((n, j), []))
                )
            )
    result.questions = applicant.questions
    result.privacy = spend(applicant)
    result.notes.append(
        f"the same pair under one approval: {denied} of {same_approval} second questions "
        "refused (DENIED); across two approvals: answered"
    )
    result.notes.append(
        f"{len(ctx.jurisdictions)} HDABs' permits per application; the second names another "
        "organisation of the same researcher"
    )
    return result
