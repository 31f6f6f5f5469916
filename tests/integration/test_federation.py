"""A researcher's question answered end to end by real connector processes and the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from connectors.persons import person_index_size, read_secret
from policies.loader import shipped_disclosure_profile
from schema.codes import Jurisdiction
from tessera.local import LocalFederation
from tests.integration.conftest import PERSONS

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

DIABETIC_WOMEN = """
query($j: [Jurisdiction!]) {
  cohort(request: "DR-2026-0042", jurisdictions: $j, referenceDate: "2026-01-01",
         criteria: { sex: FEMALE, age: { min: 40, max: 69 },
                     conditions: [{ vocabulary: ICD10, code: "E11" }] }) {
    queryId
    count { value status reasons { rule jurisdiction message } }
    byJurisdiction { jurisdiction status latencyMs
                     count { value status bound reasons { rule } } }
    bySexAge: breakdown(by: [JURISDICTION, AGE_BAND_10]) {
      by
      cells { dimensions { name value } count { value status bound } }
    }
  }
}
"""


def true_count(database: Path, sql_where: str) -> int:
    """The truth, computed independently of the connector's compiler."""
    with duckdb.connect(str(database), read_only=True) as con:
        row = con.execute(
            f"""
            SELECT count(DISTINCT p.person_id)
            FROM person p
            JOIN condition_occurrence co ON co.person_id = p.person_id
            JOIN concept c ON c.concept_id = co.condition_source_concept_id
            WHERE {sql_where}
              AND p.person_id NOT IN (SELECT person_id FROM tessera_optout)
            """  # noqa: S608 - fixed test SQL
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.graphql")), ids=lambda p: p.stem)
def test_every_example_query_is_answered(graphql: Any, example: Path) -> None:
    body = graphql(example.read_text())
    assert "errors" not in body, body.get("errors")
    for result in body["data"].values():
        assert {n["status"] for n in result["byJurisdiction"]} == {"OK"}


def test_node_counts_are_the_true_counts_or_suppressed(
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
        if truth < profile.min_count:
            assert count["value"] is None
            assert count["status"] == "SUPPRESSED"
        elif profile.perturbs:
            # Germany: consistent noise of at most ±max_noise (cell-key method).
            assert count["status"] == "PERTURBED"
            assert abs(count["value"] - truth) <= profile.perturbation_max_noise
            assert [r["rule"] for r in count["reasons"]] == ["CELL_KEY_PERTURBATION"]
        else:
            assert count == {"value": truth, "status": "EXACT", "bound": None, "reasons": []}
        total += count["value"] or 0
    assert body["data"]["cohort"]["count"]["value"] == total


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
            noise[j] = noise.get(j, 0.0) + (cell["count"]["bound"] or 0.0)
    for node in result["byJurisdiction"]:
        j = node["jurisdiction"]
        released = per_country.get(j, 0)
        # Released cells never add up to more than the country's count, up to the noise of
        # a perturbing country (whose numbers need not add up).
        assert released <= node["count"]["value"] + noise.get(j, 0.0) + (
            node["count"]["bound"] or 0.0
        )


def test_a_count_below_the_minimum_is_never_released(graphql: Any) -> None:
    body = graphql(
        """{ cohort(request: "DR-2026-0042",
                    criteria: { conditions: [{ vocabulary: ICD10, code: "C49" }] }) {
               count { value status reasons { rule jurisdiction } }
               byJurisdiction { jurisdiction status
                                count { value status reasons { rule jurisdiction } } }
               breakdown(by: [JURISDICTION, SEX]) { cells { count { value status } } }
           } }"""
    )
    result = body["data"]["cohort"]
    for node in result["byJurisdiction"]:
        count = node["count"]
        minimum = shipped_disclosure_profile(Jurisdiction(node["jurisdiction"])).min_count
        if count["value"] is None:
            assert count["status"] == "SUPPRESSED"
            assert {"rule": "PRIMARY_SUPPRESSION", "jurisdiction": node["jurisdiction"]} in count[
                "reasons"
            ]
        else:
            assert count["value"] >= minimum
    for cell in result["breakdown"]["cells"]:
        assert cell["count"]["value"] is None or cell["count"]["value"] >= 5
    if any(n["count"]["value"] is None for n in result["byJurisdiction"]):
        assert result["count"]["value"] is None
        assert result["count"]["status"] == "SUPPRESSED"


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
