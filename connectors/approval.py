"""The researcher's permit, checked by the node itself against its own HDAB's keys.

The gateway forwards, in `X-Tessera-Approval`, the one permit of the researcher's that this
node's HDAB issued, byte for byte; the node trusts the gateway to route, never to vouch for
the permit: it must verify with a key of this jurisdiction's HDAB (a permit of another HDAB
does not), carry the researcher role, name the data request of the `NodeRequest` and cover
this node's jurisdiction. Who the applicant is (`ApplicantId`) comes from this verified
permit, never from the gateway's word.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from connectors.errors import NodeRefusal
from schema.approval import APPROVAL_CLAIM, ROLES_CLAIM, ApplicantId, Approval, Role
from schema.codes import Jurisdiction
from schema.errors import ErrorCode, TesseraError
from schema.wire import NodeRequest
from trust.tokens import TokenVerifier


@dataclass(frozen=True, slots=True)
class VerifiedApproval:
    issuer: str
    subject: str
    approval: Approval

    @property
    def applicant(self) -> ApplicantId:
        """Who asks, as this permit names them: the key of what the node tells an applicant."""
        return ApplicantId.of(self.subject, self.approval)


def _invalid(message: str) -> NodeRefusal:
    return NodeRefusal(message, code=ErrorCode.APPROVAL_INVALID)


def _mismatch(message: str) -> NodeRefusal:
    return NodeRefusal(message, code=ErrorCode.APPROVAL_MISMATCH)


class ApprovalVerifier:
    def __init__(self, verifier: TokenVerifier | None, jurisdiction: Jurisdiction) -> None:
        self._verifier = verifier
        self._jurisdiction = jurisdiction

    @property
    def has_keys(self) -> bool:
        """Whether approvals can be checked now (an HDAB key is configured and loaded)."""
        if self._verifier is None:
            return False
        return all(i.keys.key_set() for i in self._verifier.issuers.values())

    def verify(self, token: str | None, request: NodeRequest) -> VerifiedApproval:
        if self._verifier is None:
            raise _invalid("this node has no HDAB key to verify approvals with")
        if not token:
            raise NodeRefusal("the approval token is missing", code=ErrorCode.APPROVAL_REQUIRED)
        try:
            claims = self._verifier.verify(token.strip())
        except TesseraError as e:
            raise _invalid(f"approval: {e.message}") from None
        roles = claims.get(ROLES_CLAIM)
        if not isinstance(roles, list) or Role.RESEARCHER.value not in roles:
            raise _invalid("approval: the token does not carry the researcher role")
        try:
            approval = Approval.model_validate(claims.get(APPROVAL_CLAIM))
        except ValidationError:
            raise _invalid("approval: the approval claim is missing or malformed") from None
        if approval.request_id != request.request_id:
            raise _mismatch("the request names another data request than the approval")
        if self._jurisdiction not in approval.jurisdictions:
            raise _mismatch(f"the approval does not cover {self._jurisdiction.value}")
        return VerifiedApproval(issuer=claims["iss"], subject=claims["sub"], approval=approval)
