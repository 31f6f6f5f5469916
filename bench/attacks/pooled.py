"""What the attacks on secure pooling share: small sets padded with a large birth cohort, so
that every country's part of each question is released, and readings of one country's part
from pooled counts.

A pooled count (SECURE_POOL) is one noisy count of the whole: noise of sd σ_pool drawn by the
participants as shares, apart from every country's own count. Taken apart against what else
is released it gives a country's count with the pooled noise plus whatever it is taken
apart against: never less than σ_pool² of variance per reading, and every reading charged.

Padding charges the pad's thousands of persons with every question; a pad's persons who ran
out of budget would drop out of one question of a pair and not the other, and bias the
reading. So each small set is attacked by an applicant of its own, with a budget of its own:
more than one applicant may ask, the worst case for the protection.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bench.attacks.client import Answer, Applicant
from bench.attacks.common import spend
from bench.attacks.context import Context
from bench.attacks.estimate import Reading, difference
from bench.attacks.targets import Cohorts, SmallSet
from bench.attacks.where import Where, union
from schema.codes import Jurisdiction

SECURE_POOL = "SECURE_POOL"


def padded(small: SmallSet, cohorts: Cohorts) -> tuple[Where, Where]:
    """The small set with a fresh birth cohort outside its band (Q = S ∪ L), and the cohort
    alone (L): every country's count of either is large, so every one is released."""
    pad, _ = cohorts.cohort(small.band)
    return union(small.where, pad), pad


def minus(a: Reading | None, b: Reading | None) -> Reading | None:
    """a − b for independent readings."""
    if a is None or b is None:
        return None
    return Reading(a.estimate - b.estimate, a.variance + b.variance)


def pooled_minus_others(
    answer: Answer, jurisdiction: Jurisdiction, jurisdictions: Sequence[Jurisdiction]
) -> Reading | None:
    """One country's part of a question: its pooled count minus every other country's."""
    others = [answer.node(k) for k in jurisdictions if k is not jurisdiction]
    return difference([answer.pooled], others)


def pooled_securely(*answers: Answer) -> bool:
    return all(SECURE_POOL in a.pooled.rules for a in answers)


def applicant_for(ctx: Context, name: str, n: int) -> Applicant:
    """The applicant that attacks the n-th small set of class `name`."""
    return ctx.applicant(f"{name}-{n + 1}")


def spend_of(applicants: Iterable[Applicant]) -> dict[str, float]:
    """The largest figure of each kind any of `applicants` was told it spent."""
    largest: dict[str, float] = {}
    for applicant in applicants:
        for name, value in spend(applicant).items():
            largest[name] = max(largest.get(name, value), value)
    return largest
