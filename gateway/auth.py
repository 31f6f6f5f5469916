"""Researcher authentication: the bearer token on `/graphql`, from any issuer the gateway
trusts (an HDAB, or an identity provider whose tokens are never permits).

The token itself is verified by `trust.tokens` (issuer, keys, algorithm allow-list, `typ`,
required claims, bounded leeway), which gives every refusal its own stable TOKEN_* code; a
missing or non-Bearer header is UNAUTHENTICATED. Nothing from the token is echoed back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from schema.approval import APPROVAL_CLAIM, ROLES_CLAIM, Approval, Role
from schema.errors import ErrorCode, TesseraError
from trust.tokens import MAX_TOKEN_BYTES, TokenVerifier, TrustedIssuer

MAX_ROLES = 16


def unauthenticated(message: str, code: ErrorCode = ErrorCode.UNAUTHENTICATED) -> TesseraError:
    return TesseraError(message, code=code)


def forbidden(message: str, code: ErrorCode = ErrorCode.FORBIDDEN) -> TesseraError:
    return TesseraError(message, code=code)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: who they are (`subject`, as every permit must name them) and
    their roles. A bearer token that also carries an approval is a permit too
    (`gateway.permits`); `token` is then forwarded to the node of its HDAB."""

    issuer: str
    subject: str
    roles: frozenset[str]
    approval: Approval | None
    token: str

    def require_role(self, role: Role) -> None:
        if role.value not in self.roles:
            raise forbidden(f"the {role.value} role is required")


class Authenticator:
    def __init__(self, *, audience: str, issuers: Mapping[str, TrustedIssuer]) -> None:
        self._verifier = TokenVerifier(audience=audience, issuers=issuers.values())

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal behind an `Authorization` header value; UNAUTHENTICATED without a
        bearer token, a TOKEN_* code for a token that does not verify."""
        token = bearer_token(authorization)
        claims = self._verifier.verify(token)
        return Principal(
            issuer=claims["iss"],
            subject=claims["sub"],
            roles=_roles(claims.get(ROLES_CLAIM)),
            approval=_approval(claims.get(APPROVAL_CLAIM)),
            token=token,
        )


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise unauthenticated("a bearer token is required")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthenticated("the Authorization header must be 'Bearer <token>'")
    if len(token) > MAX_TOKEN_BYTES:
        raise unauthenticated("token is too large", ErrorCode.TOKEN_MALFORMED)
    return token


def _roles(value: object) -> frozenset[str]:
    if value is None:
        return frozenset()
    if (
        isinstance(value, list)
        and len(value) <= MAX_ROLES
        and all(isinstance(r, str) and len(r) <= 64 for r in value)
    ):
        return frozenset(value)
    raise unauthenticated(
        f"the {ROLES_CLAIM} claim must be a short list of strings", ErrorCode.TOKEN_INVALID_CLAIM
    )


def _approval(value: object) -> Approval | None:
    if value is None:
        return None
    try:
        return Approval.model_validate(value)
    except ValidationError:
        raise unauthenticated(
            f"the {APPROVAL_CLAIM} claim is malformed", ErrorCode.TOKEN_INVALID_CLAIM
        ) from None
