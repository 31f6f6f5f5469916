"""The checks a query must pass in a jurisdiction, as a pipeline of small typed callables.

A check receives everything the decision knows (`CheckInput`) and yields zero or more
reasons to refuse. Checks do not stop at the first problem: the researcher is told everything
that stands in the way at once. Adding a check is adding a function to `CHECKS`.

Where a rule comes from the law, its reason cites the article; where it comes from a policy
file, its reason cites that rule's source.

The policy files' `rate_limits` are not checked here: a decision is pure and keeps no count.
The gateway enforces them with token buckets (`gateway.ratelimit`), one mechanism for both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from policies.domain import table_cells
from policies.model import RulePath, dotted
from policies.plan import QueryPlan
from policies.policy_set import EffectivePolicy
from policies.principal import ApplicantKind, ApprovalView, ResearcherView
from policies.purposes import (
    PUBLIC_BODY_ONLY_ARTICLE,
    PUBLIC_BODY_ONLY_BY_LAW,
    classify_purpose,
)
from policies.reasons import PolicyReason, RuleId
from schema.codes import Dimension, Jurisdiction
from schema.dimensions import age_band_width
from schema.query import CohortQuery

ART_69: Final = "EHDS Art. 69"  # health data requests: answers in anonymised statistical form
ART_53_1: Final = "EHDS Art. 53(1)"
ART_71: Final = "EHDS Art. 71"  # the right to opt out of secondary use


@dataclass(frozen=True, slots=True)
class CheckInput:
    jurisdiction: Jurisdiction
    policy: EffectivePolicy
    principal: ResearcherView
    approval: ApprovalView
    plan: QueryPlan
    now: dt.datetime
    # Whether the node answering applies its opt-out register; None where unknown (the
    # gateway), in which case the node's own decision checks it.
    optout_applied: bool | None = None

    def reason(self, rule: RuleId, message: str, article: str | None = None) -> PolicyReason:
        return PolicyReason.of(rule, self.jurisdiction, message, article)

    def source(self, path: RulePath) -> str:
        return self.policy.source(path) or dotted(path)


Check = Callable[[CheckInput], Iterable[PolicyReason]]


# -- the approval ---------------------------------------------------------------------------
def request_matches(c: CheckInput) -> Iterator[PolicyReason]:
    if not c.approval.names(c.plan.request_id):
        yield c.reason(
            RuleId.REQUEST_MISMATCH,
            "the query names a different data request than the approval",
            ART_69,
        )


def jurisdiction_approved(c: CheckInput) -> Iterator[PolicyReason]:
    if c.jurisdiction not in c.approval.jurisdictions:
        yield c.reason(
            RuleId.APPROVAL_SCOPE,
            f"the approval does not cover {c.jurisdiction.value}",
            ART_69,
        )


def approval_in_force(c: CheckInput) -> Iterator[PolicyReason]:
    # Same convention as a JWT's nbf/exp: valid from `valid_from` inclusive, no longer valid
    # from `valid_until` on.
    if c.approval.valid_from is not None and c.now < c.approval.valid_from:
        yield c.reason(
            RuleId.APPROVAL_NOT_YET_VALID,
            f"the approval is valid from {c.approval.valid_from.isoformat()}",
            ART_69,
        )
    if c.approval.valid_until is not None and c.now >= c.approval.valid_until:
        yield c.reason(
            RuleId.APPROVAL_EXPIRED,
            f"the approval expired at {c.approval.valid_until.isoformat()}",
            ART_69,
        )


def approval_not_revoked(c: CheckInput) -> Iterator[PolicyReason]:
    if c.approval.request_id in c.policy.revoked:
        yield c.reason(
            RuleId.APPROVAL_REVOKED,
            f"data request {c.approval.request_id} has been revoked",
            c.source(("approvals", "revoked")),
        )


def issuer_trusted(c: CheckInput) -> Iterator[PolicyReason]:
    if c.principal.issuer is not None and not c.policy.trusts(c.principal.issuer):
        yield c.reason(
            RuleId.ISSUER_NOT_TRUSTED,
            f"{c.jurisdiction.value} does not accept approvals from this issuer",
            "EHDS Art. 55",
        )


def datasets_approved(c: CheckInput) -> Iterator[PolicyReason]:
    """The approval must name at least one dataset the node serves. Where the datasets are
    not known (a gateway told none), the node checks: it always knows its own."""
    served = c.plan.datasets
    if served is None and c.policy.node is not None and c.policy.node.datasets:
        served = c.policy.node.datasets
    if served is not None and not served & c.approval.datasets:
        yield c.reason(
            RuleId.DATASET_NOT_APPROVED,
            f"the approval names none of the datasets {c.jurisdiction.value} serves here: "
            + ", ".join(sorted(served)),
            ART_69,
        )


# -- the purpose ----------------------------------------------------------------------------
def purpose_lawful(c: CheckInput) -> Iterator[PolicyReason]:
    """Art. 54 uses are refused whatever the token claims; anything outside Art. 53(1) is
    refused because that list is exhaustive."""
    found = classify_purpose(c.approval.purpose)
    if found.prohibited is not None:
        yield c.reason(
            RuleId.PURPOSE_PROHIBITED,
            f"prohibited use: {found.prohibited.title}",
            found.prohibited.article,
        )
    elif found.purpose is None:
        yield c.reason(
            RuleId.PURPOSE_UNKNOWN,
            f"{c.approval.purpose!r} is not a purpose of secondary use",
            ART_53_1,
        )


def purpose_allowed_here(c: CheckInput) -> Iterator[PolicyReason]:
    spec = classify_purpose(c.approval.purpose).purpose
    if spec is not None and spec.purpose not in c.policy.allowed_purposes:
        yield c.reason(
            RuleId.PURPOSE_NOT_ALLOWED,
            f"{c.jurisdiction.value} does not allow {spec.purpose.value} ({spec.article})",
            c.source(("purposes", "allowed")),
        )


def purpose_fits_applicant(c: CheckInput) -> Iterator[PolicyReason]:
    spec = classify_purpose(c.approval.purpose).purpose
    if spec is None or spec.purpose not in c.policy.public_body_only:
        return
    if c.approval.applicant_kind is not ApplicantKind.PUBLIC_BODY:
        kind = c.approval.applicant_kind.value if c.approval.applicant_kind else "unknown"
        by_law = spec.purpose in PUBLIC_BODY_ONLY_BY_LAW
        yield c.reason(
            RuleId.PURPOSE_PUBLIC_BODY_ONLY,
            f"{spec.purpose.value} is reserved to public sector bodies (applicant: {kind})",
            PUBLIC_BODY_ONLY_ARTICLE if by_law else c.source(("purposes", "public_body_only")),
        )


# -- the question ---------------------------------------------------------------------------
# Iterating an Enum class builds its members anew each time; this runs for every check of
# every jurisdiction of every query.
_DIMENSIONS: Final = tuple(Dimension)


def _dimensions(query: CohortQuery) -> list[Dimension]:
    used = {d for table in query.tables for d in table}
    return [d for d in _DIMENSIONS if d in used]


def dimensions_allowed(c: CheckInput) -> Iterator[PolicyReason]:
    refused = c.policy.rules.dimensions.not_allowed
    for dimension in _dimensions(c.plan.query):
        if dimension not in c.policy.allowed_dimensions:
            # The rule that refuses it: a layer's `not_allowed`, else the allow-list.
            named = refused is not None and dimension in refused.value
            yield c.reason(
                RuleId.DIMENSION_NOT_ALLOWED,
                f"{c.jurisdiction.value} does not allow breakdowns by {dimension.value}",
                c.source(("dimensions", "not_allowed" if named else "allowed")),
            )


def granularity(c: CheckInput) -> Iterator[PolicyReason]:
    minimum = c.policy.min_age_band_width
    for dimension in _dimensions(c.plan.query):
        width = age_band_width(dimension)
        if width is not None and width < minimum:
            yield c.reason(
                RuleId.GRANULARITY,
                f"{dimension.value} is finer than {c.jurisdiction.value}'s minimum age band "
                f"of {minimum} years",
                c.source(("dimensions", "min_age_band_width")),
            )


def table_size(c: CheckInput) -> Iterator[PolicyReason]:
    limit = c.policy.max_cells
    for table in c.plan.query.tables:
        if table_cells(table, c.plan.query) > limit:
            by = ", ".join(d.value for d in table)
            yield c.reason(
                RuleId.TABLE_TOO_LARGE,
                f"the breakdown by {by} could have more than {limit} cells",
                c.source(("dimensions", "max_cells")),
            )


# -- the node -------------------------------------------------------------------------------
def optout_applied(c: CheckInput) -> Iterator[PolicyReason]:
    if c.policy.optout_required and c.optout_applied is False:
        yield c.reason(
            RuleId.OPTOUT_NOT_APPLIED,
            f"{c.jurisdiction.value} requires opt-outs to be applied and this node cannot",
            ART_71,
        )


def rules_verified(c: CheckInput) -> Iterator[PolicyReason]:
    """For production: refuse while any rule that applies is unconfirmed by its HDAB."""
    unverified = c.policy.unverified()
    if unverified:
        yield c.reason(
            RuleId.POLICY_UNVERIFIED,
            "rules not yet confirmed by the HDAB: " + ", ".join(dotted(p) for p in unverified),
        )


CHECKS: Final[tuple[Check, ...]] = (
    request_matches,
    jurisdiction_approved,
    approval_in_force,
    approval_not_revoked,
    issuer_trusted,
    datasets_approved,
    purpose_lawful,
    purpose_allowed_here,
    purpose_fits_applicant,
    dimensions_allowed,
    granularity,
    table_size,
    optout_applied,
)

PRODUCTION_CHECKS: Final[tuple[Check, ...]] = (*CHECKS, rules_verified)
