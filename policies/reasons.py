"""What a policy decision says: allowed or not, per jurisdiction, and why.

Rule ids are stable: clients and audits switch on them, so an id is never renamed or reused.
A `PolicyReason` is a `schema.result.Reason` (it can go wherever reasons go, e.g. a node's
DENIED response) with the legal article or policy source it rests on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Self

from pydantic import model_validator

from schema.codes import Jurisdiction
from schema.model import Contract
from schema.result import Reason

TEXT_MAX: Final = 256


class RuleId(StrEnum):
    NO_POLICY = "NO_POLICY"
    PERMIT_MISSING = "PERMIT_MISSING"
    PERMIT_INVALID = "PERMIT_INVALID"
    REQUEST_MISMATCH = "REQUEST_MISMATCH"
    APPROVAL_SCOPE = "APPROVAL_SCOPE"
    APPROVAL_NOT_YET_VALID = "APPROVAL_NOT_YET_VALID"
    APPROVAL_EXPIRED = "APPROVAL_EXPIRED"
    APPROVAL_REVOKED = "APPROVAL_REVOKED"
    ISSUER_NOT_TRUSTED = "ISSUER_NOT_TRUSTED"
    DATASET_NOT_APPROVED = "DATASET_NOT_APPROVED"
    PURPOSE_UNKNOWN = "PURPOSE_UNKNOWN"
    PURPOSE_PROHIBITED = "PURPOSE_PROHIBITED"
    PURPOSE_NOT_ALLOWED = "PURPOSE_NOT_ALLOWED"
    PURPOSE_PUBLIC_BODY_ONLY = "PURPOSE_PUBLIC_BODY_ONLY"
    DIMENSION_NOT_ALLOWED = "DIMENSION_NOT_ALLOWED"
    GRANULARITY = "GRANULARITY"
    TABLE_TOO_LARGE = "TABLE_TOO_LARGE"
    OPTOUT_NOT_APPLIED = "OPTOUT_NOT_APPLIED"
    RATE_LIMITED = "RATE_LIMITED"
    POLICY_UNVERIFIED = "POLICY_UNVERIFIED"
    CHECK_FAILED = "CHECK_FAILED"


def clip(text: str, limit: int = TEXT_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PolicyReason(Reason):
    """A reason for refusing: the rule id, the jurisdiction refused, a sentence for people,
    and `article`, the legal provision (e.g. "EHDS Art. 54(c)") or the policy file's
    source for a national or node rule."""

    @classmethod
    def of(
        cls,
        rule: RuleId,
        jurisdiction: Jurisdiction | None,
        message: str,
        article: str | None = None,
    ) -> PolicyReason:
        return cls(
            rule=rule.value,
            jurisdiction=jurisdiction,
            message=clip(message),
            article=None if article is None else clip(article),
        )

    def as_reason(self) -> Reason:
        """The plain `Reason`, as the result and wire contracts carry it."""
        return Reason(
            rule=self.rule,
            jurisdiction=self.jurisdiction,
            message=self.message,
            article=self.article,
        )


class AccessDecision(Contract):
    """Whether a query may be answered by one jurisdiction, with every reason it may not."""

    jurisdiction: Jurisdiction
    allowed: bool
    reasons: tuple[PolicyReason, ...] = ()

    @model_validator(mode="after")
    def _allowed_iff_no_reason(self) -> Self:
        if self.allowed == bool(self.reasons):
            raise ValueError("a decision is allowed exactly when it has no reasons")
        return self

    @classmethod
    def of(cls, jurisdiction: Jurisdiction, reasons: Sequence[PolicyReason]) -> AccessDecision:
        return cls(jurisdiction=jurisdiction, allowed=not reasons, reasons=tuple(reasons))

    @property
    def rules(self) -> frozenset[str]:
        return frozenset(reason.rule for reason in self.reasons)


@dataclass(frozen=True, slots=True)
class Decisions(Mapping[Jurisdiction, AccessDecision]):
    """One decision per jurisdiction of the query, in the query's order."""

    decisions: tuple[AccessDecision, ...]

    def __getitem__(self, jurisdiction: Jurisdiction) -> AccessDecision:
        for decision in self.decisions:
            if decision.jurisdiction is jurisdiction:
                return decision
        raise KeyError(jurisdiction)

    def __iter__(self) -> Iterator[Jurisdiction]:
        return (decision.jurisdiction for decision in self.decisions)

    def __len__(self) -> int:
        return len(self.decisions)

    @property
    def allowed(self) -> bool:
        """Every jurisdiction allowed; no jurisdiction at all is not an allowance."""
        return bool(self.decisions) and all(d.allowed for d in self.decisions)

    @property
    def allowed_jurisdictions(self) -> tuple[Jurisdiction, ...]:
        return tuple(d.jurisdiction for d in self.decisions if d.allowed)

    @property
    def denied(self) -> tuple[AccessDecision, ...]:
        return tuple(d for d in self.decisions if not d.allowed)

    def reasons(self) -> list[PolicyReason]:
        return [reason for decision in self.decisions for reason in decision.reasons]
