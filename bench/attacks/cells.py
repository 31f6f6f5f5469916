"""Class 2: a breakdown cell against a total, or a cell of another question.

The small set is the oldest tail of one sex with a diagnosis: S = X, sex s, age ≥ c. Three
ways to it, each two questions that differ by a large group:

- the s cell of "X by sex" minus "X, sex s, age ≤ c − 1";
- "X, sex s" minus the s cell of "X, age ≤ c − 1, by sex";
- S asked of every jurisdiction at once: the pooled count minus the other nodes' counts.

Cells and totals come per jurisdiction (breakdowns by JURISDICTION first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.attacks.client import Answer, Applicant, Breakdown, BudgetExhausted, Released
from bench.attacks.common import spend, unanswered
from bench.attacks.context import Context
from bench.attacks.estimate import combine, difference
from bench.attacks.targets import SMALL_SET_CODES, SmallSet
from bench.attacks.truth import NodeTruth
from bench.attacks.verdict import ClassResult, CountTarget
from bench.attacks.where import SEXES, Event, Where
from schema.codes import Dimension, Jurisdiction

NUMBER = 2
TITLE = "A breakdown cell against a total or a cell of another question"
METHOD = (
    "cell(X by sex)[s] − |X, s, age ≤ c−1|; |X, s| − cell(X, age ≤ c−1 by sex)[s]; pooled − others"
)

CODES = ("E11", "I10", "I50", "I21", "E66", "J18", "G40", "F84", *SMALL_SET_CODES)
BY_SEX: Breakdown = (Dimension.JURISDICTION, Dimension.SEX)


def tails(
    truth: Mapping[Jurisdiction, NodeTruth],
    minimums: Mapping[Jurisdiction, int],
    per_jurisdiction: int,
) -> list[SmallSet]:
    """Per diagnosis and sex, the age c from which the tail is small in the most
    jurisdictions; until each jurisdiction has `per_jurisdiction` tails."""
    needed = dict.fromkeys(truth, per_jurisdiction)
    chosen = []
    for code in CODES:
        for sex in SEXES:
            best: tuple[int, Where, dict[Jurisdiction, int]] | None = None
            for c in range(60, 101):
                where = Where(sex=sex, age_min=c, conditions=(Event(code),))
                counts = {j: t.count(where) for j, t in truth.items()}
                useful = sum(1 for j, n in counts.items() if 1 <= n < minimums[j] and needed[j] > 0)
                if useful and (best is None or useful > best[0]):
                    best = (useful, where, counts)
            if best is None:
                continue
            _, where, counts = best
            small = tuple(j for j, n in counts.items() if 1 <= n < minimums[j])
            for j in small:
                needed[j] -= 1
            assert where.age_min is not None
            chosen.append(SmallSet(where, (where.age_min, 130), counts, small))
            if all(n <= 0 for n in needed.values()):
                return chosen
    return chosen


@dataclass
class Asker:
    """Asks each distinct question once (the attacker remembers its answers)."""

    applicant: Applicant
    answers: dict[tuple[Where, tuple[Breakdown, ...]], Answer]

    def __call__(self, where: Where, tables: Sequence[Breakdown] = ()) -> Answer:
        key = (where, tuple(tables))
        if key not in self.answers:
            self.answers[key] = self.applicant.ask(where, tables=tables)
        return self.answers[key]


def cell(answer: Answer, jurisdiction: Jurisdiction, sex: str) -> Released | None:
    if not answer.node(jurisdiction):
        return None  # the node did not answer: its cells say nothing
    return answer.tables[BY_SEX].get((jurisdiction.value, sex), Released(0, "ABSENT"))


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "count", allowance=ctx.allowance)
    applicant = ctx.applicant("cells")
    ask = Asker(applicant, {})
    sets = tails(ctx.simulation.truth, ctx.minimums, ctx.plan.count_targets)
    done = 0
    try:
        for small in sets:
            where = small.where
            assert where.sex is not None
            assert where.age_min is not None
            sex, c, code = where.sex, where.age_min, where.conditions
            everyone = ask(Where(conditions=code), [BY_SEX])
            younger_of_sex = ask(Where(sex=sex, age_max=c - 1, conditions=code))
            of_sex = ask(Where(sex=sex, conditions=code))
            younger = ask(Where(age_max=c - 1, conditions=code), [BY_SEX])
            tail = ask(where)
            for j in small.small_in:
                others = [tail.node(k) for k in ctx.jurisdictions if k is not j]
                reading = combine(
                    [
                        difference([cell(everyone, j, sex)], [younger_of_sex.node(j)]),
                        difference([of_sex.node(j)], [cell(younger, j, sex)]),
                        difference([tail.pooled], others),
                    ]
                )
                result.targets.append(CountTarget.of(j, where.label(), small.truth[j], reading))
            done += 1
    except BudgetExhausted:
        result.exhausted = True
    result.targets.extend(unanswered(sets[done:]))
    result.questions = applicant.questions
    result.privacy = spend(applicant)
    return result
