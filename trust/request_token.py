"""The tessera/1 request token: the gateway signs every node request with it, the node
verifies it, and both load its keys here (`schema.wire` names its claims and its type).

`Authorization: Bearer <JWT>` signed with EdDSA (Ed25519) by the gateway's signing key, whose
public half the node pins by `kid` (several are valid at once while a key is rotated); typed
`REQUEST_TOKEN_TYP`, issued by the gateway for one node (`iss`, `aud`), short-lived (`iat`,
`exp`), single use (`jti`, in the node's replay cache) and bound to the exact body bytes
(`bsh`). Each failure has its own stable code and a short message: a caller learns which check
failed, never anything about keys.

A question asked of several nodes may instead carry one token for all of them (typed
`QUESTION_TOKEN_TYP`, `sign_question`): `aud` lists the nodes, `bsm` maps each node id to
the HMAC-SHA256 of that node's body under a random salt only that node is sent
(`BODY_SALT_HEADER`), and the node remembers the `jti` under its own id, so the token is used
at most once per node. Why that is as safe as a token per node is argued in
docs/request-tokens.md. A node accepts both types; the gateway signs one per question when it
asks several nodes at once (`gateway.question_token`).

Tokens are encoded here as compact JWS with `cryptography` directly (pyjwt's encoder costs
more than the Ed25519 signature); they stay standard JWTs, and nodes verify them with pyjwt.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from schema.errors import ErrorCode, TesseraError
from schema.wire import (
    BODY_HASH_CLAIM,
    BODY_HASHES_CLAIM,
    BODY_SALT_BYTES,
    QUESTION_TOKEN_MAX_NODES,
    QUESTION_TOKEN_TYP,
    REQUEST_TOKEN_MAX_LIFETIME_S,
    REQUEST_TOKEN_TYP,
    body_hash,
    salted_body_hash,
)
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
QUESTION_REQUIRED_CLAIMS: Final = ("iss", "aud", "iat", "exp", "jti", BODY_HASHES_CLAIM)
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
@dataclass(frozen=True, slots=True)
class QuestionCredential:
    """What one node's request carries under a question token: the `Authorization` value
    (the same for every node of its group) and the node's own salt (`BODY_SALT_HEADER`)."""

    authorization: str
    salt: str


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
        self._request_header = _segment({"alg": ALGORITHM, "kid": kid, "typ": REQUEST_TOKEN_TYP})
        self._question_header = _segment({"alg": ALGORITHM, "kid": kid, "typ": QUESTION_TOKEN_TYP})
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
        return self._jws(self._request_header, claims)

    def sign_question(self, bodies: Mapping[str, bytes]) -> dict[str, QuestionCredential]:
        """One question token for sending each node (by id) its body in `bodies`, in groups
        of at most `QUESTION_TOKEN_MAX_NODES` nodes, one token each."""
        credentials: dict[str, QuestionCredential] = {}
        ids = list(bodies)
        for start in range(0, len(ids), QUESTION_TOKEN_MAX_NODES):
            group = ids[start : start + QUESTION_TOKEN_MAX_NODES]
            salts = {node: os.urandom(BODY_SALT_BYTES) for node in group}
            issued = int(self._clock())
            claims = {
                "iss": self._issuer,
                "aud": group,
                "iat": issued,
                "exp": issued + LIFETIME_S,
                "jti": uuid.uuid4().hex,
                BODY_HASHES_CLAIM: {n: salted_body_hash(salts[n], bodies[n]) for n in group},
            }
            authorization = f"Bearer {self._jws(self._question_header, claims)}"
            for node in group:
                credentials[node] = QuestionCredential(authorization, _b64(salts[node]).decode())
        return credentials

    def _jws(self, header: bytes, claims: Mapping[str, Any]) -> str:
        signing_input = header + b"." + _segment(claims)
        return (signing_input + b"." + _b64(self._key.sign(signing_input))).decode("ascii")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _segment(value: Mapping[str, Any]) -> bytes:
    return _b64(orjson.dumps(value))


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

    async def verify(
        self, authorization: str | None, body: bytes, *, salt: str | None = None
    ) -> VerifiedRequest:
        """The request's token, verified against `body`; `salt` is the request's
        `BODY_SALT_HEADER`, which only a question token uses."""
        token = _bearer(authorization)
        header, key, kid, question = self._key_for(token)
        claims = _decode(
            token,
            key,
            header,
            issuer=self._issuer,
            audience=self._audience,
            required=QUESTION_REQUIRED_CLAIMS if question else REQUIRED_CLAIMS,
        )
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
        if question:
            hashes = _body_hashes(claims)
            bsh, expected = hashes[self._audience], salted_body_hash(_salt(salt), body)
            if not hmac.compare_digest(bsh, expected) and expected in hashes.values():
                # Another node's request, sent here (a wrong URL, or that node forwarding it).
                raise RequestRefused("request token is for another node", code=ErrorCode.WRONG_NODE)
        else:
            bsh, expected = claims[BODY_HASH_CLAIM], body_hash(body)
        if not isinstance(bsh, str) or not hmac.compare_digest(bsh, expected):
            raise RequestRefused(
                "request body does not match its token", code=ErrorCode.BODY_MISMATCH
            )
        # Only a token valid in every other respect may take a place in the cache (a node
        # holding another's question token cannot spend that node's use of it); it is
        # remembered for as long as it could still be accepted, under this node's id, so a
        # question token is used once per node it names.
        ttl = max(expires_at + LEEWAY_S - self._clock(), 1.0)
        if not await self._replay.claim(f"{self._audience}:{jti}", ttl):
            raise RequestRefused("request token was already used", code=ErrorCode.REPLAYED_REQUEST)
        return VerifiedRequest(kid=kid, jti=jti, issued_at=issued_at, expires_at=expires_at)

    def _key_for(self, token: str) -> tuple[dict[str, Any], Ed25519PublicKey, str, bool]:
        """The header, the key it names, its kid, and whether it is a question token's."""
        header = _unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise RequestRefused("request token must be signed with EdDSA")
        typ = header.get("typ")
        if typ not in (REQUEST_TOKEN_TYP, QUESTION_TOKEN_TYP):
            raise RequestRefused("request token has the wrong type")
        kid = header.get("kid")
        key = self._keys.key_set().find(kid, ALGORITHM) if isinstance(kid, str) else None
        if not isinstance(key, Ed25519PublicKey):
            self._keys.request_refresh()
            raise RequestRefused(
                "request token is signed by an unknown key", code=ErrorCode.UNKNOWN_KEY
            )
        assert isinstance(kid, str)
        return header, key, kid, typ == QUESTION_TOKEN_TYP


