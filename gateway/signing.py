"""Signing node requests: a short-lived EdDSA JWT bound to one node, one use and the exact
body bytes (see `schema.wire`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schema.wire import BODY_HASH_CLAIM, REQUEST_TOKEN_MAX_LIFETIME_S, REQUEST_TOKEN_TYP, body_hash

# Long enough for a slow network hop, far shorter than what a node accepts.
REQUEST_TOKEN_LIFETIME_S: Final = 30
assert REQUEST_TOKEN_LIFETIME_S <= REQUEST_TOKEN_MAX_LIFETIME_S


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
            "exp": issued + REQUEST_TOKEN_LIFETIME_S,
            "jti": uuid.uuid4().hex,
            BODY_HASH_CLAIM: body_hash(body),
        }
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers=self._headers)
