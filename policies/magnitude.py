"""Magnitude rules for sums and means (costs, doses, lengths of stay): a cell is sensitive
when its largest contributors dominate it, however many persons it has. Run at the node, where
the contributions are known; a sensitive cell is suppressed like a small count.

- (n, k) dominance: the n largest contributions make up more than k percent of the total;
- p% rule: the second largest contributor could estimate the largest to within p percent,
  i.e. total - x1 - x2 < p/100 * x1.

Pure: a node passes the cell's total and its largest contributions, never person ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from policies.profiles import DisclosureProfile
from schema.codes import Jurisdiction
from schema.result import Reason

DOMINANCE: Final = "DOMINANCE"
P_PERCENT: Final = "P_PERCENT"


@dataclass(frozen=True, slots=True)
class Magnitude:
    """A magnitude cell: its total (a sum of non-negative contributions) and its largest
    contributions, largest first (at least as many as the rules look at)."""

    total: float
    largest: tuple[float, ...]

    @classmethod
    def of(cls, contributions: Sequence[float], keep: int = 10) -> Magnitude:
        if any(c < 0 for c in contributions):
            raise ValueError("magnitude rules apply to non-negative contributions")
        ordered = sorted(contributions, reverse=True)
        return cls(total=float(sum(ordered)), largest=tuple(ordered[:keep]))


def dominance(
    cell: Magnitude, profile: DisclosureProfile, jurisdiction: Jurisdiction | None
) -> Reason | None:
    n, k = profile.dominance_n, profile.dominance_k
    if n is None or k is None or cell.total <= 0:
        return None
    if sum(cell.largest[:n]) > k / 100 * cell.total:
        return Reason(
            rule=DOMINANCE,
            jurisdiction=jurisdiction,
            message=f"the {n} largest contributions make up more than {k:g}% of this cell",
        )
    return None


def p_percent(
    cell: Magnitude, profile: DisclosureProfile, jurisdiction: Jurisdiction | None
) -> Reason | None:
    p = profile.p_percent
    if p is None or not cell.largest or cell.total <= 0:
        return None
    x1 = cell.largest[0]
    x2 = cell.largest[1] if len(cell.largest) > 1 else 0.0
    if cell.total - x1 - x2 < p / 100 * x1:
        return Reason(
            rule=P_PERCENT,
            jurisdiction=jurisdiction,
            message=f"the second largest contributor could estimate the largest within {p:g}%",
        )
    return None


MAGNITUDE_RULES: Final = (dominance, p_percent)


def sensitive(
    cell: Magnitude, profile: DisclosureProfile, jurisdiction: Jurisdiction | None
) -> list[Reason]:
    """Every magnitude rule that makes the cell sensitive (empty: it may be released)."""
    return [reason for rule in MAGNITUDE_RULES if (reason := rule(cell, profile, jurisdiction))]
