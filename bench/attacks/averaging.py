"""Class 5: averaging. One small set, many decompositions; the same questions reworded; the
same questions repeated.

Each tracker triple of class 1 with fresh padding is a new reading of S; their mean has a
standard error √k times smaller. Rewordings ask the very same populations in other words
(union order, nesting, a redundant `age: { min: 0 }`, a duplicated group, a range split in
two); repeats ask the identical text again. A reworded or repeated triple whose answers are
the ones already seen adds nothing and is not counted; one whose answers differ is a fresh
reading. Questions are spread so that the whole attack fits one approval's daily allowance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from bench.attacks import trackers
from bench.attacks.client import BudgetExhausted
from bench.attacks.common import spend
from bench.attacks.context import Context
from bench.attacks.estimate import Reading, combine
from bench.attacks.targets import Cohorts, small_sets
from bench.attacks.verdict import ClassResult, CountTarget
from bench.attacks.where import Where
from schema.codes import Jurisdiction

NUMBER = 5
TITLE = "Averaging: many decompositions of one small set, rewordings, repeats"
METHOD = "mean of k tracker triples with fresh padding, plus reworded and repeated triples"


def _reverse(w: Where) -> Where:
    return replace(w, any_of=tuple(reversed(w.any_of))) if w.any_of else w


def _nest(w: Where) -> Where:
    return Where(any_of=(w,))


def _open_age(w: Where) -> Where:
    return replace(_nest(w), spell_open_age=True)


def _duplicate(w: Where) -> Where:
    return replace(w, any_of=(*w.any_of, w.any_of[0])) if w.any_of else Where(any_of=(w, w))


def _split(w: Where) -> Where:
    """A group that is only a range of ages, written as two adjacent ranges."""

    def halves(g: Where) -> tuple[Where, ...]:
        if g.sex or g.conditions or g.any_of or g.age_min is None or g.age_max is None:
            return (g,)
        if g.age_max - g.age_min < 1:
            return (g,)
        middle = (g.age_min + g.age_max) // 2
        return (replace(g, age_max=middle), replace(g, age_min=middle + 1))

    groups = w.any_of or (w,)
    return Where(any_of=tuple(h for g in groups for h in halves(g)))


REWORDINGS: tuple[Callable[[Where], Where], ...] = (
    _reverse,
    _nest,
    _open_age,
    _duplicate,
    _split,
    lambda w: _reverse(_split(w)),
)


def reworded(t: trackers.Tracker, i: int) -> trackers.Tracker:
    f = REWORDINGS[i % len(REWORDINGS)]
    return trackers.Tracker(f(t.with_set), f(t.padded), f(t.padding))


KINDS = ("reworded", "repeated")


class Draws:
    """The distinct readings of one small set per node: a triple whose answers were all seen
    before is the same draw again."""

    def __init__(self, jurisdictions: Sequence[Jurisdiction]) -> None:
        self.seen: dict[Jurisdiction, set[tuple[int | None, ...]]] = {
            j: set() for j in jurisdictions
        }
        self.readings: dict[Jurisdiction, list[Reading | None]] = {j: [] for j in jurisdictions}
        self.fresh = {kind: [0, 0] for kind in KINDS}  # fresh, asked

    def keep(self, asked: trackers.Asked, kind: str | None = None) -> None:
        for j, seen in self.seen.items():
            values = asked.values(j)
            if kind is not None:
                self.fresh[kind][1] += 1
            if values in seen:
                continue
            if kind is not None:
                self.fresh[kind][0] += 1
            seen.add(values)
            self.readings[j].append(asked.reading(j))


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "count", allowance=ctx.allowance)
    applicant = ctx.applicant("averaging")
    plan = ctx.plan
    sets = small_sets(
        ctx.simulation.truth, ctx.minimums, per_jurisdiction=plan.averaged_targets, rng=ctx.rng
    )
    # Every triple is three questions; keep within one approval's daily allowance.
    per_set = ctx.allowance // (3 * max(1, len(sets)))
    k = max(1, min(plan.decompositions, per_set - plan.rewordings - plan.repeats))
    cohorts = Cohorts()
    draws = [Draws(small.small_in) for small in sets]
    try:
        for small, drawn in zip(sets, draws, strict=True):
            first = trackers.tracker(small, cohorts, 0)
            drawn.keep(trackers.ask(applicant, first))
            for i in range(plan.rewordings):
                drawn.keep(trackers.ask(applicant, reworded(first, i)), "reworded")
            for _ in range(plan.repeats):
                drawn.keep(trackers.ask(applicant, first), "repeated")
            for form in range(1, k):
                drawn.keep(trackers.ask(applicant, trackers.tracker(small, cohorts, form)))
    except BudgetExhausted:
        result.exhausted = True
    fresh = {kind: [sum(d.fresh[kind][i] for d in draws) for i in (0, 1)] for kind in KINDS}
    for small, drawn in zip(sets, draws, strict=True):
        for j in small.small_in:
            result.targets.append(
                CountTarget.of(j, small.where.label(), small.truth[j], combine(drawn.readings[j]))
            )
    result.questions = applicant.questions
    result.privacy = spend(applicant)
    result.notes.append(
        f"{k} decompositions per set; answers that differed from every earlier one: "
        f"rewordings {fresh['reworded'][0]} of {fresh['reworded'][1]}, "
        f"repeats {fresh['repeated'][0]} of {fresh['repeated'][1]} (per node)"
    )
    return result
