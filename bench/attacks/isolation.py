"""Class 9: isolating one person by known attributes (sex, year of birth, the month of one
recorded event), then asking about a sensitive diagnosis (epilepsy G40, soft-tissue sarcoma
C49, autism F84).

Two questions per person. The isolated cell itself, "that person and X", with a table by
sex: its count and which of its cells are listed. And the cell padded into a large birth
cohort that leaves the person out, against the cohort alone: the two populations differ by
the person exactly when they have X.
"""

from __future__ import annotations

from bench.attacks.client import BudgetExhausted
from bench.attacks.common import spend
from bench.attacks.context import Context
from bench.attacks.equality import pair_score
from bench.attacks.estimate import Reading, decide, score
from bench.attacks.targets import Cohorts, suspects
from bench.attacks.verdict import ClassResult, Trial
from bench.attacks.where import union
from bench.attacks.zeros import cell_score
from schema.codes import Dimension

NUMBER = 9
TITLE = "Isolating one person by known attributes, then a sensitive diagnosis"
METHOD = "count and table of (sex, birth year, event month) ∧ X; (cohort ∪ that) vs cohort"

BY_SEX = (Dimension.SEX,)


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "membership", allowance=ctx.allowance)
    applicant = ctx.applicant("isolation")
    trials = suspects(ctx.simulation.truth, per_jurisdiction=ctx.plan.trials, rng=ctx.rng)
    cohorts = Cohorts()
    try:
        for suspect in trials:
            person = suspect.person
            j = person.jurisdiction
            alone = applicant.ask(suspect.cell, jurisdictions=[j], tables=[BY_SEX])
            evidence = []
            node = alone.node(j)
            if node is not None:
                if node.value is not None:
                    evidence.append(score(Reading(float(node.value), node.variance)))
                evidence.append(cell_score(alone.tables[BY_SEX].get((person.sex,))))
            cohort, _ = cohorts.cohort((person.age, person.age))
            padded = applicant.ask(union(cohort, suspect.cell), jurisdictions=[j])
            padding = applicant.ask(cohort, jurisdictions=[j])
            evidence.append(pair_score(padded, padding, j))
            result.trials.append(Trial(j, suspect.label, suspect.member, decide(evidence)))
    except BudgetExhausted:
        result.exhausted = True
    result.questions = applicant.questions
    result.privacy = spend(applicant)
    return result
