"""Researcher tokens: what is accepted, and that everything else is UNAUTHENTICATED."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gateway_kit import GATEWAY_ID, ISSUER, REQUEST_ID, Keys, mint, pem_public

from gateway.auth import LEEWAY_S, Authenticator
from gateway.federation import load_federation
from schema.approval import APPROVAL_CLAIM, ROLES_CLAIM, Role
from schema.codes import Jurisdiction
from schema.errors import ErrorCode, TesseraError


@pytest.fixture
def authenticator(federation_file: Path) -> Authenticator:
    federation = load_federation(federation_file)
    return Authenticator(audience=federation.gateway_id, issuers=federation.issuers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    """A JWT assembled by hand, for algorithms pyjwt rightly refuses to produce."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "sub": "researcher",
        "aud": GATEWAY_ID,
        "iat": now,
        "exp": now + 600,
        ROLES_CLAIM: ["researcher"],
        APPROVAL_CLAIM: {
            "request_id": REQUEST_ID,
            "purpose": "scientific_research",
            "jurisdictions": ["FR"],
        },
    }


def rejected(authenticator: Authenticator, token: str) -> TesseraError:
    with pytest.raises(TesseraError) as caught:
        authenticator.authenticate(f"Bearer {token}")
    assert caught.value.code is ErrorCode.UNAUTHENTICATED
    assert caught.value.__cause__ is None  # nothing of pyjwt's message travels on
    return caught.value


def test_valid_token(authenticator: Authenticator, keys: Keys) -> None:
    token = mint(keys)
    principal = authenticator.authenticate(f"Bearer {token}")
    assert principal.issuer == ISSUER
    assert principal.subject == "researcher@test.tessera.eu"
    assert principal.roles == {Role.RESEARCHER.value}
    assert principal.approval is not None
    assert principal.approval.request_id == REQUEST_ID
    assert principal.approval.jurisdictions[0] is Jurisdiction.FR
    assert principal.token == token


def test_scheme_is_case_insensitive(authenticator: Authenticator, keys: Keys) -> None:
    assert authenticator.authenticate(f"bearer {mint(keys)}").issuer == ISSUER


def test_expired(authenticator: Authenticator, keys: Keys) -> None:
    now = int(time.time())
    error = rejected(authenticator, mint(keys, iat=now - 900, exp=now - LEEWAY_S - 1))
    assert error.message == "token has expired"


def test_expiry_within_leeway_is_accepted(authenticator: Authenticator, keys: Keys) -> None:
    now = int(time.time())
    authenticator.authenticate(f"Bearer {mint(keys, iat=now - 900, exp=now - 5)}")


def test_issued_in_the_future(authenticator: Authenticator, keys: Keys) -> None:
    rejected(authenticator, mint(keys, iat=int(time.time()) + 3600))


def test_not_yet_valid(authenticator: Authenticator, keys: Keys) -> None:
    rejected(authenticator, mint(keys, nbf=int(time.time()) + 3600))


def test_unknown_issuer(authenticator: Authenticator, keys: Keys) -> None:
    error = rejected(authenticator, mint(keys, iss="https://evil.example"))
    assert error.message == "token issuer is not trusted"


def test_trusted_issuer_name_with_another_key(authenticator: Authenticator, keys: Keys) -> None:
    error = rejected(authenticator, mint(keys, key=Ed25519PrivateKey.generate()))
    assert error.message == "token signature does not verify"


def test_wrong_audience(authenticator: Authenticator, keys: Keys) -> None:
    error = rejected(authenticator, mint(keys, aud="another-gateway"))
    assert error.message == "token is not meant for this gateway"


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub"])
def test_missing_required_claim(authenticator: Authenticator, keys: Keys, claim: str) -> None:
    rejected(authenticator, mint(keys, **{claim: None}))


def test_alg_none(authenticator: Authenticator) -> None:
    token = handmade({"alg": "none", "typ": "JWT"}, claims(), lambda _: b"")
    rejected(authenticator, token)


def test_hs256_signed_with_the_public_key(authenticator: Authenticator, keys: Keys) -> None:
    # The classic key-confusion attack: the verifier's public key used as an HMAC secret.
    secret = pem_public(keys.hdab)
    token = handmade(
        {"alg": "HS256", "typ": "JWT"},
        claims(),
        lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
    )
    error = rejected(authenticator, token)
    assert error.message == "token algorithm is not allowed"


def test_garbage(authenticator: Authenticator) -> None:
    assert rejected(authenticator, "not-a-jwt").message == "token is malformed"


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer   "])
def test_missing_or_odd_header(authenticator: Authenticator, header: str | None) -> None:
    with pytest.raises(TesseraError) as caught:
        authenticator.authenticate(header)
    assert caught.value.code is ErrorCode.UNAUTHENTICATED


def test_oversized_token(authenticator: Authenticator) -> None:
    rejected(authenticator, "a" * 10_000)


def test_malformed_approval_claim(authenticator: Authenticator, keys: Keys) -> None:
    error = rejected(authenticator, mint(keys, **{APPROVAL_CLAIM: {"request_id": "x y"}}))
    assert "approval" in error.message


def test_roles_must_be_strings(authenticator: Authenticator, keys: Keys) -> None:
    rejected(authenticator, mint(keys, **{ROLES_CLAIM: "researcher"}))


def test_token_without_approval_is_forbidden_for_cohorts(
    authenticator: Authenticator, keys: Keys
) -> None:
    principal = authenticator.authenticate(f"Bearer {mint(keys, **{APPROVAL_CLAIM: None})}")
    with pytest.raises(TesseraError) as caught:
        principal.require_approval()
    assert caught.value.code is ErrorCode.FORBIDDEN


def test_missing_role_is_forbidden(authenticator: Authenticator, keys: Keys) -> None:
    principal = authenticator.authenticate(f"Bearer {mint(keys, **{ROLES_CLAIM: None})}")
    with pytest.raises(TesseraError) as caught:
        principal.require_role(Role.RESEARCHER)
    assert caught.value.code is ErrorCode.FORBIDDEN
