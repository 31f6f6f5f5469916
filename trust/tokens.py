"""Verifying tokens from trusted issuers (the HDABs' researcher tokens).

Each issuer is trusted with its own keys, its own algorithm allow-list (asymmetric only), a
bounded clock leeway, a longest lifetime and the token types (`typ`) it issues. Every pyjwt
exception is mapped here, once, to a stable code with a short message that is safe to show:
nothing from the token, the keys or pyjwt's own message travels on.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt

from schema.errors import ErrorCode, TesseraError
from trust.keys import ALGORITHMS, MAX_KID_LENGTH, Algorithm, PublicKey
from trust.keysource import KeySource

REQUIRED_CLAIMS: Final = ("exp", "iat", "iss", "aud", "sub")
DEFAULT_LEEWAY_S: Final = 30
MAX_LEEWAY_S: Final = 300
DEFAULT_MAX_LIFETIME_S: Final = 24 * 3600
DEFAULT_TYPES: Final = frozenset({"jwt", "at+jwt"})
# A researcher token is a few hundred bytes to a few KiB; anything far larger is not worth
# parsing (and HTTP servers refuse header lines over 8 KiB before we see them).
MAX_TOKEN_BYTES: Final = 6144
MAX_SUBJECT_LENGTH: Final = 256
# Verified tokens remembered (a researcher sends the same token with every query).
VERIFIED_CACHE_SIZE: Final = 4096
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_PRINTABLE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")

# Most specific first: several pyjwt errors subclass others (InvalidSignatureError is a
# DecodeError).
_CODES: Final[tuple[tuple[type[jwt.PyJWTError], ErrorCode, str], ...]] = (
    (jwt.ExpiredSignatureError, ErrorCode.TOKEN_EXPIRED, "token has expired"),
    (jwt.ImmatureSignatureError, ErrorCode.TOKEN_NOT_YET_VALID, "token is not valid yet"),
    (jwt.InvalidAudienceError, ErrorCode.TOKEN_WRONG_AUDIENCE, "token is not meant for us"),
    (jwt.InvalidIssuerError, ErrorCode.TOKEN_UNTRUSTED_ISSUER, "token issuer is not trusted"),
    (jwt.MissingRequiredClaimError, ErrorCode.TOKEN_MISSING_CLAIM, "token lacks a claim"),
    (jwt.InvalidIssuedAtError, ErrorCode.TOKEN_INVALID_CLAIM, "token issue time is invalid"),
    (jwt.exceptions.InvalidSubjectError, ErrorCode.TOKEN_INVALID_CLAIM, "token subject is invalid"),
    (jwt.exceptions.InvalidJTIError, ErrorCode.TOKEN_INVALID_CLAIM, "token id is invalid"),
    (
        jwt.InvalidAlgorithmError,
        ErrorCode.TOKEN_ALGORITHM_NOT_ALLOWED,
        "token algorithm is not allowed",
    ),
    (jwt.InvalidSignatureError, ErrorCode.TOKEN_BAD_SIGNATURE, "token signature does not verify"),
    (jwt.InvalidKeyError, ErrorCode.TOKEN_UNKNOWN_KEY, "token key does not fit its algorithm"),
    (jwt.DecodeError, ErrorCode.TOKEN_MALFORMED, "token is malformed"),
)


def token_error(code: ErrorCode, message: str) -> TesseraError:
    return TesseraError(message, code=code)


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    iss: str
    keys: KeySource
    algorithms: tuple[Algorithm, ...]
    leeway_s: int = DEFAULT_LEEWAY_S
    max_lifetime_s: int = DEFAULT_MAX_LIFETIME_S
    # Media types as in the `typ` header, compared without case and without "application/".
    types: frozenset[str] = DEFAULT_TYPES

    def __post_init__(self) -> None:
        if not self.algorithms or not set(self.algorithms) <= set(ALGORITHMS):
            raise ValueError(f"algorithms must be some of {', '.join(ALGORITHMS)}")
        if not 0 <= self.leeway_s <= MAX_LEEWAY_S:
            raise ValueError(f"leeway must lie between 0 and {MAX_LEEWAY_S} seconds")
        if self.max_lifetime_s <= 0:
            raise ValueError("the longest lifetime must be positive")
        if not self.types:
            raise ValueError("at least one token type must be accepted")
        object.__setattr__(self, "types", frozenset(_media_type(t) for t in self.types))


def _media_type(typ: str) -> str:
    typ = typ.strip().lower()
    return typ.removeprefix("application/")


@dataclass(frozen=True, slots=True)
class _Verified:
    claims: dict[str, Any]
    issuer: TrustedIssuer
    kid: str | None
    alg: str
    key: PublicKey
    exp: float


class TokenVerifier:
    """Verifies a compact JWS from one of `issuers` meant for `audience`.

    A token that verified is remembered (the last `cache_size`): sent again, only what can
    have changed since is checked, as `jwt.decode` checks it: that it has not expired, and
    that its issuer still trusts the key it was signed with (a key rotated out, or a key set
    gone stale, sends it through full verification again, which then fails). Everything
    else — signature, audience, issuer, types, lifetime, subject, not-before — cannot change
    for the same token text. That saves some 0.4 ms per query, most of it pyjwt's base64
    checks."""

    def __init__(
        self,
        *,
        audience: str,
        issuers: Iterable[TrustedIssuer],
        cache_size: int = VERIFIED_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.audience = audience
        self.issuers = {issuer.iss: issuer for issuer in issuers}
        self._cache: OrderedDict[str, _Verified] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock

    def verify(self, token: str) -> dict[str, Any]:
        """The verified claims, or a `TesseraError` with a TOKEN_* code."""
        known = self._cache.get(token)
        if known is not None:
            if known.issuer.keys.key_set().find(known.kid, known.alg) is known.key:
                if known.exp <= self._clock() - known.issuer.leeway_s:
                    del self._cache[token]
                    raise token_error(ErrorCode.TOKEN_EXPIRED, "token has expired")
                self._cache.move_to_end(token)
                return dict(known.claims)
            del self._cache[token]
        if len(token) > MAX_TOKEN_BYTES:
            raise token_error(ErrorCode.TOKEN_MALFORMED, "token is too large")
        if not _COMPACT_JWS.fullmatch(token):
            raise token_error(ErrorCode.TOKEN_MALFORMED, "token is malformed")
        try:
            verified = self._verify(token)
        except jwt.PyJWTError as e:
            code, message = next(
                ((c, m) for t, c, m in _CODES if isinstance(e, t)),
                (ErrorCode.TOKEN_MALFORMED, "token is invalid"),
            )
            raise token_error(code, message) from None
        if self._cache_size > 0:
            self._cache[token] = verified
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return dict(verified.claims)

    def _verify(self, token: str) -> _Verified:
        header = jwt.get_unverified_header(token)
        # The issuer picks the keys and the algorithms, so it is read before verifying;
        # nothing else from the unverified token is trusted.
        unverified = jwt.decode(token, options={"verify_signature": False})
        iss = unverified.get("iss")
        if iss is None:
            raise token_error(ErrorCode.TOKEN_MISSING_CLAIM, "token lacks a claim")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise token_error(ErrorCode.TOKEN_UNTRUSTED_ISSUER, "token issuer is not trusted")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in issuer.algorithms:
            raise token_error(
                ErrorCode.TOKEN_ALGORITHM_NOT_ALLOWED, "token algorithm is not allowed"
            )
        typ = header.get("typ")
        if not isinstance(typ, str) or _media_type(typ) not in issuer.types:
            raise token_error(ErrorCode.TOKEN_WRONG_TYPE, "token type is not accepted")
        if "crit" in header:
            raise token_error(ErrorCode.TOKEN_MALFORMED, "token has unsupported critical headers")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH):
            raise token_error(ErrorCode.TOKEN_MALFORMED, "token key id is malformed")
        key = issuer.keys.key_set().find(kid, alg)
        if key is None:
            issuer.keys.request_refresh()
            raise token_error(ErrorCode.TOKEN_UNKNOWN_KEY, "token is signed by an unknown key")
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=self.audience,
            issuer=issuer.iss,
            leeway=issuer.leeway_s,
            options={"require": list(REQUIRED_CLAIMS), "enforce_minimum_key_length": True},
        )
        if _number(claims, "exp") - _number(claims, "iat") > issuer.max_lifetime_s:
            raise token_error(
                ErrorCode.TOKEN_INVALID_CLAIM, "token lives longer than its issuer allows"
            )
        subject = claims["sub"]
        if len(subject) > MAX_SUBJECT_LENGTH or not _PRINTABLE.fullmatch(subject):
            raise token_error(ErrorCode.TOKEN_INVALID_CLAIM, "token subject is invalid")
        exp = _number(claims, "exp")
        return _Verified(claims=claims, issuer=issuer, kid=kid, alg=alg, key=key, exp=exp)


def unverified_issuer(token: str) -> str | None:
    """The `iss` a token claims, without verifying anything: to say whose token failed to
    verify, never to trust it. None when it names none or is not a compact JWS."""
    if len(token) > MAX_TOKEN_BYTES or not _COMPACT_JWS.fullmatch(token):
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    iss = claims.get("iss")
    return iss if isinstance(iss, str) and 0 < len(iss) <= MAX_SUBJECT_LENGTH else None


def numeric_claim(claims: Mapping[str, Any], name: str) -> float | None:
    """A claim that must be a JSON number (`iat`, `exp`), or None when it is something else:
    pyjwt accepts anything int() accepts, numeric strings included."""
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _number(claims: dict[str, Any], name: str) -> float:
    value = numeric_claim(claims, name)
    if value is None:
        raise token_error(ErrorCode.TOKEN_INVALID_CLAIM, f"token claim {name} is not a number")
    return value
