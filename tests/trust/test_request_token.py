"""The request token end to end (`trust.request_token`): the gateway's signer and the node's
verifier over keys loaded by the one loader, as `tessera keys generate` writes them. The
verifier's every refusal code: tests/connectors/test_verify.py."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from schema.errors import ErrorCode
from schema.wire import BODY_HASH_CLAIM, REQUEST_TOKEN_MAX_LIFETIME_S, REQUEST_TOKEN_TYP, body_hash
from tessera.keys import generate_keypair
from trust.keys import KeyMaterialError
from trust.private_keys import load_signing_key
from trust.request_token import (
    LIFETIME_S,
    RequestRefused,
    RequestSigner,
    RequestVerifier,
    load_verifying_key,
    load_verifying_keys,
)
from trust.tokens import numeric_claim

GATEWAY, NODE, KID = "tessera-gateway", "tessera-node-fr", "gateway-1"
BODY = b'{"query_id": "q-0001"}'


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keypair(tmp_path, KID)


def signer(private: Path, now: float | None = None) -> RequestSigner:
    clock = time.time if now is None else lambda: now
    return RequestSigner(
        issuer=GATEWAY,
        kid=KID,
        key=load_signing_key(private, setting="the signing key"),
        clock=clock,
    )


def verifier(public: Path, audience: str = NODE) -> RequestVerifier:
    keys = load_verifying_keys({KID: public})
    return RequestVerifier(keys=keys, issuer=GATEWAY, audience=audience)


async def test_a_signed_request_verifies_at_the_node_it_names(pair: tuple[Path, Path]) -> None:
    private, public = pair
    token = signer(private).sign(BODY, audience=NODE)
    verified = await verifier(public).verify(f"Bearer {token}", BODY)
    assert verified.kid == KID
    assert verified.expires_at - verified.issued_at == LIFETIME_S <= REQUEST_TOKEN_MAX_LIFETIME_S
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (header["typ"], header["alg"], header["kid"]) == (REQUEST_TOKEN_TYP, "EdDSA", KID)
    assert (claims["iss"], claims["aud"], claims[BODY_HASH_CLAIM]) == (
        GATEWAY,
        NODE,
        body_hash(BODY),
    )


async def test_a_signed_request_is_refused_by_another_node_and_for_another_body(
    pair: tuple[Path, Path],
) -> None:
    private, public = pair
    token = f"Bearer {signer(private).sign(BODY, audience=NODE)}"
    with pytest.raises(RequestRefused) as elsewhere:
        await verifier(public, audience="tessera-node-de").verify(token, BODY)
    assert elsewhere.value.code is ErrorCode.WRONG_NODE
    with pytest.raises(RequestRefused) as altered:
        await verifier(public).verify(token, BODY + b" ")
    assert altered.value.code is ErrorCode.BODY_MISMATCH


async def test_a_token_signed_longer_ago_than_its_lifetime_has_expired(
    pair: tuple[Path, Path],
) -> None:
    private, public = pair
    old = signer(private, now=time.time() - LIFETIME_S - 10).sign(BODY, audience=NODE)
    with pytest.raises(RequestRefused) as expired:
        await verifier(public).verify(f"Bearer {old}", BODY)
    assert expired.value.code is ErrorCode.REQUEST_EXPIRED


def test_the_loader_wants_the_public_half_of_an_ed25519_pair(tmp_path: Path) -> None:
    private, _ = generate_keypair(tmp_path, KID)
    with pytest.raises(KeyMaterialError, match="PEM public key"):
        load_verifying_key(private)
    _, pool_public = generate_keypair(tmp_path, "pool", kind="x25519")
    with pytest.raises(KeyMaterialError, match="not an Ed25519 key"):
        load_verifying_key(pool_public)
    with pytest.raises(KeyMaterialError, match=f"^{KID}=.*private.pem"):
        load_verifying_keys({KID: private.rename(tmp_path / "private.pem")})
    with pytest.raises(FileNotFoundError):
        load_verifying_key(tmp_path / "missing.pub.pem")


@pytest.mark.parametrize(
    ("value", "number"), [(1, 1.0), (1.5, 1.5), ("1", None), (True, None), (None, None)]
)
def test_a_numeric_claim_is_a_json_number(value: object, number: float | None) -> None:
    assert numeric_claim({"iat": value}, "iat") == number
