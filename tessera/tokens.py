"""Minting researcher approval tokens for development and the demo, as an HDAB would.

Production tokens come from a health data access body's own issuer; this exists so that tests
and the demo can show both accepted and refused tokens.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from schema.approval import APPROVAL_CLAIM, ROLES_CLAIM, Approval, Role
from schema.codes import Jurisdiction

DEMO_ISSUER = "https://hdab.demo.tessera.eu"
DEMO_AUDIENCE = "tessera-gateway"


def mint_token(
    private_key_pem: Path,
    *,
    issuer: str,
    audience: str,
    subject: str,
    approval: Approval | None,
    roles: Sequence[Role] = (Role.RESEARCHER,),
    ttl_s: int = 3600,
    not_before_s: int = 0,
    kid: str | None = None,
    now: float | None = None,
) -> str:
    key = load_pem_private_key(private_key_pem.read_bytes(), password=None)
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
        ROLES_CLAIM: [r.value for r in roles],
    }
    if approval is not None:  # a compliance officer's token carries no data request
        claims[APPROVAL_CLAIM] = approval.model_dump(mode="json")
    if not_before_s:
        claims["nbf"] = issued + not_before_s
    headers = {"typ": "JWT", **({"kid": kid} if kid else {})}
    return jwt.encode(claims, key, algorithm="EdDSA", headers=headers)  # type: ignore[arg-type]


def demo_approval(
    jurisdictions: Sequence[Jurisdiction],
    request_id: str = "DR-2026-0042",
    *,
    purpose: str = "scientific_research",
    valid_days: float = 365,
) -> Approval:
    """An approval as the demo HDAB grants it: a public research hospital, valid from now."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return Approval(
        request_id=request_id,
        purpose=purpose,
        jurisdictions=list(jurisdictions),
        datasets=["omop-cdm-5.4"],
        applicant="Demo University Hospital",
        applicant_kind="public_body",
        valid_from=now - dt.timedelta(days=1),
        valid_until=now + dt.timedelta(days=valid_days),
    )
