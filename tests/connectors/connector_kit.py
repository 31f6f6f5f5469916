"""Shared by the connector tests: node request bodies as the gateway sends them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from policies.loader import load_policy_set
from policies.policy_set import EffectivePolicy
from schema.approval import Approval
from schema.codes import Dimension, Jurisdiction
from schema.query import CohortQuery, Criteria
from schema.wire import NodeRequest

REFERENCE_DATE = dt.date(2024, 6, 30)
REQUEST_ID = "DR-2026-0042"
SHIPPED = load_policy_set()


def approval(**fields: Any) -> Approval:
    values: dict[str, Any] = {
        "request_id": REQUEST_ID,
        "purpose": "scientific_research",
        "jurisdictions": [Jurisdiction.FR, Jurisdiction.DE],
        "datasets": ["omop-cdm-5.4"],
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
