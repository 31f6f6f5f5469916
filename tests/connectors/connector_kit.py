"""Helpers shared by the connector tests: node request bodies as the gateway sends them, the
node's effective policy, and the node's HDAB with the approvals it issues.

Imported as `tests.connectors.connector_kit` (`tests/test_kits.py`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from connectors.approval import ApprovalVerifier
from policies.loader import load_policy_set
from policies.policy_set import EffectivePolicy
from schema.approval import APPROVAL_CLAIM, Approval
from schema.codes import Dimension, Jurisdiction
from schema.query import CohortQuery, Criteria
from schema.wire import NodeRequest
from tests.token_kit import mint_jwt
from trust.keys import KeySet, TrustedKey
from trust.keysource import StaticKeys
from trust.tokens import TokenVerifier, TrustedIssuer

REFERENCE_DATE = dt.date(2024, 6, 30)
REQUEST_ID = "DR-2026-0042"
SHIPPED = load_policy_set()
HDAB_ISSUER = "https://hdab.fr.test"
APPROVAL_AUDIENCE = "tessera-gateway"  # the gateway's id, the default gateway issuer
HDAB_KEY = Ed25519PrivateKey.generate()


def node_dataset(jurisdiction: Jurisdiction | str) -> str:
    """The dataset a node without a node layer serves: its node id."""
    code = jurisdiction.value if isinstance(jurisdiction, Jurisdiction) else jurisdiction
    return f"tessera-node-{code.lower()}"


def approval(**fields: Any) -> Approval:
    values: dict[str, Any] = {
        "request_id": REQUEST_ID,
        "purpose": "scientific_research",
        "jurisdictions": [Jurisdiction.FR, Jurisdiction.DE],
        "datasets": [node_dataset(Jurisdiction.FR), node_dataset(Jurisdiction.DE)],
    }
    values.update(fields)
    return Approval(**values)


def request_body(
    criteria: Criteria | None = None,
    tables: list[tuple[Dimension, ...]] | None = None,
    jurisdiction: Jurisdiction = Jurisdiction.FR,
    *,
    approved: Approval | None = None,
) -> bytes:
    request = NodeRequest(
        query_id="q-00000001",
        request_id=REQUEST_ID,
        jurisdiction=jurisdiction,
        query=CohortQuery(
            criteria=criteria or Criteria(),
            reference_date=REFERENCE_DATE,
            tables=tables or [()],
        ),
        approval=approved or approval(),
        subject="researcher@test.tessera.eu",
    )
    return request.model_dump_json().encode()


def policy(jurisdiction: Jurisdiction = Jurisdiction.FR) -> EffectivePolicy:
    return SHIPPED.effective(jurisdiction)


def write_hdab_public_pem(path: Path) -> Path:
    path.write_bytes(
        HDAB_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def approval_token(
    *,
    request_id: str = REQUEST_ID,
    jurisdictions: Sequence[str] = ("FR",),
    key: Ed25519PrivateKey | None = None,
    applicant: str | None = None,
    **claims: object,
) -> str:
    """A researcher token from the node's HDAB approving `request_id` for `jurisdictions`
    (for the organisation `applicant`, when given); keyword arguments replace (None drops)
    claims, `key` signs with another key."""
    return mint_jwt(
        key or HDAB_KEY,
        issuer=HDAB_ISSUER,
        audience=APPROVAL_AUDIENCE,
        subject="researcher@test.eu",
        **{
            APPROVAL_CLAIM: {
                "request_id": request_id,
                "purpose": "scientific_research",
                "jurisdictions": list(jurisdictions),
                "datasets": [node_dataset(j) for j in jurisdictions],
                "applicant": applicant,
            },
            **claims,
        },
    )


def approval_verifier(jurisdiction: Jurisdiction) -> ApprovalVerifier:
    """What a node of `jurisdiction` checks approvals with: this test HDAB's key."""
    key = TrustedKey(kid=None, key=HDAB_KEY.public_key(), algorithms=frozenset({"EdDSA"}))
    issuer = TrustedIssuer(iss=HDAB_ISSUER, keys=StaticKeys(KeySet((key,))), algorithms=("EdDSA",))
    return ApprovalVerifier(
        TokenVerifier(audience=APPROVAL_AUDIENCE, issuers=[issuer]), jurisdiction
    )
