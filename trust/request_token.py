"""The tessera/1 request token: the gateway signs every node request with it, the node
verifies it, and both load its keys here (`schema.wire` names its claims and its type).

`Authorization: Bearer <JWT>` signed with EdDSA (Ed25519) by the gateway's signing key, whose
public half the node pins by `kid` (several are valid at once while a key is rotated); typed
`REQUEST_TOKEN_TYP`, issued by the gateway for one node (`iss`, `aud`), short-lived (`iat`,
`exp`), single use (`jti`, in the node's replay cache) and bound to the exact body bytes
(`bsh`). Each failure has its own stable code and a short message: a caller learns which check
failed, never anything about keys.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from schema.errors import ErrorCode, TesseraError
from schema.wire import BODY_HASH_CLAIM, REQUEST_TOKEN_MAX_LIFETIME_S, REQUEST_TOKEN_TYP, body_hash
from trust.keys import KeyMaterialError, KeySet, TrustedKey
from trust.keysource import KeySource, StaticKeys
from trust.replay import MemoryReplayCache, ReplayCache
from trust.tokens import numeric_claim

ALGORITHM: Final = "EdDSA"
# Long enough for a slow network hop, far shorter than what a node accepts.
LIFETIME_S: Final = 30
assert LIFETIME_S <= REQUEST_TOKEN_MAX_LIFETIME_S
LEEWAY_S: Final = 5.0
REQUIRED_CLAIMS: Final = ("iss", "aud", "iat", "exp", "jti", BODY_HASH_CLAIM)
MAX_JTI_LENGTH: Final = 128


class RequestRefused(TesseraError):
    """A request whose token does not verify; the code says which check failed."""

    code = ErrorCode.BAD_SIGNATURE


# -- keys ------------------------------------------------------------------------------------
def load_verifying_key(path: Path) -> Ed25519PublicKey:
    """A public half a node pins: an Ed25519 public key (PEM SubjectPublicKeyInfo). Raises
    `OSError` when the file cannot be read, `KeyMaterialError` when it holds no such key."""
    key = _parse(
        path,
        load_pem_public_key,
        "a PEM public key (name the public half, NAME.pub.pem, as `tessera keys generate` "
        "writes it)",
    )
    if not isinstance(key, Ed25519PublicKey):
        raise _not_ed25519()
    return key


def load_verifying_keys(paths: Mapping[str, Path]) -> dict[str, Ed25519PublicKey]:
    """The public halves a node pins, by kid; a `KeyMaterialError` names the kid and file."""
    keys = {}
    for kid, path in paths.items():
        try:
            keys[kid] = load_verifying_key(path)
        except KeyMaterialError as e:
            raise KeyMaterialError(f"{kid}={path}: {e}") from None
    return keys


def _parse(path: Path, parse: Callable[[bytes], object], pem: str) -> object:
    data = path.read_bytes()
    try:
        return parse(data)
    except (ValueError, TypeError):
        raise KeyMaterialError(f"not {pem}") from None


def _not_ed25519() -> KeyMaterialError:
    return KeyMaterialError(
        "not an Ed25519 key (node requests are EdDSA-signed: make one with `tessera keys generate`)"
    )


def pinned(keys: Mapping[str, Ed25519PublicKey]) -> StaticKeys:
    """Public halves pinned by kid, as a key source."""
    return StaticKeys(
        KeySet(tuple(TrustedKey(kid, key, frozenset({ALGORITHM})) for kid, key in keys.items()))
    )


# -- signing (the gateway) -------------------------------------------------------------------
class RequestSigner:
    def __init__(
        self,
        *,
        issuer: str,
        kid: str,
        key: Ed25519PrivateKey,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuer = issuer
        self._key = key
        self._headers = {"kid": kid, "typ": REQUEST_TOKEN_TYP}
        self._clock = clock

    def sign(self, body: bytes, *, audience: str) -> str:
        """The bearer token for sending `body` to the node whose id is `audience`."""
        issued = int(self._clock())
        claims = {
            "iss": self._issuer,
            "aud": audience,
            "iat": issued,
            "exp": issued + LIFETIME_S,
            "jti": uuid.uuid4().hex,
            BODY_HASH_CLAIM: body_hash(body),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers=self._headers)


# -- verifying (the node) --------------------------------------------------------------------
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
        keys: Mapping[str, Ed25519PublicKey] | KeySource,
        issuer: str,
        audience: str,
        replay_cache: ReplayCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = pinned(keys) if isinstance(keys, Mapping) else keys
        self._issuer = issuer
        self._audience = audience
        self._replay = replay_cache if replay_cache is not None else MemoryReplayCache()
        self._clock = clock

    @property
    def has_keys(self) -> bool:
        return bool(self._keys.key_set())

    async def verify(self, authorization: str | None, body: bytes) -> VerifiedRequest:
        token = _bearer(authorization)
        key, kid = self._key_for(token)
        claims = _decode(token, key, issuer=self._issuer, audience=self._audience)
        issued_at, expires_at = _number(claims, "iat"), _number(claims, "exp")
        if expires_at - issued_at > REQUEST_TOKEN_MAX_LIFETIME_S:
            raise RequestRefused("request token lives too long")
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise RequestRefused("request token has an invalid jti")
        since = self._replay.remembers_since
        if since is not None and issued_at < since:
            # The replay cache may have lost this token's id (see `trust.replay`).
            raise RequestRefused(
                "request token was issued before the node's machine started",
                code=ErrorCode.REQUEST_EXPIRED,
            )
        bsh = claims[BODY_HASH_CLAIM]
        if not isinstance(bsh, str) or not hmac.compare_digest(bsh, body_hash(body)):
            raise RequestRefused(
                "request body does not match its token", code=ErrorCode.BODY_MISMATCH
            )
        # Only a token valid in every other respect may take a place in the cache; it is
        # remembered for as long as it could still be accepted.
        ttl = max(expires_at + LEEWAY_S - self._clock(), 1.0)
        if not await self._replay.claim(f"{self._audience}:{jti}", ttl):
            raise RequestRefused("request token was already used", code=ErrorCode.REPLAYED_REQUEST)
        return VerifiedRequest(kid=kid, jti=jti, issued_at=issued_at, expires_at=expires_at)

    def _key_for(self, token: str) -> tuple[Ed25519PublicKey, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise RequestRefused("malformed request token") from None
        if header.get("alg") != ALGORITHM:
            raise RequestRefused("request token must be signed with EdDSA")
        if header.get("typ") != REQUEST_TOKEN_TYP:
            raise RequestRefused("request token has the wrong type")
        kid = header.get("kid")
        key = self._keys.key_set().find(kid, ALGORITHM) if isinstance(kid, str) else None
        if not isinstance(key, Ed25519PublicKey):
            self._keys.request_refresh()
            raise RequestRefused(
                "request token is signed by an unknown key", code=ErrorCode.UNKNOWN_KEY
            )
        assert isinstance(kid, str)
        return key, kid


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RequestRefused("missing bearer token")
    return token.strip()


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = numeric_claim(claims, name)
    if value is None:
        raise RequestRefused(f"request token claim {name} is not a number")
    return value


# pyjwt's exceptions, mapped once (most specific first: InvalidSignatureError is a
# DecodeError).
_REFUSALS: Final[tuple[tuple[type[jwt.PyJWTError], ErrorCode, str], ...]] = (
    (jwt.ExpiredSignatureError, ErrorCode.REQUEST_EXPIRED, "request token has expired"),
    (jwt.ImmatureSignatureError, ErrorCode.REQUEST_EXPIRED, "request token is not valid yet"),
    (jwt.InvalidAudienceError, ErrorCode.WRONG_NODE, "request token is for another node"),
    (jwt.InvalidIssuerError, ErrorCode.BAD_SIGNATURE, "request token has the wrong issuer"),
    (
        jwt.MissingRequiredClaimError,
        ErrorCode.BAD_SIGNATURE,
        "request token lacks a required claim",
    ),
    (jwt.exceptions.InvalidJTIError, ErrorCode.BAD_SIGNATURE, "request token has an invalid jti"),
    (jwt.InvalidSignatureError, ErrorCode.BAD_SIGNATURE, "request token signature is invalid"),
    (jwt.InvalidAlgorithmError, ErrorCode.BAD_SIGNATURE, "request token must be signed with EdDSA"),
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
        code, message = next(
            ((c, m) for t, c, m in _REFUSALS if isinstance(exc, t)),
            (ErrorCode.BAD_SIGNATURE, "invalid request token"),
        )
        raise RequestRefused(message, code=code) from None
    return claims
