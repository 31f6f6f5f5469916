"""Class 20: a survival step isolating one known person. Did a known decedent have X?

The attacker knows a person's sex, year of birth and month of death, which describe nobody else
counted (D, the person alone), and asks two survival curves of death after a first diagnosis X
(the index), yearly for ten years: of a large birth cohort L of other ages with D, and of L
alone. The target is in the first cohort exactly when they had X, and then their death is an
event of one interval that the second curve lacks: the events of every interval, summed, differ
by one person or by none. Each pair is asked in several wordings (new questions, new noise) and
the readings combined.

Each interval's events are one cell of a table by FOLLOW_UP, noisy (σ 5) and LOW below the
minimum: a reading sums ten differences of cells, sd √20·σ = 22 persons, or sees LOW on both
sides. Each pair charges the target once per table (the total, FOLLOW_UP) like any two
questions: the ledger bounds the readings as for class 15.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from bench.attacks.client import Applicant, BudgetExhausted, QuestionRefused, Released
from bench.attacks.common import spend
from bench.attacks.context import Context
from bench.attacks.deaths import DEATH_CODES
from bench.attacks.estimate import Reading, decide, score
from bench.attacks.pairs import Pair
from bench.attacks.targets import Cohorts, DeathTrial, death_trials
from bench.attacks.verdict import ClassResult, Trial
from bench.attacks.where import Index, Where, union
from schema.codes import Jurisdiction

NUMBER = 20
TITLE = "A survival step isolating one person: a known decedent's diagnosis"
METHOD = "deaths per year after a first X: L ∪ D against L; D = sex, year of birth, died in month m"
FOLLOW_UP: Final = "{ outcome: { domain: DEATH }, intervalDays: 365, maxDays: 3650 }"


def events(applicant: Applicant, where: Where, j: Jurisdiction) -> list[Released] | None:
    return applicant.survival(where, FOLLOW_UP, j)


def reading(plus: list[Released] | None, minus: list[Released] | None) -> Reading | None:
    """The difference of the two curves' events, summed over the intervals: a cell withheld
    (LOW) on both sides counts as no difference, with the noise's variance; withheld on one
    side only, as the minimum's half against the released value (what the gateway assumes)."""
    if plus is None or minus is None:
        return None
    total, variance = 0.0, 0.0
    for a, b in zip(plus, minus, strict=True):
        variance += (a.sd or 0.0) ** 2 + (b.sd or 0.0) ** 2
        if a.value is None and b.value is None:
            continue
        total += (a.value if a.value is not None else 0) - (b.value if b.value is not None else 0)
    return Reading(total, variance)


def pair(trial: DeathTrial, cohorts: Cohorts) -> Pair:
    """The trial's two curves' cohorts: a fresh birth cohort L with the decedent D, and L,
    each indexed on a first record of the trial's diagnosis."""
    d = trial.decedent
    padding, _ = cohorts.cohort((d.age, d.age))
    index = Index(trial.code)
    return Pair(replace(union(padding, d.alone), index=index), replace(padding, index=index))


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "membership", allowance=ctx.allowance)
    applicant = ctx.applicant("survival")
    trials = death_trials(
        ctx.simulation.truth,
        per_jurisdiction=ctx.plan.trials,
        rng=ctx.rng,
        codes=tuple(dict.fromkeys(DEATH_CODES)),
    )
    cohorts = Cohorts()
    wordings = 1 + ctx.plan.rewordings
    try:
        for trial in trials:
            j = trial.decedent.jurisdiction
            both = pair(trial, cohorts)
            scores = []
            seen: set[tuple[tuple[int | None, ...], ...]] = set()
            for i in range(wordings):
                worded = both.reworded(i)
                plus = events(applicant, worded.plus, j)
                minus = events(applicant, worded.minus, j)
                values = tuple(
                    tuple(r.value for r in side) if side is not None else ()
                    for side in (plus, minus)
                )
                if values in seen:
                    continue  # the same numbers: no new reading
                seen.add(values)
                scores.append(score(reading(plus, minus)))
            result.trials.append(Trial(j, trial.label, trial.member, decide(scores)))
    except (BudgetExhausted, QuestionRefused):
        result.exhausted = True
    result.questions = applicant.questions
    result.privacy = spend(applicant)
    result.notes.append(
        f"ten yearly intervals per curve; each pair in {wordings} wordings, distinct answers "
        "combined"
    )
    return result
