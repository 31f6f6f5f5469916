"""How the attacker turns released numbers into an estimate with a standard error, and into
a guess of whether one person is in a set.

A reading is an unbiased estimate and its variance, computed only from what was released
(never from the simulator's truth, nor from "the count is small", which the attacker would
only guess): a withheld number gives no reading. Readings of one count combine by inverse
variance; an exact reading wins.

Membership is decided by a log-likelihood ratio, "one person" against "nobody": a difference
of released numbers d with variance V scores (d - 1/2) / V; equal answers to two questions
that differ by the target score as "absent" (with noise keyed on the population, the same
persons always get the same number); a refusal that only a difference of one can cause scores
as "present".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from bench.attacks.client import Released

CERTAIN: Final = math.inf


@dataclass(frozen=True, slots=True)
class Reading:
    estimate: float
    variance: float

    @property
    def se(self) -> float:
        return math.sqrt(self.variance)


def difference(plus: Sequence[Released | None], minus: Sequence[Released | None]) -> Reading | None:
    """Σ plus − Σ minus, when every one of them was released."""
    values = [*plus, *minus]
    if any(v is None or v.withheld for v in values):
        return None
    total = sum(v.value for v in plus if v is not None and v.value is not None) - sum(
        v.value for v in minus if v is not None and v.value is not None
    )
    return Reading(float(total), sum(v.variance for v in values if v is not None))


def combine(readings: Iterable[Reading | None]) -> Reading | None:
    """One reading from independent readings of the same count."""
    found = [r for r in readings if r is not None]
    if not found:
        return None
    exact = [r for r in found if r.variance == 0]
    if exact:
        return Reading(sum(r.estimate for r in exact) / len(exact), 0.0)
    weights = [1 / r.variance for r in found]
    total = sum(weights)
    return Reading(
        sum(w * r.estimate for w, r in zip(weights, found, strict=True)) / total, 1 / total
    )


def uniform(low: int, high: int) -> Reading:
    """A count known only to lie in [low, high], every value equally likely."""
    width = high - low + 1
    return Reading((low + high) / 2, (width**2 - 1) / 12)


# -- membership -------------------------------------------------------------------------------
def score(reading: Reading | None) -> float:
    """Evidence that a difference is one person rather than none."""
    if reading is None:
        return 0.0
    if reading.variance == 0:
        return CERTAIN if reading.estimate >= 0.5 else -CERTAIN
    return (reading.estimate - 0.5) / reading.variance


def equality_score(with_target: Released | None, without: Released | None) -> float:
    """Two questions whose populations differ exactly by the target (if it is in the set):
    equal answers say "absent"; otherwise the difference speaks."""
    if with_target is None or without is None or with_target.withheld or without.withheld:
        return 0.0
    if with_target.value == without.value:
        return -CERTAIN
    return score(difference([with_target], [without]))


def decide(scores: Iterable[float]) -> bool:
    """Present or not, from independent pieces of evidence; certain evidence wins, and when
    certain evidence disagrees, the majority of it."""
    found = list(scores)
    certain = [s for s in found if math.isinf(s)]
    if certain:
        return sum(1 if s > 0 else -1 for s in certain) > 0
    return sum(found) > 0
