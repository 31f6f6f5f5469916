"""Disclosure profiles: how small a count may be released, and how zeros are treated.

The numbers per jurisdiction live in the policy files (policies/layers); a jurisdiction's
profile is `PolicySet.profile(j)`. Each carries its source and whether an HDAB has confirmed
it (an unverified number must be confirmed before production use)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Final

from pydantic import Field

from schema.model import Contract


class ZeroHandling(StrEnum):
    RELEASE = "RELEASE"  # a zero reveals nothing about a person: publish it
    SUPPRESS = "SUPPRESS"  # treat zero like any other small count


class DisclosureProfile(Contract):
    min_count: Annotated[int, Field(ge=1, le=1000)]
    zero: ZeroHandling = ZeroHandling.SUPPRESS
    source: str
    verified: bool = False

    def is_stricter_or_equal(self, other: DisclosureProfile) -> bool:
        return self.min_count >= other.min_count and (
            self.zero is ZeroHandling.SUPPRESS or other.zero is ZeroHandling.RELEASE
        )


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
    return DisclosureProfile(
        min_count=binding.min_count,
        zero=zero,
        source=binding.source,
        verified=all(p.verified for p in profiles),
    )
