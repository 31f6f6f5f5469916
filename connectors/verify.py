"""Verification of the gateway's request token (see `schema.wire`).

`Authorization: Bearer <JWT>` signed with EdDSA (Ed25519) by one of the pinned gateway keys
(named by `kid`), typed `REQUEST_TOKEN_TYP`, issued by the gateway for this node (`iss`,
`aud`), short-lived (`iat`, `exp`), single use (`jti`) and bound to the exact body bytes
(`bsh`). Every failure is one `BadSignature` with a short message: a caller learns which
check failed, never anything about keys.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from connectors.errors import BadSignature
from schema.wire import BODY_HASH_CLAIM, REQUEST_TOKEN_MAX_LIFETIME_S, REQUEST_TOKEN_TYP, body_hash

ALGORITHM: Final = "EdDSA"
LEEWAY_S: Final = 5.0
REQUIRED_CLAIMS: Final = ("iss", "aud", "iat", "exp", "jti", BODY_HASH_CLAIM)
MAX_JTI_LENGTH: Final = 128


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM SubjectPublicKeyInfo file."""
    key = load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path.name} does not hold an Ed25519 public key")
    return key


def load_gateway_keys(paths: Mapping[str, Path]) -> dict[str, Ed25519PublicKey]:
    return {kid: load_public_key(path) for kid, path in paths.items()}


class ReplayCache:
    """The `jti`s seen, each remembered until its token expires (plus leeway).

    In memory, so per process: enough for one connector process. Bounded: when full of
    live entries it refuses new tokens rather than forget one that could be replayed.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def claim(self, jti: str, expires_at: float) -> None:
        """Record `jti`; raise `BadSignature` if it was seen and has not yet expired."""
        now = self._clock()
        self._purge(now)
        if jti in self._expiry:
            raise BadSignature("request token was already used")
        if len(self._expiry) >= self._max_entries:
            raise BadSignature("too many requests in flight; retry shortly")
        self._expiry[jti] = expires_at + LEEWAY_S

    def _purge(self, now: float) -> None:
        # Insertion order is nearly expiry order (lifetimes are short and bounded), so
        # expired entries gather at the front; a full cache gets one complete sweep.
        while self._expiry:
            jti, expiry = next(iter(self._expiry.items()))
            if expiry > now:
                break
            del self._expiry[jti]
        if len(self._expiry) >= self._max_entries:
            for jti in [j for j, expiry in self._expiry.items() if expiry <= now]:
                del self._expiry[jti]


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    kid: str
    jti: str
    issued_at: float
    expires_at: float


class RequestVerifier:
    def __init__(
        self,
        *,
        keys: Mapping[str, Ed25519PublicKey],
        issuer: str,
        audience: str,
        replay_cache: ReplayCache | None = None,
    ) -> None:
        self._keys = dict(keys)
        self._issuer = issuer
        self._audience = audience
        self._replay = replay_cache if replay_cache is not None else ReplayCache()

    @property
    def has_keys(self) -> bool:
        return bool(self._keys)

    def verify(self, authorization: str | None, body: bytes) -> VerifiedRequest:
        token = _bearer(authorization)
        key, kid = self._key_for(token)
        claims = _decode(token, key, issuer=self._issuer, audience=self._audience)
        issued_at, expires_at = float(claims["iat"]), float(claims["exp"])
        if expires_at - issued_at > REQUEST_TOKEN_MAX_LIFETIME_S:
            raise BadSignature("request token lives too long")
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise BadSignature("request token has an invalid jti")
        bsh = claims[BODY_HASH_CLAIM]
        if not isinstance(bsh, str) or not hmac.compare_digest(bsh, body_hash(body)):
            raise BadSignature("request body does not match its token")
        # Only a token valid in every other respect may take a place in the cache.
        self._replay.claim(jti, expires_at)
        return VerifiedRequest(kid=kid, jti=jti, issued_at=issued_at, expires_at=expires_at)

    def _key_for(self, token: str) -> tuple[Ed25519PublicKey, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise BadSignature("malformed request token") from None
        if header.get("alg") != ALGORITHM:
            raise BadSignature("request token must be signed with EdDSA")
        if header.get("typ") != REQUEST_TOKEN_TYP:
            raise BadSignature("request token has the wrong type")
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in self._keys:
            raise BadSignature("request token is signed by an unknown key")
        return self._keys[kid], kid


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise BadSignature("missing bearer token")
    return token.strip()


# pyjwt's exceptions, mapped once to short messages (most specific first).
_MESSAGES: Final[tuple[tuple[type[jwt.PyJWTError], str], ...]] = (
    (jwt.ExpiredSignatureError, "request token has expired"),
    (jwt.ImmatureSignatureError, "request token is not valid yet"),
    (jwt.InvalidAudienceError, "request token is for another node"),
    (jwt.InvalidIssuerError, "request token has the wrong issuer"),
    (jwt.MissingRequiredClaimError, "request token lacks a required claim"),
    (jwt.exceptions.InvalidJTIError, "request token has an invalid jti"),
    (jwt.InvalidSignatureError, "request token signature is invalid"),
    (jwt.InvalidAlgorithmError, "request token must be signed with EdDSA"),
)


def _decode(token: str, key: Ed25519PublicKey, *, issuer: str, audience: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_S,
            options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
        )
    except jwt.PyJWTError as exc:
        message = next((m for t, m in _MESSAGES if isinstance(exc, t)), "invalid request token")
        raise BadSignature(message) from None
    return claims
