"""Who asks, under which approval: the inputs to a decision that come from the researcher's
token, in a form the policy engine can rely on.

`schema.approval.Approval` is the claim as it travels in the JWT; the optional facts
(applicant, applicant kind, validity window) stay unknown when the HDAB did not state them.
Unknown is never treated as permissive: a purpose reserved to public bodies is refused when
the applicant kind is unknown.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from schema.approval import Approval
from schema.codes import Jurisdiction

_T = TypeVar("_T")


class ApplicantKind(StrEnum):
    """The health data applicant's legal nature, as the HDAB recorded it (EHDS Art. 53(2)
    reserves some purposes to public sector bodies and Union institutions, bodies, offices
    and agencies; those are all `public_body` here)."""

    PUBLIC_BODY = "public_body"
    PRIVATE_ENTITY = "private_entity"
    NATURAL_PERSON = "natural_person"


def as_utc(moment: dt.datetime) -> dt.datetime:
    """An aware datetime in UTC. A naive one is read as UTC: token claims are UTC by
    convention, and comparing naive with aware datetimes would raise mid-decision."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class ApprovalView:
    """The approved data request (EHDS Art. 69) as the decision sees it."""

    request_id: str
    purpose: str
    jurisdictions: frozenset[Jurisdiction]
    datasets: frozenset[str] = frozenset()
    application_id: str | None = None
    applicant: str | None = None
    applicant_kind: ApplicantKind | None = None
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None

    def names(self, request: str) -> bool:
        """Whether a question asked under `request` is asked under this approval: its own data
        request, or the multi-country application it belongs to."""
        return request == self.request_id or (
            self.application_id is not None and request == self.application_id
        )

    def __post_init__(self) -> None:
        # Normalise once so every check compares aware UTC datetimes.
        for name in ("valid_from", "valid_until"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_utc(value))

    @classmethod
    def from_approval(cls, approval: Approval) -> ApprovalView:
        kind = approval.applicant_kind
        return cls(
            request_id=approval.request_id,
            purpose=approval.purpose,
            jurisdictions=frozenset(approval.jurisdictions),
            datasets=frozenset(approval.datasets),
            application_id=approval.application_id,
            applicant=approval.applicant,
            applicant_kind=None if kind is None else ApplicantKind(kind),
            valid_from=approval.valid_from,
            valid_until=approval.valid_until,
        )


@dataclass(frozen=True, slots=True)
class ResearcherView:
    """The researcher as the decision sees it: the token's subject, and its issuer when the
    caller wants the policy to check that the issuer is one the jurisdiction trusts (None: the
    caller has verified the token against its own trust configuration and the issuer check is
    skipped). The gateway's authenticated caller is `gateway.auth.Principal`."""

    subject: str
    issuer: str | None = None
