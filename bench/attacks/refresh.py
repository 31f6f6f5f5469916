"""Class 7: the data change between questions: an opt-out register update, then (in the
full run) a rebuild of every CDM.

The attacker knows that some persons opted out (EHDS Art. 71) between two releases, and
knows them by sex, year of birth and the month of one recorded event. Per person, one
question before the update, the same question after it, and again after a rebuild of the
CDM (new database, new release date, new record keys): "that person if they have X, or a
large cohort of the other sex". The population loses the person exactly when they have X: the
answers before and after differ by one (or a rule refuses the second for a difference of
one), or are equal.

This attack changes the data (registers, rebuilt databases): it runs after the others.
"""

from __future__ import annotations

from bench.attacks.client import Answer, BudgetExhausted
from bench.attacks.common import spend
from bench.attacks.context import Context
from bench.attacks.equality import pair_score
from bench.attacks.estimate import decide
from bench.attacks.targets import Cohorts, suspects
from bench.attacks.verdict import ClassResult, Trial
from bench.attacks.where import Where, union
from schema.codes import Jurisdiction

NUMBER = 7
TITLE = "Data refresh between questions: opt-out register update, CDM rebuild"
METHOD = "(target ∧ X) ∪ cohort of the other sex, before and after the target opts out; rebuilt"


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "membership", allowance=ctx.allowance)
    applicant = ctx.applicant("refresh")
    # Women only, padded with cohorts of men: the padding never holds a person who opts out.
    trials = suspects(
        ctx.simulation.truth, per_jurisdiction=ctx.plan.trials, rng=ctx.rng, sex="FEMALE"
    )
    cohorts = Cohorts()
    questions = [
        union(suspect.cell, Where(sex="MALE", age_min=low, age_max=high))
        for suspect in trials
        for low, high in [cohorts.window()]
    ]
    answers: list[list[Answer]] = [[] for _ in trials]

    def ask_all() -> None:
        for suspect, question, seen in zip(trials, questions, answers, strict=True):
            seen.append(applicant.ask(question, jurisdictions=[suspect.person.jurisdiction]))

    added: dict[Jurisdiction, list[int]] = {}
    try:
        ask_all()
        for suspect in trials:
            person = suspect.person
            truth = ctx.simulation.truth[person.jurisdiction]
            added.setdefault(person.jurisdiction, []).append(int(truth.person_id[person.index]))
        ctx.simulation.update_registers(added)
        ask_all()
        if ctx.plan.rebuild:
            ctx.simulation.rebuild()
            ask_all()
    except BudgetExhausted:
        result.exhausted = True
    for suspect, seen in zip(trials, answers, strict=True):
        j = suspect.person.jurisdiction
        evidence = [pair_score(seen[0], later, j) for later in seen[1:]]
        result.trials.append(Trial(j, suspect.label, suspect.member, decide(evidence)))
    result.questions = applicant.questions
    result.privacy = spend(applicant)
    rebuilt = "; then every CDM rebuilt" if ctx.plan.rebuild else " (no rebuild in this run)"
    result.notes.append(
        f"{sum(len(ids) for ids in added.values())} persons opted out{rebuilt}"
        if added
        else "allowance spent before the refreshes"
    )
    return result
