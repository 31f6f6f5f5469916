"""The EHDS catalogue of purposes for secondary use (Art. 53) and of prohibited uses (Art. 54).

This is law, not configuration: policy files may narrow the allowed purposes for a jurisdiction
or reserve more of them to public bodies, but nothing in a file can allow a prohibited use or
open a public-body-only purpose to others. The decision checks read this module directly for
that reason.

A purpose reaches Tessera as the `purpose` claim of the approval in the researcher's token, a
snake_case identifier; `classify_purpose` maps that claim to an allowed purpose, a prohibited
use, or nothing (an unknown purpose, refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

REGULATION: Final = "Regulation (EU) 2025/327 (EHDS)"


class Purpose(StrEnum):
    """The six purposes of EHDS Art. 53(1), points (a) to (f); the list is exhaustive."""

    PUBLIC_HEALTH = "public_health"
    POLICY_MAKING = "policy_making"
    OFFICIAL_STATISTICS = "official_statistics"
    EDUCATION = "education"
    SCIENTIFIC_RESEARCH = "scientific_research"
    CARE_IMPROVEMENT = "care_improvement"


class ProhibitedUse(StrEnum):
    """The uses EHDS Art. 54 prohibits, points (a) to (e)."""

    DETRIMENTAL_DECISIONS = "detrimental_decisions"
    DISCRIMINATORY_TERMS = "discriminatory_terms"
    ADVERTISING_MARKETING = "advertising_marketing"
    HARMFUL_PRODUCTS = "harmful_products"
    NATIONAL_ETHICS_CONFLICT = "national_ethics_conflict"


@dataclass(frozen=True, slots=True)
class PurposeSpec:
    purpose: Purpose
    article: str
    title: str
    # Art. 53(2): points (a) to (c) are reserved to public sector bodies and Union
    # institutions, bodies, offices and agencies (including third parties acting for them).
    public_body_only: bool


@dataclass(frozen=True, slots=True)
class ProhibitedSpec:
    use: ProhibitedUse
    article: str
    title: str
    # Other claims that name the same use. A token that says "marketing" is refused with the
    # Art. 54 reason rather than as merely unknown, so the researcher learns why.
    aliases: frozenset[str] = frozenset()


PURPOSES: Final[dict[Purpose, PurposeSpec]] = {
    spec.purpose: spec
    for spec in (
        PurposeSpec(
            Purpose.PUBLIC_HEALTH,
            "EHDS Art. 53(1)(a)",
            "public interest in the areas of public or occupational health",
            public_body_only=True,
        ),
        PurposeSpec(
            Purpose.POLICY_MAKING,
            "EHDS Art. 53(1)(b)",
            "policy-making and regulatory activities of public sector bodies",
            public_body_only=True,
        ),
        PurposeSpec(
            Purpose.OFFICIAL_STATISTICS,
            "EHDS Art. 53(1)(c)",
            "official statistics related to health or care sectors",
            public_body_only=True,
        ),
        PurposeSpec(
            Purpose.EDUCATION,
            "EHDS Art. 53(1)(d)",
            "education or teaching in health or care sectors (vocational or higher level)",
            public_body_only=False,
        ),
        PurposeSpec(
            Purpose.SCIENTIFIC_RESEARCH,
            "EHDS Art. 53(1)(e)",
            "scientific research related to health or care sectors",
            public_body_only=False,
        ),
        PurposeSpec(
            Purpose.CARE_IMPROVEMENT,
            "EHDS Art. 53(1)(f)",
            "improvement of the delivery of care, treatment optimisation and provision of care",
            public_body_only=False,
        ),
    )
}

PUBLIC_BODY_ONLY_BY_LAW: Final[frozenset[Purpose]] = frozenset(
    spec.purpose for spec in PURPOSES.values() if spec.public_body_only
)
PUBLIC_BODY_ONLY_ARTICLE: Final = "EHDS Art. 53(2)"

PROHIBITED: Final[dict[ProhibitedUse, ProhibitedSpec]] = {
    spec.use: spec
    for spec in (
        ProhibitedSpec(
            ProhibitedUse.DETRIMENTAL_DECISIONS,
            "EHDS Art. 54(a)",
            "decisions detrimental to a natural person or group based on their health data",
            frozenset({"automated_decisions", "individual_decisions"}),
        ),
        ProhibitedSpec(
            ProhibitedUse.DISCRIMINATORY_TERMS,
            "EHDS Art. 54(b)",
            "decisions on job offers, less favourable terms for goods or services, exclusion "
            "from insurance or credit, or changes to premiums or loan conditions",
            frozenset(
                {
                    "insurance",
                    "insurance_pricing",
                    "insurance_premiums",
                    "insurance_credit_exclusion",
                    "credit_scoring",
                    "employment_screening",
                }
            ),
        ),
        ProhibitedSpec(
            ProhibitedUse.ADVERTISING_MARKETING,
            "EHDS Art. 54(c)",
            "advertising or marketing activities",
            frozenset({"advertising", "marketing"}),
        ),
        ProhibitedSpec(
            ProhibitedUse.HARMFUL_PRODUCTS,
            "EHDS Art. 54(d)",
            "developing products or services that may harm individuals, public health or society",
            frozenset({"harmful_product_development"}),
        ),
        ProhibitedSpec(
            ProhibitedUse.NATIONAL_ETHICS_CONFLICT,
            "EHDS Art. 54(e)",
            "activities in conflict with ethical provisions laid down in national law",
            frozenset({"unethical_activities"}),
        ),
    )
}

_PROHIBITED_BY_CLAIM: Final[dict[str, ProhibitedSpec]] = {
    claim: spec for spec in PROHIBITED.values() for claim in (spec.use.value, *sorted(spec.aliases))
}


@dataclass(frozen=True, slots=True)
class Classified:
    """What a purpose claim names: at most one of `purpose` and `prohibited` is set; neither
    means the claim is unknown (and refused: the Art. 53(1) list is exhaustive)."""

    claim: str
    purpose: PurposeSpec | None = None
    prohibited: ProhibitedSpec | None = None


def classify_purpose(claim: str) -> Classified:
    if (spec := _PROHIBITED_BY_CLAIM.get(claim)) is not None:
        return Classified(claim, prohibited=spec)
    try:
        return Classified(claim, purpose=PURPOSES[Purpose(claim)])
    except ValueError:
        return Classified(claim)
