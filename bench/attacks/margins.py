"""Class 3: a table and its margins asked in separate questions, solved by integer
programming and least squares (`bench.attacks.solve`).

The unknowns are the finest cells of one diagnosis: jurisdiction × sex × 5-year band. Each
question asks one table (by sex and 5-year band; by sex; by band; by sex and 10- or 20-year
band; by 10- or 20-year band) or a sub-population's table (one sex, the young, the old), so
that whatever each question protects within itself, the others were protected without it.
Every released count and status, and every cell not listed, is a constraint; each small
finest cell (fewer persons than its jurisdiction's minimum, zeros included) is a target.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bench.attacks.client import Answer, Breakdown, BudgetExhausted, Released
from bench.attacks.common import spend
from bench.attacks.context import Context
from bench.attacks.solve import LinearAttack, Row
from bench.attacks.verdict import ClassResult, CountTarget
from bench.attacks.where import SEXES, Event, Where
from schema.codes import Dimension, Jurisdiction
from schema.dimensions import age_band_width

NUMBER = 3
TITLE = "A table and its margins in separate questions (integer programming, least squares)"
METHOD = "finest cells sex × 5-year band; every release a constraint; MILP bounds, GLS"

J, SEX, A5, A10, A20 = (
    Dimension.JURISDICTION,
    Dimension.SEX,
    Dimension.AGE_BAND_5,
    Dimension.AGE_BAND_10,
    Dimension.AGE_BAND_20,
)
SEX_VALUES = ("FEMALE", "MALE", "UNKNOWN")
BANDS = tuple(range(0, 101, 5))  # the first age of each 5-year band; 100-104 is the last

# (criteria besides the diagnosis, table) of each question.
QUESTIONS: tuple[tuple[Where, Breakdown], ...] = (
    (Where(), (J, SEX, A5)),
    (Where(), (J, SEX)),
    (Where(), (J, A5)),
    (Where(), (J, SEX, A10)),
    (Where(), (J, A10)),
    (Where(), (J, SEX, A20)),
    (Where(), (J, A20)),
    (Where(sex="FEMALE"), (J, A5)),
    (Where(sex="MALE"), (J, A5)),
    (Where(age_max=49), (J, SEX, A5)),
    (Where(age_min=50), (J, SEX, A5)),
)


# The unknowns of one jurisdiction: one per (sex, 5-year band).
SIZE = len(SEX_VALUES) * len(BANDS)


def _index(sex: str, band: int) -> int:
    return SEX_VALUES.index(sex) * len(BANDS) + BANDS.index(band)


def _ages(value: str) -> tuple[int, int] | None:
    """The ages of a band's label ("40-44"); None for anything else."""
    low, _, high = value.partition("-")
    if not low.isdigit() or not high.isdigit():
        return None
    return int(low), int(high)


def row(criteria: Where, key: Mapping[Dimension, str]) -> Row | None:
    """The finest cells one released number adds up; None if it names a value outside them."""
    r = np.zeros(SIZE)
    ages = None
    for d in (A5, A10, A20):
        if d in key:
            ages = _ages(key[d])
            if ages is None:
                return None
    for sex in SEX_VALUES:
        if criteria.sex is not None and sex != criteria.sex:
            continue
        if SEX in key and key[SEX] != sex:
            continue
        for band in BANDS:
            if criteria.age_min is not None and band < criteria.age_min:
                continue
            if criteria.age_max is not None and band + 4 > criteria.age_max:
                continue
            if ages is not None and not ages[0] <= band <= ages[1]:
                continue
            r[_index(sex, band)] = 1.0
    return r


def constrain(
    attack: LinearAttack, r: Row, released: Released, minimum: int, *, listed: bool
) -> None:
    """What one released number says about the cells it adds up."""
    if released.value is not None:
        if released.sd:
            attack.noisy(r, released.value, released.sd)
        elif released.bound:
            attack.between(
                r, max(0.0, released.value - released.bound), released.value + released.bound
            )
        else:
            attack.between(r, released.value, released.value)
        return
    slack = released.bound or 0.0
    if released.status == "SUPPRESSED" and "PRIMARY_SUPPRESSION" in released.rules:
        attack.between(r, 1.0 if listed else 0.0, minimum - 1 + slack)
    elif released.status == "SUPPRESSED" and "SECONDARY_SUPPRESSION" in released.rules:
        attack.between(r, float(minimum), np.inf)
    # LOW, or withheld for any other reason: nothing certain.


def domain(by: Breakdown) -> list[dict[Dimension, str]]:
    """Every cell a node could list in a table by `by` (without the jurisdiction)."""
    cells: list[dict[Dimension, str]] = [{}]
    for d in by:
        if d is J:
            continue
        if d is SEX:
            values = list(SEX_VALUES)
        else:
            width = age_band_width(d)
            assert width is not None
            values = [f"{low}-{low + width - 1}" for low in range(0, 101, width)]
        cells = [{**c, d: v} for c in cells for v in values]
    return cells


def learn(
    attack: LinearAttack,
    j: Jurisdiction,
    criteria: Where,
    by: Breakdown,
    answer: Answer,
    minimum: int,
) -> None:
    node = answer.node(j)
    if node is None:
        return  # the node did not answer: none of its cells says anything
    total = row(criteria, {})
    assert total is not None
    constrain(attack, total, node, minimum, listed=False)
    cells = answer.tables[by]
    for key in domain(by):
        full = (j.value, *(key[d] for d in by if d is not J))
        r = row(criteria, key)
        if r is None:
            continue
        released = cells.get(full)
        if released is None:
            attack.between(r, 0.0, 0.0)  # not listed: nobody
        else:
            constrain(attack, r, released, minimum, listed=True)


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "count", allowance=ctx.allowance)
    applicant = ctx.applicant("margins")
    asked: list[tuple[str, Where, Breakdown, Answer]] = []
    try:
        for code in ctx.plan.margin_codes:
            for criteria, by in QUESTIONS:
                where = Where(
                    sex=criteria.sex,
                    age_min=criteria.age_min,
                    age_max=criteria.age_max,
                    conditions=(Event(code),),
                )
                asked.append((code, criteria, by, applicant.ask(where, tables=[by])))
    except BudgetExhausted:
        result.exhausted = True
    for code in ctx.plan.margin_codes:
        for j in ctx.jurisdictions:
            minimum = ctx.minimums[j]
            attack = LinearAttack(SIZE)
            for c, criteria, by, answer in asked:
                if c == code:
                    learn(attack, j, criteria, by, answer, minimum)
            truth = ctx.simulation.truth[j]
            targets: list[tuple[str, int, Row]] = []
            for sex in SEXES:
                for band in BANDS:
                    where = Where(
                        sex=sex, age_min=band, age_max=band + 4, conditions=(Event(code),)
                    )
                    n = truth.count(where)
                    if n < minimum:
                        target = np.zeros(SIZE)
                        target[_index(sex, band)] = 1.0
                        targets.append((where.label(), n, target))
            readings = attack.read([t for _, _, t in targets])
            for (label, n, _), reading in zip(targets, readings, strict=True):
                result.targets.append(CountTarget.of(j, label, n, reading))
    result.questions = applicant.questions
    result.privacy = spend(applicant)
    return result
