"""Class 11: the same question pooled over two sets of countries, with and without one.

Asked of every country, a question's count is pooled over all of them (A); asked without
country j, over the others (B = A ∖ {j}; summed from their released counts where fewer than
a round's minimum are left). The difference is j's part: x_j plus the two pools' noise, which
are drawn apart (B's shares are new draws, not A's less j's), variance σ² + σ² where both are
pooled securely. Padded as in class 10, j's part of the small set S is the difference over the
two questions, over several pads.
"""

from __future__ import annotations

from bench.attacks.client import Applicant, BudgetExhausted
from bench.attacks.common import unanswered
from bench.attacks.context import Context
from bench.attacks.estimate import Reading, combine, difference
from bench.attacks.pooled import applicant_for, minus, padded, pooled_securely, spend_of
from bench.attacks.targets import Cohorts, small_sets
from bench.attacks.verdict import ClassResult, CountTarget
from schema.codes import Jurisdiction

NUMBER = 11
TITLE = "One question pooled over two sets of countries, with and without one"
METHOD = "(P_A(S∪L) − P_A∖j(S∪L)) − (P_A(L) − P_A∖j(L)), over pads L"


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
            applicant = applicant_for(ctx, "node-sets", n)
            applicants.append(applicant)
            readings: dict[Jurisdiction, list[Reading | None]] = {j: [] for j in small.small_in}
            for _ in range(pads):
                question, pad = padded(small, cohorts)
                everyone = applicant.ask(question), applicant.ask(pad)
                for j in small.small_in:
                    rest = [k for k in ctx.jurisdictions if k is not j]
                    without = (
                        applicant.ask(question, jurisdictions=rest),
                        applicant.ask(pad, jurisdictions=rest),
                    )
                    pairs += 1
                    secure += pooled_securely(*everyone, *without)
                    readings[j].append(
                        minus(
                            difference([everyone[0].pooled], [without[0].pooled]),
                            difference([everyone[1].pooled], [without[1].pooled]),
                        )
                    )
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
    result.notes.append(f"{secure} of {pairs} pairs of node sets pooled securely on both sides")
    return result
