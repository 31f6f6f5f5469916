"""The researcher's permit: a JWT issued by a health data access body (HDAB) that carries the
approved data request (EHDS Art. 69) under which the researcher may ask questions of that
HDAB's jurisdiction. A multi-country application (EHDS Art. 67-68) leads each HDAB concerned
to issue a permit of its own; they share `application_id`, or one `request_id`.

Registered claims (`iss`, `sub`, `aud`, `iat`, `exp`) are checked by the verifier; this module
names the private claims and their shape.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import Field

from schema.codes import Jurisdiction
from schema.model import Contract

ROLES_CLAIM: Final = "roles"
APPROVAL_CLAIM: Final = "approval"


# The shape of a data request's (and an application's) id.
RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]


class Role(StrEnum):
    RESEARCHER = "researcher"
    COMPLIANCE = "compliance"
    OPERATOR = "operator"


ApplicantKind = Literal["public_body", "private_entity", "natural_person"]


class ApplicantId(Contract):
    """Who asks, as every permit names them: stable across permits, data requests and HDABs.
    `researcher` is the permits' subject (`sub`), `organisation` the applicant they name
    (`approval.applicant`), when they name one. A node's ledger of what an applicant has been
    told is kept under this identity, never under a data request id."""

    researcher: Annotated[str, Field(min_length=1, max_length=256)]
    organisation: Annotated[str, Field(min_length=1, max_length=256)] | None = None

    @classmethod
    def of(cls, subject: str, approval: Approval) -> ApplicantId:
        """The applicant a permit names: its subject, and the organisation of its approval."""
        return cls(researcher=subject, organisation=approval.applicant or None)


class Approval(Contract):
    """An approved data request (EHDS Art. 69): what the researcher may ask, of whom, for
    which purpose, and until when. Purposes are the ids of `policies.purposes` (Art. 53(1));
    the applicant kind decides the purposes reserved to public bodies (Art. 53(2)). An
    unknown applicant kind is never read as permissive."""

    request_id: RequestId
    # The multi-country application (EHDS Art. 67-68) this permit belongs to, when the HDABs
    # concerned each issued a permit of their own under their own request id.
    application_id: RequestId | None = None
    purpose: Annotated[str, Field(pattern=r"^[a-z_]{1,64}$")]
    jurisdictions: Annotated[list[Jurisdiction], Field(min_length=1, max_length=32)]
    datasets: list[Annotated[str, Field(max_length=128)]] = []
    applicant: Annotated[str, Field(max_length=256)] | None = None
    applicant_kind: ApplicantKind | None = None
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None
