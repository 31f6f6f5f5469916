"""Public keys and JSON Web Key Sets (RFC 7517).

Only asymmetric signature keys are ever trusted: a shared secret (`kty: oct`, HS*) would let
anyone holding the verification key mint tokens. A key set that carries private key material
is refused whole, since whoever published it has leaked a signing key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

# Asymmetric only; "none" and HS* can never be configured.
Algorithm = Literal["EdDSA", "ES256", "RS256", "PS256"]
ALGORITHMS: Final[tuple[Algorithm, ...]] = get_args(Algorithm)
PublicKey = Ed25519PublicKey | Ed448PublicKey | EllipticCurvePublicKey | RSAPublicKey

MIN_RSA_BITS: Final = 2048
MAX_JWKS_BYTES: Final = 64 * 1024
MAX_JWKS_KEYS: Final = 32
MAX_KID_LENGTH: Final = 128
# JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_DEFAULT_ALGORITHM: Final[dict[str, Algorithm]] = {"OKP": "EdDSA", "EC": "ES256", "RSA": "RS256"}


class KeyMaterialError(ValueError):
    """A key or key set is unusable; the message says why, never the key."""


def fits(key: object, algorithm: str) -> bool:
    """Whether `key` is a public key that `algorithm` verifies with."""
    match algorithm:
        case "EdDSA":
            return isinstance(key, Ed25519PublicKey | Ed448PublicKey)
        case "ES256":
            return isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1)
        case "RS256" | "PS256":
            return isinstance(key, RSAPublicKey) and key.key_size >= MIN_RSA_BITS
    return False


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """One verification key: its `kid` (None for a bare PEM key) and the algorithms it may
    verify (the configured ones that fit the key, narrowed by the JWK's own `alg`)."""

    kid: str | None
    key: PublicKey
    algorithms: frozenset[Algorithm]


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: tuple[TrustedKey, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keys)

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(k.kid for k in self.keys if k.kid is not None)

    def find(self, kid: str | None, algorithm: str) -> PublicKey | None:
        """The key a token with this `kid` and `alg` must verify against, or None. Without a
        `kid`, only an unambiguous set (one key for the algorithm) answers."""
        usable = [k for k in self.keys if algorithm in k.algorithms]
        if kid is not None:
            return next((k.key for k in usable if k.kid == kid), None)
        return usable[0].key if len(usable) == 1 else None


def _algorithms_for(key: object, allowed: Iterable[Algorithm]) -> frozenset[Algorithm]:
    return frozenset(a for a in allowed if fits(key, a))


def pem_public_key(
    data: bytes, allowed: Sequence[Algorithm], *, kid: str | None = None
) -> TrustedKey:
    """A PEM SubjectPublicKeyInfo key that every algorithm in `allowed` can verify with."""
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError):
        raise KeyMaterialError("not a PEM SubjectPublicKeyInfo public key") from None
    for algorithm in allowed:
        if not fits(key, algorithm):
            raise KeyMaterialError(f"not a key for {algorithm}")
    assert isinstance(key, PublicKey)  # fits() accepted it
    return TrustedKey(kid=kid, key=key, algorithms=frozenset(allowed))


def parse_jwks(data: bytes | str, allowed: Sequence[Algorithm]) -> KeySet:
    """The signature keys of a JWKS document usable with `allowed` algorithms.

    Keys for other uses (`use: enc`) or other algorithms are skipped, so that an HDAB may
    publish them alongside; a malformed document, private key material, a repeated or
    missing `kid`, or no usable key at all is a `KeyMaterialError`.
    """
    if len(data) > MAX_JWKS_BYTES:
        raise KeyMaterialError(f"the key set is larger than {MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise KeyMaterialError("the key set is not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise KeyMaterialError('the key set must be an object with a "keys" array of objects')
    if len(entries) > MAX_JWKS_KEYS:
        raise KeyMaterialError(f"the key set has more than {MAX_JWKS_KEYS} keys")
    keys: list[TrustedKey] = []
    for entry in entries:
        key = _jwk(entry, allowed)
        if key is not None:
            keys.append(key)
    kids = [k.kid for k in keys]
    if len(set(kids)) != len(kids):
        raise KeyMaterialError("the key set names a kid twice")
    if not keys:
        allowed_text = ", ".join(allowed)
        raise KeyMaterialError(f"the key set has no signature key for {allowed_text}")
    return KeySet(tuple(keys))


def _jwk(entry: Mapping[str, Any], allowed: Sequence[Algorithm]) -> TrustedKey | None:
    if _PRIVATE_MEMBERS & entry.keys():
        raise KeyMaterialError("the key set holds private or symmetric key material")
    kid = entry.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        raise KeyMaterialError(f"every key needs a kid of 1 to {MAX_KID_LENGTH} characters")
    if entry.get("use", "sig") != "sig":
        return None
    alg = entry.get("alg")
    kty = entry.get("kty")
    if alg is not None and alg not in ALGORITHMS:
        return None
    algorithm = alg if alg is not None else _DEFAULT_ALGORITHM.get(str(kty))
    if algorithm is None:
        return None
    try:
        key = jwt.PyJWK(dict(entry), algorithm=algorithm).key
    except jwt.PyJWTError:
        raise KeyMaterialError(f"key {kid} is malformed") from None
    usable = _algorithms_for(key, allowed)
    if alg is not None:
        usable &= {alg}
    if not usable:
        return None
    assert isinstance(key, PublicKey)  # only public keys fit an algorithm
    return TrustedKey(kid=kid, key=key, algorithms=usable)


def jwk(key: PublicKey, kid: str) -> dict[str, Any]:
    """The public JWK of `key`, with its `kid`, `use: sig` and the algorithm it signs with."""
    algorithm: Algorithm
    if isinstance(key, Ed25519PublicKey | Ed448PublicKey):
        data = jwt.algorithms.OKPAlgorithm.to_jwk(key, as_dict=True)
        algorithm = "EdDSA"
    elif isinstance(key, EllipticCurvePublicKey):
        data = jwt.algorithms.ECAlgorithm.to_jwk(key, as_dict=True)
        algorithm = "ES256"
    else:
        data = jwt.algorithms.RSAAlgorithm.to_jwk(key, as_dict=True)
        algorithm = "RS256"
    return {**data, "kid": kid, "use": "sig", "alg": algorithm}


def jwks(keys: Mapping[str, PublicKey]) -> dict[str, Any]:
    """A JWKS document of `keys` by kid, in the given order."""
    return {"keys": [jwk(key, kid) for kid, key in keys.items()]}


# RFC 7638: the members a key type's thumbprint is computed over.
_THUMBPRINT_MEMBERS: dict[str, tuple[str, ...]] = {
    "OKP": ("crv", "kty", "x"),
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
}


def thumbprint(key: PublicKey) -> str:
    """The RFC 7638 JWK thumbprint of a public key (SHA-256, base64url without padding):
    names the key material, whatever `kid` it is filed under."""
    data = jwk(key, "-")
    members = {name: data[name] for name in _THUMBPRINT_MEMBERS[data["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
