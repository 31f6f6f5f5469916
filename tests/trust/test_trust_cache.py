"""Verified tokens are remembered: sent again, a token skips pyjwt, but still expires on time
and still fails once its key is no longer trusted."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schema.errors import ErrorCode, TesseraError
from trust.keys import KeySet, TrustedKey
from trust.tokens import TokenVerifier, TrustedIssuer

KEY = Ed25519PrivateKey.generate()
ISS, AUD = "https://hdab.test", "tessera-gateway"


class MutableKeys:
    """A key source whose set the test changes (as a JWKS refresh would)."""

    def __init__(self) -> None:
        self.keys = KeySet((TrustedKey("k1", KEY.public_key(), frozenset({"EdDSA"})),))

    def key_set(self) -> KeySet:
        return self.keys

    def request_refresh(self) -> None:
        return None


def token(*, sub: str = "r", lifetime_s: int = 60, iat_ago_s: int = 0) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": sub, "iat": now - iat_ago_s, "exp": now + lifetime_s}
    return jwt.encode(claims, KEY, algorithm="EdDSA", headers={"kid": "k1", "typ": "JWT"})


def verifier(keys: MutableKeys, *, cache_size: int = 16, leeway_s: int = 0) -> TokenVerifier:
    issuer = TrustedIssuer(iss=ISS, keys=keys, algorithms=("EdDSA",), leeway_s=leeway_s)
    return TokenVerifier(audience=AUD, issuers=[issuer], cache_size=cache_size)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every full pyjwt decode, by token."""
    calls: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


def code_of(check: TokenVerifier, tok: str) -> ErrorCode | None:
    try:
        check.verify(tok)
    except TesseraError as e:
        return e.code
    return None


def test_a_token_sent_again_is_not_decoded_again(decodes: list[str]) -> None:
    check = verifier(MutableKeys())
    tok = token()
    first = check.verify(tok)
    decoded = len(decodes)
    assert decoded > 0
    again = check.verify(tok)
    assert again == first
    assert len(decodes) == decoded
    again["sub"] = "someone else"  # callers get their own copy
    assert check.verify(tok)["sub"] == "r"


def test_the_cache_is_bounded(decodes: list[str]) -> None:
    check = verifier(MutableKeys(), cache_size=1)
    a, b = token(sub="a"), token(sub="b")
    check.verify(a)
    check.verify(b)  # pushes `a` out
    decodes.clear()
    check.verify(a)
    assert decodes  # verified in full again


def test_a_remembered_token_still_expires() -> None:
    check = verifier(MutableKeys())
    tok = token(lifetime_s=1, iat_ago_s=10)
    assert code_of(check, tok) is None
    time.sleep(max(0.0, jwt.decode(tok, options={"verify_signature": False})["exp"] - time.time()))
    time.sleep(0.05)
    assert code_of(check, tok) is ErrorCode.TOKEN_EXPIRED
    assert code_of(check, tok) is ErrorCode.TOKEN_EXPIRED  # and so says full verification


def test_a_remembered_token_fails_once_its_key_is_rotated_out() -> None:
    keys = MutableKeys()
    check = verifier(keys)
    tok = token()
    assert code_of(check, tok) is None
    keys.keys = KeySet()  # rotated out, or the set went stale
    assert code_of(check, tok) is ErrorCode.TOKEN_UNKNOWN_KEY
    other = Ed25519PrivateKey.generate()
    keys.keys = KeySet((TrustedKey("k1", other.public_key(), frozenset({"EdDSA"})),))
    # Same kid, another key: the remembered verification no longer holds.
    assert code_of(check, tok) is ErrorCode.TOKEN_BAD_SIGNATURE


def test_a_token_that_failed_is_not_remembered(decodes: list[str]) -> None:
    check = verifier(MutableKeys())
    forged = token()[:-4] + "AAAA"
    assert code_of(check, forged) is ErrorCode.TOKEN_BAD_SIGNATURE
    decodes.clear()
    assert code_of(check, forged) is ErrorCode.TOKEN_BAD_SIGNATURE
    assert decodes
