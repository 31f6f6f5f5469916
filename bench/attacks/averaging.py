"""Class 5: averaging. One small set, many decompositions; the same questions reworded; the
same questions repeated.

Each tracker triple of class 1 with fresh padding is a new reading of S; their mean has a
standard error √k times smaller. Rewordings ask the very same populations in other words
(union order, nesting, a redundant `age: { min: 0 }`, a duplicated group, a range split in
two); repeats ask the identical text again. A reworded or repeated triple whose answers are
the ones already seen adds nothing and is not counted; one whose answers differ is a fresh
reading. Questions are spread so that the whole attack fits one approval's daily allowance.
Where answers say what they cost, a triple whose persons may have started dropping out of the
counts (`bench.attacks.budget`) is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from bench.attacks import trackers
from bench.attacks.budget import Budget
from bench.attacks.client import Applicant, BudgetExhausted
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


REWORDINGS: tuple[tuple[str, Callable[[Where], Where]], ...] = (
    ("union order", _reverse),
    ("nested", _nest),
    ("age: { min: 0 }", _open_age),
    ("a group twice", _duplicate),
    ("a range split", _split),
    ("split and reordered", lambda w: _reverse(_split(w))),
)


def reworded(t: trackers.Tracker, i: int) -> tuple[str, trackers.Tracker]:
    name, f = REWORDINGS[i % len(REWORDINGS)]
    return name, trackers.Tracker(f(t.with_set), f(t.padded), f(t.padding))


def answers_of_their_own(
    original: trackers.Asked, again: trackers.Asked, t: trackers.Tracker, r: trackers.Tracker
) -> tuple[int, int]:
    """Of the questions reworded (their text changed), at every node that released both: how
    many got another number than the original wording (fresh noise), and how many compared."""
    own = compared = 0
    pairs = (
        (original.with_set, again.with_set, t.with_set, r.with_set),
        (original.padded, again.padded, t.padded, r.padded),
        (original.padding, again.padding, t.padding, r.padding),
    )
    for first, second, before, after in pairs:
        if before.graphql() == after.graphql():
            continue
        for j in first.nodes:
            a, b = first.node(j), second.node(j)
            if a is None or b is None or a.withheld or b.withheld:
                continue
            compared += 1
            own += a.value != b.value
    return own, compared


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
        self.untrusted = 0

    def keep(self, asked: trackers.Asked, kind: str | None = None, *, trusted: bool = True) -> None:
        for j, seen in self.seen.items():
            values = asked.values(j)
            if kind is not None:
                self.fresh[kind][1] += 1
            if values in seen:
                continue
            if kind is not None:
                self.fresh[kind][0] += 1
            seen.add(values)
            if trusted:
                self.readings[j].append(asked.reading(j))
            else:
                self.untrusted += 1


def ask(applicant: Applicant, t: trackers.Tracker, budget: Budget) -> tuple[trackers.Asked, bool]:
    """A triple, and whether nobody it counted can have dropped out of its counts."""
    asked = trackers.ask(applicant, t)
    whole = [
        budget.charge(where, answer)
        for where, answer in (
            (t.with_set, asked.with_set),
            (t.padded, asked.padded),
            (t.padding, asked.padding),
        )
    ]
    return asked, all(whole)


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
    budget = Budget()
    draws = [Draws(small.small_in) for small in sets]
    wordings: dict[str, list[int]] = {}
    try:
        for small, drawn in zip(sets, draws, strict=True):
            first = trackers.tracker(small, cohorts, 0)
            original, trusted = ask(applicant, first, budget)
            drawn.keep(original, trusted=trusted)
            for i in range(plan.rewordings):
                name, other = reworded(first, i)
                again, trusted = ask(applicant, other, budget)
                drawn.keep(again, "reworded", trusted=trusted)
                own, compared = answers_of_their_own(original, again, first, other)
                counts = wordings.setdefault(name, [0, 0])
                counts[0] += own
                counts[1] += compared
            for _ in range(plan.repeats):
                repeated, trusted = ask(applicant, first, budget)
                drawn.keep(repeated, "repeated", trusted=trusted)
            for form in range(1, k):
                tracker = trackers.tracker(small, cohorts, form)
                asked, trusted = ask(applicant, tracker, budget)
                drawn.keep(asked, trusted=trusted)
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
        f"{k} decompositions per set; triples whose answers differed from every earlier one: "
        f"reworded {fresh['reworded'][0]} of {fresh['reworded'][1]}, "
        f"repeated {fresh['repeated'][0]} of {fresh['repeated'][1]} (per node)"
    )
    untrusted = sum(d.untrusted for d in draws)
    if untrusted:
        result.notes.append(
            f"{untrusted} readings left out: by the spend the answers reported, persons they "
            "counted could have dropped out (their differences would be biased)"
        )
    if wordings:
        result.notes.append(
            "reworded questions answered with numbers of their own (per node and question): "
            + ", ".join(f"{name} {own}/{n}" for name, (own, n) in wordings.items())
        )
    return result
