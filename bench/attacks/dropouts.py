"""Class 12: a country's node drops out of a pooled round, and the question is asked again.

The attacker (or a failure it waits for) makes country m's node drop out while a question is
pooled: the gateway abandons the round and pools over the others in a second round, with new
shares. Once m is back, the same question is pooled over every country again (the others'
shares for that set were drawn in the abandoned round, and kept). The two pooled counts differ
by m's part: x_m plus the noise of two pools drawn apart, variance σ² + σ², as in class 11 but
with m's node killed mid-question instead of left out of it. Padded as in class 10.

This class stops and restarts connectors: it runs after the classes that do not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bench.attacks.client import Answer, Applicant, BudgetExhausted
from bench.attacks.context import Context
from bench.attacks.estimate import difference
from bench.attacks.pooled import applicant_for, minus, padded, spend_of
from bench.attacks.targets import Cohorts, small_sets
from bench.attacks.verdict import ClassResult, CountTarget
from bench.attacks.where import Where
from schema.codes import Jurisdiction

NUMBER = 12
TITLE = "A node dropping out of a pooled round, the question asked again"
METHOD = "m killed: P_A∖m(S∪L), P_A∖m(L); m back: P_A(S∪L), P_A(L); the differences' difference"


def while_down(
    ctx: Context, applicant: Applicant, node: Jurisdiction, questions: Sequence[Where]
) -> list[Answer]:
    """Each question asked while `node`'s connector is down; the connector started again
    after (its state directory, ledger and stored answers kept)."""
    service = ctx.simulation.federation.service(f"connector {node.value}")
    service.kill()
    try:
        return [applicant.ask(q) for q in questions]
    finally:
        service.start()
        asyncio.run(service.wait_ready())


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "count", allowance=ctx.allowance)
    applicants: list[Applicant] = []
    # One kill and restart per small set: fewer sets than the other classes.
    sets = small_sets(
        ctx.simulation.truth,
        ctx.minimums,
        per_jurisdiction=max(1, ctx.plan.count_targets // 2),
        rng=ctx.rng,
    )
    cohorts = Cohorts()
    dropped = 0
    for n, small in enumerate(sets):
        applicant = applicant_for(ctx, "dropouts", n)
        applicants.append(applicant)
        node = small.small_in[n % len(small.small_in)]
        label, truth = small.where.label(), small.truth[node]
        try:
            question, pad = padded(small, cohorts)
            during = while_down(ctx, applicant, node, [question, pad])
            after = [applicant.ask(question), applicant.ask(pad)]
        except BudgetExhausted:
            result.exhausted = True
            result.targets.append(CountTarget(node, label, truth, None, None))
            continue
        dropped += all(a.nodes[node].status != "OK" for a in during)
        reading = minus(
            difference([after[0].pooled], [during[0].pooled]),
            difference([after[1].pooled], [during[1].pooled]),
        )
        result.targets.append(CountTarget.of(node, label, truth, reading))
    result.questions = sum(a.questions for a in applicants)
    result.approvals = max(1, len(applicants))  # an applicant, with its approval, per set
    result.privacy = spend_of(applicants)
    result.notes.append(f"the node dropped out of both questions for {dropped} of {len(sets)} sets")
    return result
