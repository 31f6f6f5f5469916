"""Minting researcher tokens for development and the demo: permits as each country's HDAB
would issue them, and identity tokens as a researchers' identity provider would.

Production tokens come from the health data access bodies' own issuers; this exists so that
tests and the demo can show both accepted and refused permits.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import jwt

from schema.approval import APPROVAL_CLAIM, ROLES_CLAIM, Approval, Role
from schema.codes import Jurisdiction
from trust.private_keys import load_signing_key

DEMO_AUDIENCE = "tessera-gateway"
# Who authenticates researchers in the demo (as HealthData@EU would): its tokens name the
# researcher and are never permits.
IDENTITY_ISSUER = "https://healthdata.demo.tessera.eu"
DEMO_RESEARCHER = "researcher@demo.tessera.eu"
# The demo's multi-country application; each HDAB's permit has a data request id of its own.
DEMO_APPLICATION = "DR-2026-0042"
DEMO_DATASET = "omop-cdm-5.4"


def hdab_issuer(jurisdiction: Jurisdiction) -> str:
    """The demo HDAB of a jurisdiction, as its permits' `iss`."""
    return f"https://hdab.{jurisdiction.value.lower()}.demo.tessera.eu"


def demo_request_id(jurisdiction: Jurisdiction, application: str = DEMO_APPLICATION) -> str:
    """The data request id a demo HDAB gives its part of the application."""
    return f"{application}-{jurisdiction.value}"


def token_claims(
    *,
    issuer: str,
    audience: str,
    subject: str,
    approval: Approval | None,
    roles: Sequence[Role] = (Role.RESEARCHER,),
    ttl_s: int = 3600,
    not_before_s: int = 0,
    now: float | None = None,
) -> dict[str, object]:
    """The claims of a researcher's token: its issuer, for whom and whom to, when, its roles
    and, for a permit, its approval. One set for every token minted here and in the tests."""
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
    return claims


def mint_token(
    private_key_pem: Path, claims: Mapping[str, object], *, kid: str | None = None
) -> str:
    """`claims` (`token_claims`) signed with the Ed25519 key of a PEM file."""
    key = load_signing_key(private_key_pem, setting="the signing key")
    headers = {"typ": "JWT", **({"kid": kid} if kid else {})}
    return jwt.encode(dict(claims), key, algorithm="EdDSA", headers=headers)


def demo_approval(
    jurisdictions: Sequence[Jurisdiction],
    request_id: str = DEMO_APPLICATION,
    *,
    purpose: str = "scientific_research",
    valid_days: float = 365,
    datasets: Sequence[str] = (DEMO_DATASET,),
    application_id: str | None = None,
) -> Approval:
    """An approval as a demo HDAB grants it: a public research hospital, valid from now."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return Approval(
        request_id=request_id,
        application_id=application_id,
        purpose=purpose,
        jurisdictions=list(jurisdictions),
        datasets=list(datasets),
        applicant="Demo University Hospital",
        applicant_kind="public_body",
        valid_from=now - dt.timedelta(days=1),
        valid_until=now + dt.timedelta(days=valid_days),
    )
