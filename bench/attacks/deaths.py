"""Class 15: narrow death windows. Did a known decedent have diagnosis X?

The attacker knows a person's sex, year of birth and month of death, which describe nobody else
counted. D is "that sex, that year of birth, died that month" (the person alone), L a large
birth cohort of other ages. Question 1: L ∪ D; question 2: L ∪ (D and no X) (`exclude: true`).
They differ by the person exactly when they had X. Each pair is asked in several wordings;
equal answers say "no", a refusal that only a small difference causes says "yes", otherwise
the differences speak (as class 8).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from bench.attacks import pairs
from bench.attacks.client import BudgetExhausted
from bench.attacks.common import spend
from bench.attacks.context import Context
from bench.attacks.equality import pair_score
from bench.attacks.estimate import decide
from bench.attacks.targets import SENSITIVE_CODES, SMALL_SET_CODES, Cohorts, death_trials
from bench.attacks.verdict import ClassResult, Trial
from bench.attacks.where import Event, union

NUMBER = 15
TITLE = "Narrow death windows: a known decedent's diagnosis"
METHOD = "L ∪ D versus L ∪ (D ∧ no X); D = sex, year of birth, died in month m (one person)"

# Diagnoses asked about a decedent: the sensitive ones, then common causes of death.
DEATH_CODES: Final = (*SENSITIVE_CODES, "I21", "E11", "I10", "J44", "C34", "I50", *SMALL_SET_CODES)


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "membership", allowance=ctx.allowance)
    applicant = ctx.applicant("deaths")
    codes = tuple(dict.fromkeys(DEATH_CODES))
    trials = death_trials(
        ctx.simulation.truth, per_jurisdiction=ctx.plan.trials, rng=ctx.rng, codes=codes
    )
    cohorts = Cohorts()
    wordings = 1 + ctx.plan.rewordings
    try:
        for trial in trials:
            d = trial.decedent
            j = d.jurisdiction
            padding, _ = cohorts.cohort((d.age, d.age))
            alone = d.alone
            without = replace(alone, conditions=(Event(trial.code, exclude=True),))
            pair = pairs.Pair(union(padding, alone), union(padding, without))
            asked = pairs.ask(applicant, pair, wordings, [j])
            guess = decide(pair_score(plus, minus, j) for plus, minus in asked.distinct(j))
            result.trials.append(Trial(j, trial.label, trial.member, guess))
    except BudgetExhausted:
        result.exhausted = True
    result.questions = applicant.questions
    result.privacy = spend(applicant)
    result.notes.append(f"each pair in {wordings} wordings, distinct answers combined")
    return result
