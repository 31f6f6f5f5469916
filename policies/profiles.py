"""Disclosure profiles per jurisdiction: how small a count may be released, how zeros are
treated, and the further rules the disclosure pipeline (policies.disclosure) applies: rounding,
secondary suppression, cell-key perturbation, the differencing guard and the magnitude rules.
The numbers per jurisdiction live in the policy files (policies/layers); a jurisdiction's
profile is `PolicySet.profile(j)`. Each carries its source and whether an HDAB has confirmed
it (an unverified number must be confirmed before production use)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Final

from pydantic import Field

from schema.model import Contract


class ZeroHandling(StrEnum):
    RELEASE = "RELEASE"  # a zero reveals nothing about a person: publish it
    SUPPRESS = "SUPPRESS"  # treat zero like any other small count


class DisclosureProfile(Contract):
    """Everything disclosure control needs to know about one jurisdiction (or, composed with
    `strictest`, about a cell several jurisdictions contribute to). The defaults are the
    strict ones where a default can be strict: secondary suppression is on, and the
    differencing guard is on with the minimum count as its floor."""

    min_count: Annotated[int, Field(ge=1, le=1000)]
    zero: ZeroHandling = ZeroHandling.SUPPRESS
    source: str
    verified: bool = False
    # Released counts are multiples of this (1: no rounding); deterministic in the cell.
    rounding_base: Annotated[int, Field(ge=1)] = 1
    # Suppress further cells so that no suppressed count can be recomputed from margins.
    secondary_suppression: bool = True
    # Cell-key perturbation (policies.perturbation): noise in [-max_noise, max_noise] with at
    # most this variance; max_noise 0 turns it off.
    perturbation_max_noise: Annotated[int, Field(ge=0, le=1000)] = 0
    perturbation_variance: Annotated[float, Field(ge=0, le=1_000_000)] = 0.0
    # Two populations answered under one approval must differ by at least this many persons;
    # never less than min_count (see `differencing_floor`).
    differencing_k: Annotated[int, Field(ge=1, le=1000)] | None = None
    # Magnitude rules (sums, means): (n, k) dominance and the p% rule; None: not applied.
    dominance_n: Annotated[int, Field(ge=1, le=10)] | None = None
    dominance_k: Annotated[float, Field(gt=0, le=100)] | None = None
    p_percent: Annotated[float, Field(gt=0, le=100)] | None = None

    @property
    def perturbs(self) -> bool:
        return self.perturbation_max_noise > 0

    @property
    def differencing_floor(self) -> int:
        """The smallest difference between two answered populations that is allowed: the
        stated k, and never less than the minimum count (a difference of fewer persons than
        that is a small cell obtained by subtraction)."""
        return max(self.differencing_k or 0, self.min_count)

    def is_stricter_or_equal(self, other: DisclosureProfile) -> bool:
        return (
            self.min_count >= other.min_count
            and (self.zero is ZeroHandling.SUPPRESS or other.zero is ZeroHandling.RELEASE)
            and self.rounding_base % other.rounding_base == 0
            and (self.secondary_suppression or not other.secondary_suppression)
            and self.perturbation_max_noise >= other.perturbation_max_noise
            and self.perturbation_variance >= other.perturbation_variance
            and self.differencing_floor >= other.differencing_floor
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
    zero = (
        ZeroHandling.SUPPRESS
        if any(p.zero is ZeroHandling.SUPPRESS for p in profiles)
        else ZeroHandling.RELEASE
    )
    # The binding rule is the highest minimum: its source is the one that explains the result.
    binding = max(profiles, key=lambda p: p.min_count)
    dominance_k = [p.dominance_k for p in profiles if p.dominance_k is not None]
    dominance_n = _max_optional(p.dominance_n for p in profiles)
    differencing_k = _max_optional(p.differencing_k for p in profiles)
    return DisclosureProfile(
        min_count=binding.min_count,
        zero=zero,
        source=binding.source,
        verified=all(p.verified for p in profiles),
        rounding_base=math.lcm(*(p.rounding_base for p in profiles)),
        secondary_suppression=any(p.secondary_suppression for p in profiles),
        perturbation_max_noise=max(p.perturbation_max_noise for p in profiles),
        perturbation_variance=max(p.perturbation_variance for p in profiles),
        differencing_k=None if differencing_k is None else int(differencing_k),
        dominance_n=None if dominance_n is None else int(dominance_n),
        dominance_k=min(dominance_k) if dominance_k else None,
        p_percent=_max_optional(p.p_percent for p in profiles),
    )
