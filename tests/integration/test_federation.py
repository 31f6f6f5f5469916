"""A researcher's question answered end to end by real connector processes and the gateway."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from connectors.persons import person_index_size, read_secret
from policies.loader import shipped_disclosure_profile
from schema.codes import Jurisdiction
from tessera.local import LocalFederation
from tests.integration.federation_kit import PERSONS, true_count

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

DIABETIC_WOMEN = """
query($j: [Jurisdiction!]) {
  cohort(request: "DR-2026-0042", jurisdictions: $j, referenceDate: "2026-01-01",
         ageAt: REFERENCE_DATE,
         criteria: { sex: FEMALE, age: { min: 40, max: 69 },
                     conditions: [{ vocabulary: ICD10, code: "E11" }] }) {
    queryId
    count { value status reasons { rule jurisdiction message } }
    byJurisdiction { jurisdiction status latencyMs
                     count { value status bound sd reasons { rule } } }
    bySexAge: breakdown(by: [JURISDICTION, AGE_BAND_10]) {
      by
      cells { dimensions { name value } count { value status bound sd } }
    }
  }
}
"""


# A regression's example is fitted by a researcher of its own (tests/integration/test_regression.py:
# its iterations would spend this module's researcher's budget).
COHORT_EXAMPLES = [
    p for p in sorted(EXAMPLES.glob("*.graphql")) if "regression(" not in p.read_text()
]


@pytest.mark.parametrize("example", COHORT_EXAMPLES, ids=lambda p: p.stem)
def test_every_example_query_is_answered(graphql: Any, example: Path) -> None:
    body = graphql(example.read_text())
    assert "errors" not in body, body.get("errors")
    for result in body["data"].values():
        assert {n["status"] for n in result["byJurisdiction"]} == {"OK"}


def test_node_counts_are_the_true_counts_with_their_noise_or_low(
    graphql: Any, federation: LocalFederation
) -> None:
    body = graphql(DIABETIC_WOMEN)
    assert "errors" not in body, body.get("errors")
    nodes = {n["jurisdiction"]: n for n in body["data"]["cohort"]["byJurisdiction"]}
    assert set(nodes) == {j.value for j in federation.jurisdictions}
    total = 0
    for jurisdiction in federation.jurisdictions:
        truth = true_count(
            federation.database(jurisdiction),
            "c.vocabulary_id = 'ICD10' AND c.concept_code LIKE 'E11%' "
            "AND p.gender_concept_id = 8532 AND 2026 - p.year_of_birth BETWEEN 40 AND 69",
        )
        count = nodes[jurisdiction.value]["count"]
        assert nodes[jurisdiction.value]["status"] == "OK"
        assert nodes[jurisdiction.value]["latencyMs"] > 0
        profile = shipped_disclosure_profile(jurisdiction)
        # Noise of sd 5 is never further than 6 sds from the truth in any run of this suite
        # (about once in 10^9 counts).
        assert count["sd"] == profile.sigma
        if count["value"] is None:
            assert count["status"] == "LOW"
            assert truth < profile.min_count + 6 * profile.sigma
            assert [r["rule"] for r in count["reasons"]] == ["BELOW_MINIMUM"]
        else:
            assert count["status"] == "PERTURBED"
            assert count["value"] >= profile.min_count
            assert abs(count["value"] - truth) <= 6 * profile.sigma
            assert [r["rule"] for r in count["reasons"]] == ["NOISE"]
        total += truth
    # The pooled count is pooled securely: the true total with one noise of sd 5 (not the
    # sum of the countries' noisy counts).
    pooled = body["data"]["cohort"]["count"]
    assert pooled["status"] == "PERTURBED"
    assert {r["rule"] for r in pooled["reasons"]} == {"NOISE", "SECURE_POOL"}
    assert abs(pooled["value"] - total) <= 6 * 5.0


def test_breakdown_by_jurisdiction_matches_per_node_answers(graphql: Any) -> None:
    result = graphql(DIABETIC_WOMEN)["data"]["cohort"]
    table = result["bySexAge"]
    assert table["by"] == ["JURISDICTION", "AGE_BAND_10"]
    bands = {"40-49", "50-59", "60-69"}
    per_country: dict[str, int] = {}
    noise: dict[str, float] = {}
    for cell in table["cells"]:
        dims = {d["name"]: d["value"] for d in cell["dimensions"]}
        assert dims["AGE_BAND_10"] in bands
        if cell["count"]["value"] is not None:
            j = dims["JURISDICTION"]
            per_country[j] = per_country.get(j, 0) + cell["count"]["value"]
            noise[j] = noise.get(j, 0.0) + cell["count"]["sd"] ** 2
    for node in result["byJurisdiction"]:
        j = node["jurisdiction"]
        if node["count"]["value"] is None:
            continue
        released = per_country.get(j, 0)
        # Released cells never add up to more than the country's count, up to their noise
        # (noisy numbers need not add up): six sds of the difference.
        slack = 6 * math.sqrt(noise.get(j, 0.0) + node["count"]["sd"] ** 2)
        assert released <= node["count"]["value"] + slack


def test_a_count_below_the_minimum_is_never_released(graphql: Any) -> None:
    body = graphql(
        """{ cohort(request: "DR-2026-0042",
                    criteria: { conditions: [{ vocabulary: ICD10, code: "C49" }] }) {
               count { value status reasons { rule jurisdiction } }
               byJurisdiction { jurisdiction status
                                count { value status reasons { rule jurisdiction } } }
               breakdown(by: [JURISDICTION, SEX]) {
                   cells { dimensions { name value } count { value status } } }
           } }"""
    )
    result = body["data"]["cohort"]
    for node in result["byJurisdiction"]:
        count = node["count"]
        minimum = shipped_disclosure_profile(Jurisdiction(node["jurisdiction"])).min_count
        if count["value"] is None:
            assert count["status"] == "LOW"
            assert {"rule": "BELOW_MINIMUM", "jurisdiction": node["jurisdiction"]} in count[
                "reasons"
            ]
        else:
            assert count["value"] >= minimum
    for cell in result["breakdown"]["cells"]:
        # Each cell against its own country's minimum (DE's is 3: a noisy 3 or 4 is released).
        jurisdiction = next(d["value"] for d in cell["dimensions"] if d["name"] == "JURISDICTION")
        minimum = shipped_disclosure_profile(Jurisdiction(jurisdiction)).min_count
        assert cell["count"]["value"] is None or cell["count"]["value"] >= minimum
    # Pooled securely, the count is released only at the strictest minimum of the four.
    pooled = result["count"]
    assert pooled["value"] is None or pooled["value"] >= 11
    assert pooled["status"] in {"LOW", "PERTURBED"}
    assert "SECURE_POOL" in {r["rule"] for r in pooled["reasons"]}


def test_the_same_question_gets_the_same_answer(graphql: Any) -> None:
    first, second = graphql(DIABETIC_WOMEN), graphql(DIABETIC_WOMEN)
    assert first["data"]["cohort"]["count"] == second["data"]["cohort"]["count"]
    assert first["data"]["cohort"]["queryId"] != second["data"]["cohort"]["queryId"]


def test_jurisdictions_lists_the_federation(graphql: Any, federation: LocalFederation) -> None:
    body = graphql("{ jurisdictions { code nodeId minCount } }", auth=None)
    assert {j["code"] for j in body["data"]["jurisdictions"]} == {
        j.value for j in federation.jurisdictions
    }


def test_each_node_is_prepared_against_a_state_directory_of_its_own(
    federation: LocalFederation,
) -> None:
    states = [federation.node_state(j) for j in federation.jurisdictions]

    assert len(set(states)) == len(states)
    assert all(state.parent == federation.state_dir for state in states)
    assert [person_index_size(state) for state in states] == [PERSONS] * len(states)
    assert len({read_secret(state) for state in states}) == len(states)


RECURRENT_DIABETES_WITHOUT_INFARCTION = """
{
  cohort(request: "DR-2026-0042", referenceDate: "2026-01-01",
         criteria: { conditions: [
           { vocabulary: ICD10, code: "E11", atLeast: 2 }
           { vocabulary: ICD10, code: "I20", to: "I25", exclude: true }
         ] }) {
    byJurisdiction { jurisdiction status count { value status sd } }
  }
}
"""


def test_exclusions_counts_and_ranges_are_answered_as_the_truth_with_noise(
    graphql: Any, federation: LocalFederation
) -> None:
    """Persons with at least two type 2 diabetes diagnoses and no ischaemic heart disease
    (I20-I25) ever: the truth counted directly from each node's database."""
    body = graphql(RECURRENT_DIABETES_WITHOUT_INFARCTION)
    assert "errors" not in body, body.get("errors")
    nodes = {n["jurisdiction"]: n for n in body["data"]["cohort"]["byJurisdiction"]}
    for jurisdiction in federation.jurisdictions:
        truth = true_count(
            federation.database(jurisdiction),
            "p.year_of_birth <= 2026 AND p.person_id IN ("
            "  SELECT o.person_id FROM condition_occurrence o"
            "  JOIN concept k ON k.concept_id = o.condition_source_concept_id"
            "  WHERE k.vocabulary_id = 'ICD10' AND k.concept_code LIKE 'E11%'"
            "  GROUP BY o.person_id HAVING count(*) >= 2)"
            " AND p.person_id NOT IN ("
            "  SELECT o.person_id FROM condition_occurrence o"
            "  JOIN concept k ON k.concept_id = o.condition_source_concept_id"
            "  WHERE k.vocabulary_id = 'ICD10'"
            "  AND regexp_matches(k.concept_code, '^I2[0-5]'))",
        )
        assert truth > 0
        node = nodes[jurisdiction.value]
        assert node["status"] == "OK"
        profile = shipped_disclosure_profile(jurisdiction)
        count = node["count"]
        if count["value"] is None:
            assert truth < profile.min_count + 6 * profile.sigma
        else:
            assert abs(count["value"] - truth) <= 6 * profile.sigma
