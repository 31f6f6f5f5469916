"""Class 8: equality tests. Two questions that differ only by a condition on one person's
known attributes.

The attacker knows a person's sex, year of birth and the month of one recorded event, which
together describe nobody else, and wants to know whether they have a diagnosis X. Question 1:
"that person if they have X, or anyone of ages lo..hi born in another year" (a union);
question 2: the same "and not born in that year", written with two ranges. The populations
are equal unless the person has X. Equal answers say "no"; a refusal that only a small
difference causes says "yes"; otherwise the difference speaks.
"""

from __future__ import annotations

from bench.attacks.client import Answer, Applicant, BudgetExhausted
from bench.attacks.common import spend
from bench.attacks.context import Context
from bench.attacks.estimate import CERTAIN, decide, equality_score
from bench.attacks.targets import OLDEST, Suspect, suspects
from bench.attacks.verdict import ClassResult, Trial
from bench.attacks.where import Where, union
from schema.codes import Jurisdiction

NUMBER = 8
TITLE = "Equality tests: P versus P and not born in the target's year"
METHOD = "P = (target ∧ X) ∪ ages lo..hi but year y; P ∧ not born in y; equal ⇒ absent"


def without_year(age: int, low: int, high: int) -> list[Where]:
    groups = []
    if low <= age - 1:
        groups.append(Where(age_min=low, age_max=age - 1))
    if age + 1 <= high:
        groups.append(Where(age_min=age + 1, age_max=high))
    return groups


def pair_score(with_target: Answer, without: Answer, j: Jurisdiction) -> float:
    """The evidence of one pair whose populations differ by the target or by nobody."""
    if without.denied(j) and with_target.node(j) is not None:
        return CERTAIN  # refused for differing from the first by a few persons
    return equality_score(with_target.node(j), without.node(j))


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "membership", allowance=ctx.allowance)
    applicant = ctx.applicant("equality")
    trials = suspects(ctx.simulation.truth, per_jurisdiction=ctx.plan.trials, rng=ctx.rng)
    try:
        for k, suspect in enumerate(trials):
            result.trials.append(ask(suspect, k, applicant))
    except BudgetExhausted:
        result.exhausted = True
    result.questions = applicant.questions
    result.privacy = spend(applicant)
    return result


def ask(suspect: Suspect, k: int, applicant: Applicant) -> Trial:
    person = suspect.person
    j = person.jurisdiction
    # Ages around the person's, a different span for every trial.
    low = max(0, person.age - 10 - k % 11)
    high = min(OLDEST, person.age + 10 + k // 11 % 11)
    rest = without_year(person.age, low, high)
    first = applicant.ask(union(suspect.cell, *rest), jurisdictions=[j])
    second = applicant.ask(union(*rest), jurisdictions=[j])
    guess = decide([pair_score(first, second, j)])
    return Trial(j, suspect.label, suspect.member, guess)
