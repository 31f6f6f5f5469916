"""Published ATLAS definitions asked of a real federation (four connectors and a gateway on
loopback): imported, printed as a whole question (`tessera cohort import --format document`),
as variables (`criteria_from_atlas(...).arguments()`) and asked with the client's
`cohort(**arguments)`, each answered by every country; the wordings are one question, so they
get the same stored total."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessera.atlas.render import graphql_document
from tessera.client import Client, criteria_from_atlas
from tessera.credentials import Credentials
from tessera.local import LocalFederation

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "atlas" / "fixtures"
SUBJECT = "atlas-tests@demo.tessera.eu"
ORGANISATION = "ATLAS Import Tests Institute"
VARIABLES_DOCUMENT = """query Q(
  $request: String!, $index: IndexEventInput, $criteria: CriteriaInput!
) {
  cohort(request: $request, index: $index, criteria: $criteria) {
    count { value status sd }
    byJurisdiction { jurisdiction status }
  }
}"""


@pytest.fixture(scope="module")
def client(federation: LocalFederation) -> Client:
    permits = federation.permits(subject=SUBJECT, applicant=ORGANISATION)
    credentials: Credentials = federation.credentials(permits, subject=SUBJECT)
    return Client(federation.gateway_url, token=credentials.bearer, permits=credentials.permits)


@pytest.mark.parametrize("fixture", ["all_cause_mortality.json", "inpatient_visits.json"])
def test_a_published_definition_is_answered_by_every_country(client: Client, fixture: str) -> None:
    cohort = criteria_from_atlas(FIXTURES / fixture)
    assert client.request is not None
    document = graphql_document(cohort, request=client.request, title=fixture)
    literal = client.execute(document).answer
    assert [n.status for n in literal.nodes] == ["OK"] * 4
    assert literal.count is not None
    assert literal.count.status == "PERTURBED"
    assert literal.count.value is not None
    assert literal.count.value > 50
    asked = client.execute(
        VARIABLES_DOCUMENT, {"request": client.request, **cohort.arguments()}
    ).answer
    assert asked.count is not None
    assert (asked.count.value, asked.count.sd) == (literal.count.value, literal.count.sd)
    # The client's own question: the same cohort, its total the same stored number.
    answer = client.cohort(**cohort.arguments(), by=["SEX"])
    assert answer.count is not None
    assert answer.count.value == literal.count.value
    assert [n.status for n in answer.nodes] == ["OK"] * 4
