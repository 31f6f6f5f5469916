"""Permits: one per jurisdiction, each signed by that jurisdiction's HDAB.

A multi-country application (EHDS Art. 67-68) leads each HDAB concerned to decide on, and
issue a permit for, its own country's data. The researcher authenticates with a bearer token
(from any issuer the gateway trusts) and presents the permits in `X-Tessera-Permit` headers,
one compact JWT each, exactly as the HDABs signed them; a bearer token that carries an
approval counts as a permit too. Each node later gets only its own HDAB's permit, byte for
byte, and verifies it itself.

`present` verifies what was sent. A permit from an issuer the gateway does not trust at all,
or one whose issuer cannot even be read, fails the whole request with its TOKEN_* code.
Any other permit that cannot be used (it failed verification, names another researcher,
lacks the researcher role or an approval) is kept with the reason, and refuses only the
jurisdictions its issuer may decide, unless a good permit decides them. `candidates` then
lists, for one jurisdiction, the permits that may decide it: from an issuer allowed for it
(`Federation.issues_permits_for`), covering it, the ones naming the question's data request
(or its application) first; or, when there is none, why that jurisdiction is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from pydantic import ValidationError

from gateway.auth import Principal
from policies.checks import ART_69
from policies.reasons import PolicyReason, RuleId
from schema.approval import APPROVAL_CLAIM, ROLES_CLAIM, ApplicantId, Approval, Role
from schema.audit.entry import PermitRecord
from schema.codes import Jurisdiction
from schema.errors import ErrorCode, TesseraError
from schema.wire import MAX_PERMITS, PERMIT_HEADER
from trust.tokens import MAX_TOKEN_BYTES, TokenVerifier, unverified_issuer

# Room for a token's characters only: base64url and the two dots of a compact JWS.
_TOKEN_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")

IssuerAllowed = Callable[[str, Jurisdiction], bool]


@dataclass(frozen=True, slots=True)
class Permit:
    """A verified permit: who issued it, for whom, and the approval it carries. `token` is
    the JWT as the HDAB signed it, forwarded to that HDAB's node only."""

    issuer: str
    subject: str
    approval: Approval
    token: str

    @property
    def applicant(self) -> ApplicantId:
        return ApplicantId.of(self.subject, self.approval)

    def names(self, request: str) -> bool:
        """Whether a question under `request` is asked under this permit: its data request or
        the multi-country application it belongs to."""
        return request in (self.approval.request_id, self.approval.application_id)

    def record(self, jurisdiction: Jurisdiction) -> PermitRecord:
        return PermitRecord(
            jurisdiction=jurisdiction,
            issuer=self.issuer,
            request_id=self.approval.request_id,
            application_id=self.approval.application_id,
            organisation=self.approval.applicant,
        )


@dataclass(frozen=True, slots=True)
class Unusable:
    """A permit from a trusted issuer that cannot decide anything, and why (a sentence that
    quotes nothing from the token but the issuer, which is the gateway's own configuration)."""

    issuer: str
    rule: RuleId
    message: str


@dataclass(frozen=True, slots=True)
class Presented:
    """What the researcher presented: the permits that verified and the ones that cannot be
    used. Each good permit appears once, however often it was sent."""

    permits: tuple[Permit, ...] = ()
    unusable: tuple[Unusable, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.permits or self.unusable)

    def names(self, request: str) -> bool:
        return any(permit.names(request) for permit in self.permits)


def _malformed(message: str) -> TesseraError:
    return TesseraError(message, code=ErrorCode.TOKEN_MALFORMED)


def permit_tokens(header_values: Sequence[str]) -> list[str]:
    """The permits in the `X-Tessera-Permit` header lines as received: one per line, or
    several separated by commas (as HTTP lets a proxy fold repeated lines). Empty items are
    skipped; too many permits, an oversized one or one that is not a compact JWT fail the
    request, which then names the header but never the value."""
    tokens: list[str] = []
    for line in header_values:
        for item in line.split(","):
            token = item.strip()
            if not token:
                continue
            if len(tokens) == MAX_PERMITS:
                raise TesseraError(
                    f"at most {MAX_PERMITS} permits ({PERMIT_HEADER}) may be sent at once",
                    code=ErrorCode.TOO_MANY_PERMITS,
                )
            if len(token) > MAX_TOKEN_BYTES:
                raise _malformed(f"a permit ({PERMIT_HEADER}) is too large")
            if token.count(".") != 2 or not set(token) <= _TOKEN_CHARS:
                raise _malformed(f"a permit ({PERMIT_HEADER}) is not a compact JWT")
            tokens.append(token)
    return tokens


