"""The legal policy with real processes: the gateway skips what the permits do not cover,
and a node's own layer has the final veto."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from policies.loader import DEFAULT_DIRECTORY
from schema.codes import Jurisdiction
from tessera.credentials import Credentials
from tessera.local import LocalFederation
from tests.integration.federation_kit import post, start_federation

pytestmark = pytest.mark.integration

FR, DE, FI = Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI

QUESTION = """query($j: [Jurisdiction!], $by: [Dimension!]!) {
  cohort(request: "DR-2026-0042", jurisdictions: $j,
         criteria: { conditions: [{ vocabulary: ICD10, code: "I10" }] }) {
    count { value status reasons { rule } }
    byJurisdiction { jurisdiction status count { value status }
                     reasons { rule jurisdiction message article } }
    breakdown(by: $by) { cells { dimensions { name value } count { value status } } }
  }
}"""


def nodes(federation: LocalFederation, token: Credentials, **variables: Any) -> dict[str, Any]:
    status, body = post(federation.gateway_url, {"query": QUESTION, "variables": variables}, token)
    assert status == 200
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]["cohort"]
    return {n["jurisdiction"]: n for n in result["byJurisdiction"]} | {"pooled": result["count"]}


def test_permits_for_fr_and_de_get_fi_denied_and_answers_for_fr_and_de(
    federation: LocalFederation,
) -> None:
    token = federation.credentials(federation.permits([FR, DE]))
    answers = nodes(federation, token, j=["FR", "DE", "FI"], by=["SEX"])
    assert answers["FI"]["status"] == "DENIED"
    assert [r["rule"] for r in answers["FI"]["reasons"]] == ["PERMIT_MISSING"]
    assert answers["FI"]["count"] is None
    for j in ("FR", "DE"):
        assert answers[j]["status"] == "OK"
        assert answers[j]["count"]["value"] > 100


def test_a_prohibited_use_is_refused_everywhere(federation: LocalFederation) -> None:
    token = federation.credentials(federation.permits([FR, DE], purpose="advertising_marketing"))
    answers = nodes(federation, token, j=["FR", "DE"], by=["SEX"])
    for j in ("FR", "DE"):
        assert answers[j]["status"] == "DENIED"
        assert answers[j]["reasons"][0]["rule"] == "PURPOSE_PROHIBITED"
        assert answers[j]["reasons"][0]["article"].startswith("EHDS Art. 54")
    assert answers["pooled"]["value"] is None


@pytest.fixture(scope="module")
def vetoing_federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    directory = tmp_path_factory.mktemp("veto")
    # The shipped example: a regional FR hub that allows no age band finer than 10 years.
    node_policy = directory / "fr-node.toml"
    node_policy.write_text((DEFAULT_DIRECTORY / "node.example.toml").read_text())
    fed = start_federation(directory, (FR, DE), node_policies={FR: node_policy})
    yield fed
    fed.stop()


def test_the_node_has_the_final_veto(vetoing_federation: LocalFederation) -> None:
    token = vetoing_federation.researcher()
    # FR's national policy allows 5-year bands, so the gateway asks; the FR hub refuses.
    answers = nodes(vetoing_federation, token, j=["FR", "DE"], by=["AGE_BAND_5"])
    assert answers["FR"]["status"] == "DENIED"
    assert [r["rule"] for r in answers["FR"]["reasons"]] == ["GRANULARITY"]
    assert answers["DE"]["status"] == "OK"
    # Coarser bands are fine with the hub.
    answers = nodes(vetoing_federation, token, j=["FR", "DE"], by=["AGE_BAND_10"])
    assert answers["FR"]["status"] == "OK"


def test_the_node_refuses_an_approval_it_has_revoked(vetoing_federation: LocalFederation) -> None:
    # One data request id across both HDABs, the one the FR hub was told to refuse.
    permits = vetoing_federation.permits(request_id="DR-2025-0007", application_id=None)
    token = vetoing_federation.credentials(permits)
    status, body = post(
        vetoing_federation.gateway_url,
        {"query": QUESTION.replace("DR-2026-0042", "DR-2025-0007"), "variables": {"by": ["SEX"]}},
        token,
    )
    assert status == 200
    answers = {n["jurisdiction"]: n for n in body["data"]["cohort"]["byJurisdiction"]}
    assert answers["FR"]["status"] == "DENIED"
    assert [r["rule"] for r in answers["FR"]["reasons"]] == ["APPROVAL_REVOKED"]
    assert answers["DE"]["status"] == "OK"


def test_the_node_refuses_an_approval_without_its_dataset(
    vetoing_federation: LocalFederation,
) -> None:
    fed = vetoing_federation
    permits = fed.permits() | {FR: fed.permit(FR, fed.permit_approval(FR, datasets=["other"]))}
    answers = nodes(fed, fed.credentials(permits), j=None, by=["SEX"])
    assert [r["rule"] for r in answers["FR"]["reasons"]] == ["DATASET_NOT_APPROVED"]
    assert answers["DE"]["status"] == "OK"


def test_demo_layout_has_the_node_policy(vetoing_federation: LocalFederation) -> None:
    assert Path(vetoing_federation.node_policies[FR]).is_file()
