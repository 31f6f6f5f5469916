"""Small helpers every attack uses."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from bench.attacks.client import Applicant
from bench.attacks.targets import SmallSet
from bench.attacks.verdict import CountTarget


def unanswered(sets: Iterable[SmallSet]) -> Iterator[CountTarget]:
    """Targets the attacker ran out of allowance before reaching: no estimate."""
    for small in sets:
        for j in small.small_in:
            yield CountTarget(j, small.where.label(), small.truth[j], None, None)


def spend(applicant: Applicant) -> dict[str, float]:
    """The largest figure of each kind the nodes reported for what answers cost the
    applicant (empty while nodes report none)."""
    largest: dict[str, float] = {}
    for figures in applicant.privacy.values():
        for name, value in figures.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                largest[name] = max(largest.get(name, float(value)), float(value))
    return largest
