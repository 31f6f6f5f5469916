"""The one token minter of the test kits: researchers' tokens (identity tokens and permits)
with the claims `tessera.tokens` gives them, any claim replaced or dropped, signed with any
key and algorithm, so that a test can forge what a verifier must refuse."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt

from schema.approval import APPROVAL_CLAIM, Approval
from tessera.tokens import token_claims

TTL_S = 600


def mint_jwt(
    key: Any,
    *,
    issuer: str,
    audience: str,
    subject: str,
    now: float | None = None,
    algorithm: str = "EdDSA",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A researcher token signed with `key`, valid for `TTL_S` from `now`. Keyword `claims`
    replace the claims by name (`approval`, `roles`, `exp`, `iss`, ...), None dropping one; a
    permit's `approval` is an `Approval` or a mapping sent as it is, its None fields left out."""
    payload: dict[str, Any] = token_claims(
        issuer=issuer, audience=audience, subject=subject, approval=None, ttl_s=TTL_S, now=now
    )
    payload.update(claims)
    approval = payload.get(APPROVAL_CLAIM)
    if isinstance(approval, Approval):
        payload[APPROVAL_CLAIM] = approval.model_dump(mode="json")
    elif isinstance(approval, Mapping):
        payload[APPROVAL_CLAIM] = {k: v for k, v in approval.items() if v is not None}
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)
