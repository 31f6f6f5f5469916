"""Class 4: zero versus small. Which cells of a table are listed, absent, withheld as low, or
released, and what that says about each small cell: nobody, or somebody?

One question per rare diagnosis: its table by jurisdiction, sex and 10-year band. Every
cell of a node that answered holding nobody or one person is a trial: "does anybody have
it?". (A cell of several persons against an empty one is a difference of several persons,
which a limit on what one person's presence may change does not bound as tightly.) The
attacker reads a cell not listed as nobody; a cell listed but withheld for being small
(SUPPRESSED) as somebody; a LOW cell (a noisy count below the minimum, zeros included) as the
likelier of the two, nobody; a released value by its size.
"""

from __future__ import annotations

from bench.attacks.client import BudgetExhausted, Released
from bench.attacks.common import spend
from bench.attacks.context import Context
from bench.attacks.estimate import CERTAIN, Reading, decide, score
from bench.attacks.verdict import ClassResult, Trial
from bench.attacks.where import SEXES, Event, Where
from schema.codes import Dimension

NUMBER = 4
TITLE = "Zero versus small: cells present, absent, low or released"
METHOD = "classify each cell of X by sex × 10-year band holding 0 or 1 person"

BY = (Dimension.JURISDICTION, Dimension.SEX, Dimension.AGE_BAND_10)


def cell_score(released: Released | None) -> float:
    """Evidence that a cell holds somebody rather than nobody."""
    if released is None:
        return -CERTAIN  # not listed: a group of nobody
    if released.value is not None:
        return score(Reading(float(released.value), released.variance))
    if released.status == "SUPPRESSED":
        return CERTAIN  # listed, so somebody; withheld, so few
    return -1.0  # LOW: a noisy count below the minimum, likelier from nobody than from one


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "membership", allowance=ctx.allowance)
    applicant = ctx.applicant("zeros")
    try:
        for code in ctx.plan.zero_codes:
            answer = applicant.ask(Where(conditions=(Event(code),)), tables=[BY])
            cells = answer.tables[BY]
            for j in ctx.jurisdictions:
                if answer.node(j) is None:
                    continue
                truth = ctx.simulation.truth[j]
                for sex in SEXES:
                    for low in range(0, 101, 10):
                        where = Where(
                            sex=sex, age_min=low, age_max=low + 9, conditions=(Event(code),)
                        )
                        n = truth.count(where)
                        if n > 1:
                            continue
                        guess = decide([cell_score(cells.get((j.value, sex, f"{low}-{low + 9}")))])
                        result.trials.append(Trial(j, where.label(), n > 0, guess))
    except BudgetExhausted:
        result.exhausted = True
    result.questions = applicant.questions
    result.privacy = spend(applicant)
    return result
