"""Two questions whose difference is the target, asked in several wordings (classes 13 to 17).

Each wording of the pair is a fresh reading only when its answers differ from every wording
asked before at that node (noise keyed on the population answers a rewording with the same
numbers); distinct readings combine by inverse variance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from bench.attacks.averaging import REWORDINGS
from bench.attacks.client import Answer, Applicant, BudgetExhausted
from bench.attacks.common import spend, unanswered
from bench.attacks.context import Context
from bench.attacks.estimate import Reading, combine, difference
from bench.attacks.targets import SmallSet, small_sets
from bench.attacks.truth import NodeTruth
from bench.attacks.verdict import ClassResult, CountTarget
from bench.attacks.where import Where
from schema.codes import Jurisdiction


@dataclass(frozen=True)
class Pair:
    """|plus| − |minus| is the target."""

    plus: Where
    minus: Where

    def reworded(self, i: int) -> Pair:
        """The original (0), then the rewordings of class 5 in turn."""
        if i == 0:
            return self
        _, f = REWORDINGS[(i - 1) % len(REWORDINGS)]
        return Pair(_reworded(f, self.plus), _reworded(f, self.minus))


def _reworded(f: Callable[[Where], Where], where: Where) -> Where:
    """`f` of the criteria, the index and the criteria relative to it kept at the top level
    (where the query model takes them; the rewordings nest and split the rest)."""
    if where.index is None:
        return f(where)
    inner = replace(where, index=None, relative=())
    return replace(f(inner), index=where.index, relative=where.relative)


@dataclass(frozen=True)
class Asked:
    """The answers to every wording of one pair."""

    answers: tuple[tuple[Answer, Answer], ...]

    def distinct(self, jurisdiction: Jurisdiction) -> list[tuple[Answer, Answer]]:
        """The wordings whose answers at the node were not seen before."""
        seen: set[tuple[int | None, ...]] = set()
        kept = []
        for plus, minus in self.answers:
            values = tuple(
                None if (r := a.node(jurisdiction)) is None else r.value for a in (plus, minus)
            )
            if values not in seen:
                seen.add(values)
                kept.append((plus, minus))
        return kept

    def reading(self, jurisdiction: Jurisdiction) -> Reading | None:
        return combine(
            difference([plus.node(jurisdiction)], [minus.node(jurisdiction)])
            for plus, minus in self.distinct(jurisdiction)
        )


def ask(
    applicant: Applicant,
    pair: Pair,
    wordings: int,
    jurisdictions: Sequence[Jurisdiction] | None = None,
) -> Asked:
    """The pair in `wordings` wordings (the original first)."""
    answers = []
    for i in range(wordings):
        p = pair.reworded(i)
        answers.append(
            (
                applicant.ask(p.plus, jurisdictions=jurisdictions),
                applicant.ask(p.minus, jurisdictions=jurisdictions),
            )
        )
    return Asked(tuple(answers))


def count_attack(
    ctx: Context, result: ClassResult, sets: Sequence[SmallSet], pair: Callable[[SmallSet], Pair]
) -> ClassResult:
    """Every small set read from its pair, in `1 + rewordings` wordings, by an applicant of
    the class's own."""
    applicant = ctx.applicant(f"class-{result.number}")
    wordings = 1 + ctx.plan.rewordings
    done = 0
    try:
        for small in sets:
            asked = ask(applicant, pair(small), wordings)
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
    result.notes.append(f"each pair in {wordings} wordings, distinct answers averaged")
    return result


Candidates = Callable[[Mapping[Jurisdiction, NodeTruth], Mapping[Jurisdiction, int]], list[Where]]


def candidate_attack(
    ctx: Context, result: ClassResult, candidates: Candidates, pair: Callable[[SmallSet], Pair]
) -> ClassResult:
    """`count_attack` on the small sets among `candidates` (each written as one question of
    the two whose difference it is), chosen as every class's are (`small_sets`)."""
    sets = small_sets(
        ctx.simulation.truth,
        ctx.minimums,
        per_jurisdiction=ctx.plan.count_targets,
        rng=ctx.rng,
        candidates=candidates(ctx.simulation.truth, ctx.minimums),
    )
    return count_attack(ctx, result, sets, pair)
