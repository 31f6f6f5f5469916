"""Public keys and JWKS documents: only asymmetric signature keys are ever trusted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trust.keys import KeyMaterialError, KeySet, jwk, jwks, parse_jwks, pem_public_key

ED = Ed25519PrivateKey.generate()
EC = ec.generate_private_key(ec.SECP256R1())
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def doc(*keys: dict[str, Any]) -> str:
    return json.dumps({"keys": list(keys)})


def test_a_jwks_round_trips_with_kids_and_algorithms() -> None:
    published = jwks({"ed-1": ED.public_key(), "ec-1": EC.public_key(), "rsa-1": RSA.public_key()})
    keys = parse_jwks(json.dumps(published), ("EdDSA", "ES256", "RS256", "PS256"))
    assert keys.kids == ("ed-1", "ec-1", "rsa-1")
    assert keys.find("ed-1", "EdDSA") is not None
    assert keys.find("ec-1", "ES256") is not None
    # The JWK says RS256: it does not verify PS256 although the key would fit.
    assert keys.find("rsa-1", "RS256") is not None
    assert keys.find("rsa-1", "PS256") is None
    # A kid only with its own algorithm.
    assert keys.find("ed-1", "ES256") is None


def test_keys_for_algorithms_not_allowed_are_left_out() -> None:
    keys = parse_jwks(doc(jwk(ED.public_key(), "ed-1"), jwk(EC.public_key(), "ec-1")), ("EdDSA",))
    assert keys.kids == ("ed-1",)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({**jwk(ED.public_key(), "ed-1"), "d": "c2VjcmV0"}, "private"),
        ({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac-1"}, "private or symmetric"),
        ({k: v for k, v in jwk(ED.public_key(), "x").items() if k != "kid"}, "kid"),
        ({**jwk(ED.public_key(), "ed-1"), "x": "not-a-key"}, "malformed"),
    ],
    ids=["private-okp", "symmetric", "no-kid", "bad-x"],
)
def test_a_bad_entry_refuses_the_whole_set(entry: dict[str, Any], problem: str) -> None:
    with pytest.raises(KeyMaterialError, match=problem):
        parse_jwks(doc(jwk(ED.public_key(), "good"), entry), ("EdDSA",))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("not json", "not JSON"),
        ("[]", '"keys"'),
        ('{"keys": [1]}', '"keys"'),
        (doc(), "no signature key"),
        (doc({**jwk(ED.public_key(), "a"), "use": "enc"}), "no signature key"),
        (doc({**jwk(ED.public_key(), "a"), "alg": "HS256"}), "no signature key"),
        (doc(jwk(ED.public_key(), "a"), jwk(ED.public_key(), "a")), "twice"),
        (doc(*(jwk(ED.public_key(), f"k{i}") for i in range(33))), "more than 32"),
        ("{" + " " * 70_000 + "}", "larger"),
    ],
)
def test_a_bad_document_is_refused(data: str, problem: str) -> None:
    with pytest.raises(KeyMaterialError, match=problem):
        parse_jwks(data, ("EdDSA",))


def test_a_pem_key_must_fit_every_algorithm() -> None:
    pem = EC.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert pem_public_key(pem, ("ES256",)).kid is None
    with pytest.raises(KeyMaterialError, match="EdDSA"):
        pem_public_key(pem, ("ES256", "EdDSA"))
    with pytest.raises(KeyMaterialError, match="PEM"):
        pem_public_key(b"-----BEGIN NOTHING-----", ("EdDSA",))


def test_a_token_without_kid_needs_an_unambiguous_set() -> None:
    one = parse_jwks(doc(jwk(ED.public_key(), "a")), ("EdDSA",))
    two = parse_jwks(doc(jwk(ED.public_key(), "a"), jwk(ED.public_key(), "b")), ("EdDSA",))
    assert one.find(None, "EdDSA") is not None
    assert two.find(None, "EdDSA") is None
    assert not KeySet()
