"""A third-party GraphQL client (gql) against the running gateway.

Introspection is off outside the demo, so the client validates against the published SDL
(`schema/schema.graphql`) instead of fetching the schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from gql import Client, gql
from gql.transport.aiohttp import AIOHTTPTransport

from schema.wire import PERMIT_HEADER
from tessera.credentials import Credentials
from tessera.local import LocalFederation

pytestmark = pytest.mark.integration
SDL = Path(__file__).resolve().parents[2] / "schema" / "schema.graphql"


async def test_gql_client_gets_a_pooled_count(
    federation: LocalFederation, token: Credentials
) -> None:
    # A client that cannot repeat a header sends the permits comma-separated in one line.
    transport = AIOHTTPTransport(
        url=federation.gateway_url,
        headers={
            "Authorization": f"Bearer {token.bearer}",
            PERMIT_HEADER: ", ".join(token.permits),
        },
    )
    query = gql(
        """
        query Hypertension($request: String!, $minAge: Int) {
          cohort(request: $request,
                 criteria: { age: { min: $minAge },
                             conditions: [{ vocabulary: ICD10, code: "I10" }] }) {
            count { value status sd }
            byJurisdiction { jurisdiction status }
            breakdown(by: [SEX]) {
              cells { dimensions { name value } count { value status sd } }
            }
          }
        }
        """
    )
    async with Client(transport=transport, schema=SDL.read_text()) as session:
        query.variable_values = {"request": "DR-2026-0042", "minAge": 18}
        result = await session.execute(query)
    cohort = result["cohort"]
    # Every count is noisy, so the pooled count is too.
    assert cohort["count"]["status"] == "PERTURBED"
    assert cohort["count"]["value"] > 1000
    cells = cohort["breakdown"]["cells"]
    sexes = {c["dimensions"][0]["value"]: c["count"]["value"] for c in cells}
    assert set(sexes) == {"FEMALE", "MALE", "UNKNOWN"}  # the table's public domain
    # Noisy cells need not add up to the noisy total, but never by more than a few sds.
    variance = cohort["count"]["sd"] ** 2 + sum((c["count"]["sd"] or 0) ** 2 for c in cells)
    assert sum(v for v in sexes.values() if v) <= cohort["count"]["value"] + 6 * variance**0.5
