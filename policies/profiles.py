"""Disclosure profiles per jurisdiction: the minimum count a released value must reach, the
noise every count gets, the privacy budget each person has per applicant, rounding, and the
magnitude rules. The numbers per jurisdiction live in the policy files (policies/layers); a
jurisdiction's profile is `PolicySet.profile(j)`. Each carries its source and whether an HDAB
has confirmed it (an unverified number must be confirmed before production use).

Noise is a discrete Gaussian of standard deviation `sigma` on every released count (COARSE
questions: twice that). Under zero-concentrated differential privacy a released table costs
each person counted in it rho = 1/(2 sigma^2); a person whose spend for an applicant would pass
`rho_per_applicant` (or, across its colleagues, `rho_per_organisation`) drops out of that
applicant's counts. rho <= 0.5 is what makes every small count unknowable to better than one
person: README.md, "How your numbers are protected".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated, Final

from pydantic import Field

from schema.codes import NoiseLevel
from schema.model import Contract

# The largest spend per person any layer may allow: at rho = 0.5 the Cramér-Rao bound gives a
# standard error of at least one person for any count estimated from everything released.
MAX_RHO: Final = 0.5
COARSE_FACTOR: Final = 2.0

Rho = Annotated[float, Field(gt=0, le=MAX_RHO)]


class DisclosureProfile(Contract):
    """Everything disclosure control needs to know about one jurisdiction (or, composed with
    `strictest`, about a cell several jurisdictions contribute to)."""

    min_count: Annotated[int, Field(ge=1, le=1000)]
    source: str
    verified: bool = False
    # Released counts are multiples of this (1: no rounding), after the noise.
    rounding_base: Annotated[int, Field(ge=1)] = 1
    sigma: Annotated[float, Field(ge=0.5, le=1000)] = 5.0
    rho_per_applicant: Rho = MAX_RHO
    rho_per_organisation: Rho = MAX_RHO
    # Secure pooling across borders: whether the jurisdiction's nodes take part, and in rounds
    # of at least how many nodes (`policies.model.SecurePooling`).
    secure_pooling: bool = False
    pool_min_nodes: Annotated[int, Field(ge=2, le=32)] = 2
    # Magnitude rules (sums, means): (n, k) dominance and the p% rule; None: not applied.
    dominance_n: Annotated[int, Field(ge=1, le=10)] | None = None
    dominance_k: Annotated[float, Field(gt=0, le=100)] | None = None
    p_percent: Annotated[float, Field(gt=0, le=100)] | None = None

    def noise_sd(self, level: NoiseLevel = NoiseLevel.STANDARD) -> float:
        return self.sigma * (COARSE_FACTOR if level is NoiseLevel.COARSE else 1.0)

    def is_stricter_or_equal(self, other: DisclosureProfile) -> bool:
        return (
            self.min_count >= other.min_count
            and self.rounding_base % other.rounding_base == 0
            and self.sigma >= other.sigma
            and self.rho_per_applicant <= other.rho_per_applicant
            and self.rho_per_organisation <= other.rho_per_organisation
            and (not self.secure_pooling or other.secure_pooling)
            and self.pool_min_nodes >= other.pool_min_nodes
            and _optional_ge(self.dominance_n, other.dominance_n)
            and _optional_le(self.dominance_k, other.dominance_k)
            and _optional_ge(self.p_percent, other.p_percent)
        )


def _optional_ge(a: float | None, b: float | None) -> bool:
    return b is None or (a is not None and a >= b)


def _optional_le(a: float | None, b: float | None) -> bool:
    return b is None or (a is not None and a <= b)


def _max_optional(values: Iterable[float | None]) -> float | None:
    stated = [v for v in values if v is not None]
    return max(stated) if stated else None


# Used for any jurisdiction without a policy of its own: fail closed with the strictest
# national threshold on record (FR).
BASELINE = DisclosureProfile(
    min_count=11, source="Tessera baseline: strictest known national threshold (FR)"
)


def strictest(profiles: Iterable[DisclosureProfile]) -> DisclosureProfile:
    """The profile that satisfies every given profile at once. With no profile at all, the
    baseline (fail closed)."""
    profiles = tuple(profiles)
    if not profiles:
        return BASELINE
    if len(profiles) == 1:
        return profiles[0]
    # The gateway asks this for every pooled cell, of the same few profile objects: remember
    # the answer by their identities (the entry keeps them alive, so an id cannot be reused).
    key = tuple(map(id, profiles))
    known = _STRICTEST.get(key)
    if known is not None:
        return known[1]
    result = _strictest(profiles)
    if len(_STRICTEST) >= _STRICTEST_MAX:
        _STRICTEST.clear()
    _STRICTEST[key] = (profiles, result)
    return result


_STRICTEST_MAX: Final = 1024
_STRICTEST: dict[tuple[int, ...], tuple[tuple[DisclosureProfile, ...], DisclosureProfile]] = {}


def _strictest(profiles: tuple[DisclosureProfile, ...]) -> DisclosureProfile:
    # The binding rule is the highest minimum: its source is the one that explains the result.
    binding = max(profiles, key=lambda p: p.min_count)
    dominance_k = [p.dominance_k for p in profiles if p.dominance_k is not None]
    dominance_n = _max_optional(p.dominance_n for p in profiles)
    return DisclosureProfile(
        min_count=binding.min_count,
        source=binding.source,
        verified=all(p.verified for p in profiles),
        rounding_base=math.lcm(*(p.rounding_base for p in profiles)),
        sigma=max(p.sigma for p in profiles),
        rho_per_applicant=min(p.rho_per_applicant for p in profiles),
        rho_per_organisation=min(p.rho_per_organisation for p in profiles),
        secure_pooling=all(p.secure_pooling for p in profiles),
        pool_min_nodes=max(p.pool_min_nodes for p in profiles),
        dominance_n=None if dominance_n is None else int(dominance_n),
        dominance_k=min(dominance_k) if dominance_k else None,
        p_percent=_max_optional(p.p_percent for p in profiles),
    )
