"""Disclosure profiles per jurisdiction: how small a count may be released, and how zeros are
treated. Numbers come from public rules; each carries its source and whether an HDAB has
confirmed it (an unverified number must be confirmed before production use)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from schema.codes import Jurisdiction
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


# Used for any jurisdiction without a profile of its own: fail closed with the strictest
# threshold in the table below.
BASELINE = DisclosureProfile(
    min_count=11, source="Tessera baseline: strictest known national threshold (FR)"
)

PROFILES: dict[Jurisdiction, DisclosureProfile] = {
    Jurisdiction.FR: DisclosureProfile(
        min_count=11,
        source="Health Data Hub / CASD output rules: counts below 11 are not released",
        verified=True,
    ),
    Jurisdiction.DK: DisclosureProfile(
        min_count=5,
        source="Danish Health Data Authority: fields with fewer than 5 are blurred",
        verified=True,
    ),
    Jurisdiction.NO: DisclosureProfile(
        min_count=3, source="Statistics Norway: cells under 3 are hidden", verified=True
    ),
    Jurisdiction.IT: DisclosureProfile(
        min_count=3,
        source="Italian national statistics code: floor of 3, raised for sensitive data",
        verified=True,
    ),
    Jurisdiction.DE: DisclosureProfile(
        min_count=3, source="German research data centres: 3 (unverified)"
    ),
    **{
        j: DisclosureProfile(
            min_count=10, source=f"{j.value}: risk-based review in practice; 10 (unverified)"
        )
        for j in (
            Jurisdiction.NL,
            Jurisdiction.FI,
            Jurisdiction.BE,
            Jurisdiction.ES,
            Jurisdiction.EE,
        )
    },
}


def profile_for(jurisdiction: Jurisdiction) -> DisclosureProfile:
    return PROFILES.get(jurisdiction, BASELINE)


def strictest(profiles: Iterable[DisclosureProfile]) -> DisclosureProfile:
    """The profile that satisfies every given profile at once. With no profile at all, the
    baseline (fail closed)."""
    profiles = list(profiles)
    if not profiles:
        return BASELINE
    zero = (
        ZeroHandling.SUPPRESS
        if any(p.zero is ZeroHandling.SUPPRESS for p in profiles)
        else ZeroHandling.RELEASE
    )
    return DisclosureProfile(
        min_count=max(p.min_count for p in profiles),
        zero=zero,
        source="; ".join(sorted({p.source for p in profiles})),
        verified=all(p.verified for p in profiles),
    )
