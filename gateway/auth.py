"""Researcher authentication: the HDAB-issued bearer token on `/graphql`.

Every pyjwt exception is mapped here, once, to `UNAUTHENTICATED` with a short message that is
safe to show; nothing from the token is echoed back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
from pydantic import ValidationError

from gateway.federation import Issuer
from schema.approval import APPROVAL_CLAIM, ROLES_CLAIM, Approval, Role
from schema.errors import ErrorCode, TesseraError

# Clock skew tolerated between the HDAB and the gateway.
LEEWAY_S: Final = 30
REQUIRED_CLAIMS: Final = ("exp", "iat", "iss", "aud", "sub")
# A researcher token is a few hundred bytes; anything far larger is not worth parsing.
MAX_TOKEN_BYTES: Final = 8192

_MESSAGES: Final[tuple[tuple[type[jwt.PyJWTError], str], ...]] = (
    (jwt.ExpiredSignatureError, "token has expired"),
    (jwt.ImmatureSignatureError, "token is not valid yet"),
    (jwt.InvalidAudienceError, "token is not meant for this gateway"),
    (jwt.InvalidIssuerError, "token issuer is not trusted"),
    (jwt.InvalidAlgorithmError, "token algorithm is not allowed"),
    (jwt.InvalidSignatureError, "token signature does not verify"),
    (jwt.MissingRequiredClaimError, "token lacks a required claim"),
    (jwt.InvalidIssuedAtError, "token issue time is invalid"),
    (jwt.DecodeError, "token is malformed"),
)


def unauthenticated(message: str) -> TesseraError:
    return TesseraError(message, code=ErrorCode.UNAUTHENTICATED)


def forbidden(message: str, code: ErrorCode = ErrorCode.FORBIDDEN) -> TesseraError:
    return TesseraError(message, code=code)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated researcher. `token` is the raw JWT, forwarded to the nodes so that each
    can check the approval itself."""

    issuer: str
    subject: str
    roles: frozenset[str]
    approval: Approval | None
    token: str

    def require_role(self, role: Role) -> None:
        if role.value not in self.roles:
            raise forbidden(f"the {role.value} role is required")

    def require_approval(self) -> Approval:
        if self.approval is None:
            raise forbidden("the token carries no approved data request")
        return self.approval


class Authenticator:
    def __init__(self, *, audience: str, issuers: Mapping[str, Issuer]) -> None:
        self._audience = audience
        self._issuers = dict(issuers)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal behind an `Authorization` header value, or UNAUTHENTICATED."""
        token = bearer_token(authorization)
        try:
            claims = self._verify(token)
        except jwt.PyJWTError as e:
            raise unauthenticated(_message(e)) from None
        return Principal(
            issuer=claims["iss"],
            subject=claims["sub"],
            roles=_roles(claims.get(ROLES_CLAIM)),
            approval=_approval(claims.get(APPROVAL_CLAIM)),
            token=token,
        )

    def _verify(self, token: str) -> dict[str, Any]:
        # The issuer picks the key and the algorithms, so read it before verifying; nothing
        # else from the unverified token is trusted.
        unverified = jwt.decode(token, options={"verify_signature": False})
        iss = unverified.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise jwt.InvalidIssuerError
        claims: dict[str, Any] = jwt.decode(
            token,
            issuer.key,
            algorithms=list(issuer.algorithms),
            audience=self._audience,
            issuer=issuer.iss,
            leeway=LEEWAY_S,
            options={"require": list(REQUIRED_CLAIMS), "enforce_minimum_key_length": True},
        )
        return claims


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise unauthenticated("a bearer token is required")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthenticated("the Authorization header must be 'Bearer <token>'")
    if len(token) > MAX_TOKEN_BYTES:
        raise unauthenticated("token is too large")
    return token


def _message(error: jwt.PyJWTError) -> str:
    for kind, message in _MESSAGES:
        if isinstance(error, kind):
            return message
    return "token is invalid"


def _roles(value: object) -> frozenset[str]:
    if isinstance(value, list) and all(isinstance(r, str) for r in value):
        return frozenset(value)
    if value is None:
        return frozenset()
    raise unauthenticated(f"the {ROLES_CLAIM} claim must be a list of strings")


def _approval(value: object) -> Approval | None:
    if value is None:
        return None
    try:
        return Approval.model_validate(value)
    except ValidationError:
        raise unauthenticated(f"the {APPROVAL_CLAIM} claim is malformed") from None
