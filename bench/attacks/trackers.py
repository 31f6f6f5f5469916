"""Class 1: trackers of three questions.

A small set S (a diagnosis, a sex, a 10-year band) is padded with a large birth cohort A and
recovered by subtraction: |A∪S| − |A∪B| + |B| = |S| when A, B and S are disjoint. Every two
of the three questions differ by a large group, so no rule comparing two populations sees a
small difference. A is a range of ages; B is another range, everyone outside A and S's band
(a complement written with ranges), or the other sex within S's band; unions are `anyOf`.
Each question goes to every jurisdiction at once: each node's part is a reading of S there.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.attacks.client import Answer, Applicant, BudgetExhausted
from bench.attacks.common import spend, unanswered
from bench.attacks.context import Context
from bench.attacks.estimate import Reading, difference
from bench.attacks.targets import Cohorts, SmallSet, outside, small_sets
from bench.attacks.verdict import ClassResult, CountTarget
from bench.attacks.where import Where, other_sex, union
from schema.codes import Jurisdiction

NUMBER = 1
TITLE = "Trackers of three questions (unions, ranges, complements)"
METHOD = "|A∪S| − |A∪B| + |B| = |S|; A, B large cohorts disjoint from the small set S"


@dataclass(frozen=True)
class Tracker:
    """The three questions of one decomposition of S."""

    with_set: Where
    padded: Where
    padding: Where


def tracker(small: SmallSet, cohorts: Cohorts, form: int) -> Tracker:
    a, a_band = cohorts.cohort(small.band)
    if form % 3 == 0:
        b, _ = cohorts.cohort(small.band, a_band)
    elif form % 3 == 1:
        b = outside(small.band, a_band)
    else:
        assert small.where.sex is not None
        b = Where(sex=other_sex(small.where.sex), age_min=small.band[0], age_max=small.band[1])
    return Tracker(with_set=union(a, small.where), padded=union(a, b), padding=b)


@dataclass(frozen=True)
class Asked:
    with_set: Answer
    padded: Answer
    padding: Answer

    def reading(self, jurisdiction: Jurisdiction) -> Reading | None:
        return difference(
            [self.with_set.node(jurisdiction), self.padding.node(jurisdiction)],
            [self.padded.node(jurisdiction)],
        )

    def values(self, jurisdiction: Jurisdiction) -> tuple[int | None, ...]:
        return tuple(
            None if (r := a.node(jurisdiction)) is None else r.value
            for a in (self.with_set, self.padded, self.padding)
        )


def ask(applicant: Applicant, t: Tracker, *, approval: int = 0) -> Asked:
    return Asked(
        with_set=applicant.ask(t.with_set, approval=approval),
        padded=applicant.ask(t.padded, approval=approval),
        padding=applicant.ask(t.padding, approval=approval),
    )


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "count", allowance=ctx.allowance)
    applicant = ctx.applicant("trackers")
    sets = small_sets(
        ctx.simulation.truth, ctx.minimums, per_jurisdiction=ctx.plan.count_targets, rng=ctx.rng
    )
    cohorts = Cohorts()
    done = 0
    try:
        for k, small in enumerate(sets):
            asked = ask(applicant, tracker(small, cohorts, k))
            for j in small.small_in:
                result.targets.append(
                    CountTarget.of(j, small.where.label(), small.truth[j], asked.reading(j))
                )
            done += 1
    except BudgetExhausted:
        result.exhausted = True
    result.targets.extend(unanswered(sets[done:]))
    result.questions = applicant.questions
    result.privacy = spend(applicant)
    return result