class PermitVerifier:
    """Verifies permits with the gateway's issuers (`verifier`: the same issuers, audience
    and checks as the bearer token's). Which jurisdictions a permit may decide is not its
    concern: `candidates` asks the federation."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    def present(self, principal: Principal, tokens: Sequence[str]) -> Presented:
        permits: dict[str, Permit] = {}
        unusable: list[Unusable] = []
        if principal.approval is not None:
            permits[principal.token] = Permit(
                principal.issuer, principal.subject, principal.approval, principal.token
            )
        for token in tokens:
            if token in permits:
                continue
            found = self._one(principal, token)
            if isinstance(found, Permit):
                permits[token] = found
            else:
                unusable.append(found)
        return Presented(tuple(permits.values()), tuple(unusable))

    def _one(self, principal: Principal, token: str) -> Permit | Unusable:
        try:
            claims = self._verifier.verify(token)
        except TesseraError as error:
            issuer = unverified_issuer(token)
            if issuer is None or issuer not in self._verifier.issuers:
                # Nobody the gateway trusts to say whose it is: the request as a whole fails.
                raise TesseraError(
                    f"a permit ({PERMIT_HEADER}): {error.message}", code=error.code
                ) from None
            expired = error.code is ErrorCode.TOKEN_EXPIRED
            return Unusable(
                issuer,
                RuleId.APPROVAL_EXPIRED if expired else RuleId.PERMIT_INVALID,
                f"the permit of {issuer} does not verify: {error.message}",
            )
        issuer, subject = claims["iss"], claims["sub"]
        roles = claims.get(ROLES_CLAIM)
        if subject != principal.subject:
            return Unusable(
                issuer,
                RuleId.PERMIT_INVALID,
                f"the permit of {issuer} is for another researcher than the one authenticated",
            )
        if not isinstance(roles, list) or Role.RESEARCHER.value not in roles:
            return Unusable(
                issuer, RuleId.PERMIT_INVALID, f"the permit of {issuer} lacks the researcher role"
            )
        try:
            approval = Approval.model_validate(claims.get(APPROVAL_CLAIM))
        except ValidationError:
            return Unusable(
                issuer,
                RuleId.PERMIT_INVALID,
                f"the permit of {issuer} carries no well-formed {APPROVAL_CLAIM} claim",
            )
        return Permit(issuer, subject, approval, token)


@dataclass(frozen=True, slots=True)
class Candidates:
    """The permits that may decide one jurisdiction's part, best first; when there are none,
    the reasons it is refused."""

    jurisdiction: Jurisdiction
    permits: tuple[Permit, ...] = ()
    reasons: tuple[PolicyReason, ...] = ()


def candidates(
    presented: Presented, jurisdiction: Jurisdiction, request: str, allowed: IssuerAllowed
) -> Candidates:
    usable = [p for p in presented.permits if allowed(p.issuer, jurisdiction)]
    covering = [p for p in usable if jurisdiction in p.approval.jurisdictions]
    if covering:
        # A permit naming the question's request first; one that does not is still the
        # jurisdiction's permit, and the policy then says REQUEST_MISMATCH.
        ranked = sorted(covering, key=lambda p: not p.names(request))
        return Candidates(jurisdiction, permits=tuple(ranked))
    code = jurisdiction.value
    reasons = [
        PolicyReason.of(u.rule, jurisdiction, u.message, ART_69)
        for u in presented.unusable
        if allowed(u.issuer, jurisdiction)
    ]
    if not reasons and usable:
        reasons.append(
            PolicyReason.of(
                RuleId.APPROVAL_SCOPE, jurisdiction, f"the permits do not cover {code}", ART_69
            )
        )
    if not reasons:
        reasons.append(
            PolicyReason.of(
                RuleId.PERMIT_MISSING,
                jurisdiction,
                f"no permit from an HDAB that decides for {code} was presented",
                ART_69,
            )
        )
    return Candidates(jurisdiction, reasons=tuple(dict.fromkeys(reasons)))
