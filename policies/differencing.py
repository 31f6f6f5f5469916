"""The differencing guard's rule: two populations answered under one approval must not differ
by fewer than the profile's floor of persons.

The classic tracker asks for "all diabetics" and then "all diabetics except those born in
1931": both counts are large, their difference is one person. A node keeps the populations it
has answered for each approval (connectors.history) and refuses a question whose population
differs from an earlier one by at least one and fewer than `DisclosureProfile.differencing_floor`
persons. The same population asked again (in any wording) is answered, and gets the same
numbers (policies.perturbation). A population smaller than the minimum count is never compared:
every number of its answer is suppressed, so there is nothing to subtract (and rare-disease
questions, whose populations are all small and close to each other, stay answerable).

Pure: the node passes sizes and overlaps, never person ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from policies.profiles import DisclosureProfile
from schema.codes import Jurisdiction
from schema.result import Reason

DIFFERENCING_GUARD: Final = "DIFFERENCING_GUARD"


def symmetric_difference(size: int, earlier: int, common: int) -> int:
    """|P Δ Q| from |P|, |Q| and |P ∩ Q|."""
    return size + earlier - 2 * common


def differencing_refusal(
    size: int,
    overlaps: Iterable[tuple[int, int]],
    profile: DisclosureProfile,
    jurisdiction: Jurisdiction | None,
) -> Reason | None:
    """The reason to refuse a population of `size` persons, given `(size, common)` for each
    population answered before under the same approval; None to answer. The reason never
    says by how many persons the populations differ."""
    floor = profile.differencing_floor
    if size < profile.min_count:
        return None
    for earlier, common in overlaps:
        if earlier < profile.min_count:
            continue
        if 0 < symmetric_difference(size, earlier, common) < floor:
            return Reason(
                rule=DIFFERENCING_GUARD,
                jurisdiction=jurisdiction,
                message=f"this population differs from one already answered under this "
                f"approval by fewer than {floor} persons: the two answers together would "
                "describe a group below the minimum count",
            )
    return None
