"""The magnitude rules on a cell's days at risk (PERSON_DAYS, an incidence rate's
denominator), run by the node before release and again by the gateway on what it received.

Person-time is a magnitude: a cell of many days may still be mostly one person's. The policy
profile's dominance and p% rules (`policies.magnitude`) say when a cell is sensitive from its
total and its largest contributions. A node does not rank its persons' days per cell: each
person's days are clipped to the follow-up window's length (`schema.query.Outcome.days`, public),
so no contribution is larger, and the rules are run with every largest contribution at that
maximum. This is the worst case the clipping allows, so a cell that passes it passes with the
true contributions too (the (n, k) rule needs n·D ≤ k% of the total, the p% rule
total − 2D ≥ p% of D): stricter than the rules on ranked days, and the same at every node.

The rules read the noisy total, the value released: a decision on released values only
(post-processing, which costs no privacy), which the gateway can check exactly. A total of
no day or fewer (noise can make it so) is as sensitive as a cell can be.
"""

from __future__ import annotations

from policies.magnitude import Magnitude, sensitive
from policies.profiles import DisclosureProfile
from schema.codes import Jurisdiction
from schema.result import Reason


def worst_case(total: int, most: int, profile: DisclosureProfile) -> Magnitude:
    """The cell as the rules see it: its (noisy) total, at least one day, and as many
    largest contributions as they read, each the most one person can add."""
    keep = max(profile.dominance_n or 1, 2)
    return Magnitude(total=float(max(total, 1)), largest=(float(most),) * keep)


def person_time_reasons(
    total: int, most: int, profile: DisclosureProfile, jurisdiction: Jurisdiction | None
) -> list[Reason]:
    """Every magnitude rule of `profile` a released total of days at risk fails, with at most
    `most` days per person (empty: it may be released)."""
    if profile.dominance_n is None and profile.p_percent is None:
        return []
    return sensitive(worst_case(total, most, profile), profile, jurisdiction)