_SEGMENT: Final = re.compile(r"[A-Za-z0-9_-]+")


def _unverified_header(token: str) -> dict[str, Any]:
    """The header that picks the key. Not `jwt.get_unverified_header`: pyjwt checks the
    whole token's alphabet a character at a time, and does so again when it verifies the
    token, which costs more than the signature once a question token lists many nodes. The
    header pyjwt reads when it verifies must be this one (`_decode`)."""
    segment, dot, _ = token.partition(".")
    if not dot or _SEGMENT.fullmatch(segment) is None:
        raise RequestRefused("malformed request token")
    try:
        header = orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        raise RequestRefused("malformed request token") from None
    if not isinstance(header, dict):
        raise RequestRefused("malformed request token")
    return header


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RequestRefused("missing bearer token")
    return token.strip()


def _body_hashes(claims: Mapping[str, Any]) -> dict[str, str]:
    """A question token's `bsm`, once it and `aud` are seen to name the same nodes, at most
    `QUESTION_TOKEN_MAX_NODES`, each once, each with a string (pyjwt checked that this node
    is among them)."""
    aud, hashes = claims["aud"], claims[BODY_HASHES_CLAIM]
    if (
        not isinstance(aud, list)
        or not 0 < len(aud) <= QUESTION_TOKEN_MAX_NODES
        or len(set(aud)) != len(aud)
    ):
        raise RequestRefused("question token must list each of its nodes once in aud")
    if (
        not isinstance(hashes, dict)
        or set(hashes) != set(aud)
        or not all(isinstance(h, str) for h in hashes.values())
    ):
        raise RequestRefused(f"question token's {BODY_HASHES_CLAIM} must name the nodes of aud")
    return hashes


def _salt(value: str | None) -> bytes:
    try:
        salt = base64.urlsafe_b64decode(value + "==") if value is not None else b""
    except (binascii.Error, ValueError):
        salt = b""
    if len(salt) != BODY_SALT_BYTES:
        raise RequestRefused(
            "request body salt is missing or malformed", code=ErrorCode.BODY_MISMATCH
        )
    return salt


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


def _decode(
    token: str,
    key: Ed25519PublicKey,
    header: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    required: tuple[str, ...],
) -> dict[str, Any]:
    try:
        decoded = jwt.decode_complete(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_S,
            # A node's own token names it alone; a question token lists its nodes.
            options={"require": list(required), "strict_aud": required is REQUIRED_CLAIMS},
        )
    except jwt.PyJWTError as exc:
        code, message = next(
            ((c, m) for t, c, m in _REFUSALS if isinstance(exc, t)),
            (ErrorCode.BAD_SIGNATURE, "invalid request token"),
        )
        raise RequestRefused(message, code=code) from None
    if decoded["header"] != header:
        raise RequestRefused("malformed request token")
    claims: dict[str, Any] = decoded["payload"]
    return claims
