"""Class 18: regressions built to single a person out. Did a known person die within ten years
of their first hypertension diagnosis?

The attacker knows a person's sex, year of birth and the month of one diagnosis recorded
before their first hypertension (I10), which describe nobody else, and fits a logistic model
of death within ten years of that first I10 two ways, through the public `regression` query:

- a one-hot: everyone's first I10 as the index, with age, sex and a covariate that is 1 for
  the person alone (their diagnosis in its month, before the index): its coefficient is
  +∞-like when they died and −∞-like when they did not;
- a tiny cohort: the person's own description as the criteria, a cohort of one, whose fitted
  intercept is their outcome (a saturated model).

Each node must refuse both (DataSHIELD's checks: REGRESSION_SPARSE_LEVEL,
REGRESSION_TOO_FEW_PERSONS, REGRESSION_SATURATED) before releasing anything; a refused fit
tells the attacker nothing, and they guess "did not die". Scored as membership (died or not),
half the persons of each node died.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Final

import numpy as np

from bench.attacks.client import Applicant, BudgetExhausted
from bench.attacks.common import spend
from bench.attacks.context import Context
from bench.attacks.targets import Person, singled_out
from bench.attacks.truth import NodeTruth
from bench.attacks.verdict import ClassResult, Trial
from bench.attacks.where import Where
from schema.codes import Jurisdiction

NUMBER = 18
TITLE = "Regressions built to single out a person: a one-hot, a cohort of one"
METHOD = (
    "logistic fit of death within ten years of a first I10, with a one-hot covariate of the "
    "person, or over their own description alone; outcome read from the coefficient"
)

INDEX: Final = '{ events: [{ domain: CONDITION, codes: [{ vocabulary: ICD10, code: "I10" }] }] }'
OUTCOME: Final = (
    "{ kind: EVENT, event: { domain: DEATH }, window: { startDays: 1, endDays: 3650 } }"
)
EPOCH: Final = dt.date(1970, 1, 1)


def _first_days(truth: NodeTruth, prefix: str) -> dict[int, int]:
    """Each person's first day of a record coded under `prefix`, by person index."""
    wanted = np.array([c.startswith(prefix) for c in truth.codes])[truth.event_code]
    first: dict[int, int] = {}
    for person, day in zip(truth.event_person[wanted], truth.event_day[wanted], strict=True):
        p, d = int(person), int(day)
        if p not in first or d < first[p]:
            first[p] = d
    return first


def targets(ctx: Context, j: Jurisdiction) -> Iterator[tuple[Person, bool]]:
    """Persons singled out by a diagnosis month before their first I10, as many who died
    within ten years of it as who did not."""
    truth = ctx.simulation.truth[j]
    first_i10 = _first_days(truth, "I10")
    died = dict(zip(truth.death_person.tolist(), truth.death_day.tolist(), strict=True))
    wanted = {True: ctx.plan.trials // 2, False: ctx.plan.trials // 2}
    for person in singled_out(truth, j, avoid=("I10",)):
        index = first_i10.get(person.index)
        end = person.event.end
        if index is None or end is None or (end - EPOCH).days >= index:
            continue
        death = died.get(person.index)
        member = death is not None and 1 <= death - index <= 3650
        if wanted[member] > 0:
            wanted[member] -= 1
            yield person, member
        if not any(wanted.values()):
            return


def one_hot(person: Person) -> str:
    event = person.event
    return (
        "{ family: BINOMIAL, outcome: " + OUTCOME + ", covariates: ["
        '{ name: "age", kind: AGE, lo: 18, hi: 110 }, { name: "female", kind: FEMALE }, '
        '{ name: "target", kind: EVENT, event: { domain: CONDITION, codes: [{ vocabulary: '
        f'ICD10, code: "{event.code}" }}], window: {{ start: "{event.start}", '
        f'end: "{event.end}" }} }} }}] }}'
    )


ALONE_MODEL: Final = (
    "{ family: BINOMIAL, outcome: " + OUTCOME + ', covariates: [{ name: "female", kind: FEMALE }] }'
)


def guess(fitted: dict[str, object] | None, name: str) -> bool:
    """Died, if a fit was released and the coefficient says so; else nothing learned."""
    if fitted is None:
        return False
    coefficients = fitted["coefficients"]
    assert isinstance(coefficients, list)
    for coefficient in coefficients:
        if coefficient["name"] == name:
            return float(coefficient["estimate"]) > 0
    return False


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "membership", allowance=ctx.allowance)
    refusals: dict[str, int] = {}
    released = 0
    for j in ctx.jurisdictions:
        applicant: Applicant = ctx.applicant(f"regressions-{j.value.lower()}")
        try:
            for person, member in targets(ctx, j):
                label = person.alone.label()
                for design, where, model, name in (
                    ("one-hot", Where(), one_hot(person), "target"),
                    ("alone", person.alone, ALONE_MODEL, "(Intercept)"),
                ):
                    fitted, refusal = applicant.regression(INDEX, where, model, j)
                    rules = _rules(refusal) if fitted is None else _reasons(fitted)
                    for rule in rules:
                        refusals[rule] = refusals.get(rule, 0) + 1
                    if fitted is not None and fitted["coefficients"]:
                        released += 1
                    result.trials.append(
                        Trial(j, f"{label} ({design})", member, guess(fitted, name))
                    )
        except BudgetExhausted:
            result.exhausted = True
        result.questions += applicant.questions
        for figure, value in spend(applicant).items():
            result.privacy[figure] = max(result.privacy.get(figure, value), value)
    result.notes.append(
        f"{released} fits released of {len(result.trials)}; refusals: "
        + (", ".join(f"{rule} {n}" for rule, n in sorted(refusals.items())) or "none")
    )
    return result


def _reasons(fitted: dict[str, object]) -> list[str]:
    reasons = fitted.get("reasons") or []
    assert isinstance(reasons, list)
    return sorted({str(r["rule"]) for r in reasons})


def _rules(refusal: str) -> list[str]:
    return sorted({word.strip(";:,") for word in refusal.split() if word.startswith("REGRESSION_")})
