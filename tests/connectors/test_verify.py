"""Verification of the gateway's request tokens."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from connectors.errors import BadSignature
from connectors.verify import ReplayCache, RequestVerifier, load_gateway_keys, load_public_key
from schema.errors import ErrorCode

Sign = Callable[..., str]
BODY = b'{"query_id": "q-0001"}'
KID, ISSUER, NODE = "gateway-2024", "tessera-gateway", "tessera-node-fr"


@pytest.fixture
def verifier(gateway_public_pem: Path) -> RequestVerifier:
    return RequestVerifier(
        keys=load_gateway_keys({KID: gateway_public_pem}), issuer=ISSUER, audience=NODE
    )


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_a_valid_token_passes(verifier: RequestVerifier, sign: Sign) -> None:
    verified = verifier.verify(bearer(sign(BODY, jti="abc-1")), BODY)
    assert verified.kid == KID
    assert verified.jti == "abc-1"
    assert verified.expires_at - verified.issued_at == 30


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"aud": "tessera-node-de"}, "another node", id="wrong-audience"),
        pytest.param({"aud": None}, "lacks a required claim", id="no-audience"),
        pytest.param({"iss": "someone-else"}, "wrong issuer", id="wrong-issuer"),
        pytest.param({"issued_at": time.time() - 120}, "expired", id="expired"),
        pytest.param({"issued_at": time.time() + 120}, "not valid yet", id="issued-in-the-future"),
        pytest.param({"lifetime": 61}, "lives too long", id="too-long-lived"),
        pytest.param({"jti": None}, "lacks a required claim", id="no-jti"),
        pytest.param({"jti": 42}, "invalid jti", id="jti-not-a-string"),
        pytest.param({"bsh": None}, "lacks a required claim", id="no-body-hash"),
        pytest.param({"bsh": "0" * 64}, "body does not match", id="wrong-body-hash"),
        pytest.param({"typ": "JWT"}, "wrong type", id="wrong-typ"),
        pytest.param({"kid": "gateway-1999"}, "unknown key", id="unknown-kid"),
        pytest.param({"key": Ed25519PrivateKey.generate()}, "signature is invalid", id="other-key"),
    ],
)
def test_a_bad_token_is_refused(
    verifier: RequestVerifier, sign: Sign, change: dict[str, object], message: str
) -> None:
    with pytest.raises(BadSignature, match=message) as raised:
        verifier.verify(bearer(sign(BODY, **change)), BODY)
    assert raised.value.code is ErrorCode.BAD_SIGNATURE


def test_a_token_just_past_expiry_is_within_the_leeway(
    verifier: RequestVerifier, sign: Sign
) -> None:
    verifier.verify(bearer(sign(BODY, issued_at=time.time() - 33)), BODY)


def test_a_body_altered_after_signing_is_refused(verifier: RequestVerifier, sign: Sign) -> None:
    token = sign(BODY)
    with pytest.raises(BadSignature, match="body does not match"):
        verifier.verify(bearer(token), BODY.replace(b"0001", b"0002"))


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer not-a-jwt", "Bearer a.b.c"],
)
def test_a_missing_or_malformed_header_is_refused(
    verifier: RequestVerifier, authorization: str | None
) -> None:
    with pytest.raises(BadSignature):
        verifier.verify(authorization, BODY)


def test_only_eddsa_is_accepted(verifier: RequestVerifier) -> None:
    # A token in another algorithm is refused before any key is tried.
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": NODE, "iat": now, "exp": now + 30, "jti": "x", "bsh": "y"}
    forged = jwt.encode(
        claims,
        b"an HMAC secret of thirty-two bytes",
        algorithm="HS256",
        headers={"kid": KID, "typ": "tessera-node-request+jwt"},
    )
    with pytest.raises(BadSignature, match="EdDSA"):
        verifier.verify(bearer(forged), BODY)


def test_a_replayed_token_is_refused(verifier: RequestVerifier, sign: Sign) -> None:
    token = sign(BODY)
    verifier.verify(bearer(token), BODY)
    with pytest.raises(BadSignature, match="already used"):
        verifier.verify(bearer(token), BODY)


def test_a_refused_token_does_not_use_up_its_jti(verifier: RequestVerifier, sign: Sign) -> None:
    token = sign(BODY)
    with pytest.raises(BadSignature):
        verifier.verify(bearer(token), b"tampered")
    verifier.verify(bearer(token), BODY)


def test_no_key_means_every_token_is_refused(sign: Sign) -> None:
    verifier = RequestVerifier(keys={}, issuer=ISSUER, audience=NODE)
    assert not verifier.has_keys
    with pytest.raises(BadSignature, match="unknown key"):
        verifier.verify(bearer(sign(BODY)), BODY)


def test_the_replay_cache_forgets_expired_entries() -> None:
    now = [1000.0]
    cache = ReplayCache(max_entries=2, clock=lambda: now[0])
    cache.claim("a", expires_at=1010)
    with pytest.raises(BadSignature, match="already used"):
        cache.claim("a", expires_at=1010)
    now[0] = 1016  # past expiry + leeway
    cache.claim("a", expires_at=1030)
    assert len(cache) == 1


def test_a_full_replay_cache_refuses_rather_than_forgets() -> None:
    now = [1000.0]
    cache = ReplayCache(max_entries=2, clock=lambda: now[0])
    cache.claim("a", expires_at=1050)
    cache.claim("b", expires_at=1010)
    with pytest.raises(BadSignature, match="too many"):
        cache.claim("c", expires_at=1050)
    now[0] = 1020  # "b" has expired although it is not first in line
    cache.claim("c", expires_at=1050)
    with pytest.raises(BadSignature, match="already used"):
        cache.claim("a", expires_at=1050)


def test_a_key_file_must_hold_an_ed25519_public_key(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    path.write_bytes(
        generate_private_key(SECP256R1())
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="Ed25519"):
        load_public_key(path)
