"""National vocabularies and unknown codes, end to end: a French CDM recording diagnoses in
CIM10 and a German one in ICD10GM answer `ICD10` questions; a code a node's vocabulary does
not hold comes back UNKNOWN_CODE, never as the LOW of a small count."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from policies.loader import shipped_disclosure_profile
from schema.codes import Jurisdiction
from tessera.credentials import Credentials
from tessera.local import LocalFederation
from tests.integration.federation_kit import post, start_federation

pytestmark = pytest.mark.integration

NATIONAL = {Jurisdiction.FR: "CIM10", Jurisdiction.DE: "ICD10GM"}

COHORT = """
query($criteria: CriteriaInput!) {
  cohort(request: "DR-2026-0042", referenceDate: "2026-01-01", criteria: $criteria) {
    count { value status reasons { rule message } }
    byJurisdiction {
      jurisdiction status vocabularies
      unknownCodes { vocabulary code to }
      count { value status sd reasons { rule } }
      reasons { rule jurisdiction message }
      privacy { questionRho }
    }
  }
}
"""


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    fed = start_federation(
        tmp_path_factory.mktemp("vocabularies"),
        tuple(NATIONAL),
        persons=6_000,
        icd10_vocabularies=NATIONAL,
    )
    yield fed
    fed.stop()


@pytest.fixture(scope="module")
def ask(federation: LocalFederation) -> Any:
    credentials: Credentials = federation.researcher()

    def run(criteria: dict[str, Any]) -> dict[str, Any]:
        status, body = post(
            federation.gateway_url,
            {"query": COHORT, "variables": {"criteria": criteria}},
            credentials,
        )
        assert status == 200, body
        assert "errors" not in body, body["errors"]
        result: dict[str, Any] = body["data"]["cohort"]
        return result

    return run


def nodes(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["jurisdiction"]: n for n in result["byJurisdiction"]}


def truth(database: Path, vocabulary: str, prefix: str) -> int:
    return truth_matching(database, vocabulary, "^" + re.escape(prefix))


def test_an_icd10_question_is_answered_from_each_national_modification(
    ask: Any, federation: LocalFederation
) -> None:
    # Written as a researcher may type it: normalised to E11.
    result = ask({"conditions": [{"vocabulary": "ICD10", "code": "e11"}]})
    for jurisdiction, vocabulary in NATIONAL.items():
        node = nodes(result)[jurisdiction.value]
        assert node["status"] == "OK"
        assert node["vocabularies"] == [vocabulary]
        assert node["unknownCodes"] == []
        expected = truth(federation.database(jurisdiction), vocabulary, "E11")
        profile = shipped_disclosure_profile(jurisdiction)
        assert expected > profile.min_count + 6 * profile.sigma  # well above the minimum
        count = node["count"]
        assert count["status"] == "PERTURBED"
        assert abs(count["value"] - expected) <= 6 * count["sd"]


def truth_matching(database: Path, vocabulary: str, pattern: str) -> int:
    with duckdb.connect(str(database), read_only=True) as con:
        row = con.execute(
            """
            SELECT count(DISTINCT o.person_id)
            FROM condition_occurrence o
            JOIN concept c ON c.concept_id = o.condition_source_concept_id
            WHERE c.vocabulary_id = ? AND regexp_matches(c.concept_code, ?)
              AND o.person_id NOT IN (SELECT person_id FROM tessera_optout)
            """,
            [vocabulary, pattern],
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_code_range_is_answered_from_each_national_modification(
    ask: Any, federation: LocalFederation
) -> None:
    # Intellectual disability as a protocol writes it: F70-F79, whatever codes of it a
    # country's modification holds.
    result = ask({"conditions": [{"vocabulary": "ICD10", "code": "f70", "to": "F79"}]})
    for jurisdiction, vocabulary in NATIONAL.items():
        node = nodes(result)[jurisdiction.value]
        assert node["status"] == "OK"
        assert node["vocabularies"] == [vocabulary]
        expected = truth_matching(federation.database(jurisdiction), vocabulary, "^F7[0-9]")
        assert expected > truth(federation.database(jurisdiction), vocabulary, "F70")
        count = node["count"]
        if count["status"] == "PERTURBED":
            assert abs(count["value"] - expected) <= 6 * count["sd"]
        else:
            assert count["status"] == "LOW"
    # A range no code of which the vocabularies hold is unknown, named as written.
    unknown = ask({"drugs": [{"vocabulary": "ATC", "code": "C10AA", "to": "C10AX"}]})
    for node in unknown["byJurisdiction"]:
        assert node["status"] == "UNKNOWN_CODE"
        assert node["unknownCodes"] == [{"vocabulary": "ATC", "code": "C10AA", "to": "C10AX"}]


def test_an_unknown_code_is_not_a_small_count(ask: Any) -> None:
    unknown = ask({"conditions": [{"vocabulary": "ICD10", "code": "Z99.99"}]})
    for node in unknown["byJurisdiction"]:
        assert node["status"] == "UNKNOWN_CODE"
        assert node["unknownCodes"] == [{"vocabulary": "ICD10", "code": "Z99.99", "to": None}]
        assert node["count"] is None
        assert node["privacy"] is None  # nothing computed, nothing charged
        assert [r["rule"] for r in node["reasons"]] == ["UNKNOWN_CODE"]
    assert unknown["count"]["value"] is None
    assert "UNKNOWN_CODE" in unknown["count"]["reasons"][0]["message"]

    # An ATC class the vocabularies do not hold, next to one they do.
    atc = ask(
        {
            "conditions": [{"vocabulary": "ICD10", "code": "E11"}],
            "drugs": [{"vocabulary": "ATC", "code": "C10"}, {"vocabulary": "ATC", "code": "A10"}],
        }
    )
    for node in atc["byJurisdiction"]:
        assert node["status"] == "UNKNOWN_CODE"
        assert node["unknownCodes"] == [{"vocabulary": "ATC", "code": "C10", "to": None}]

    # Known to every vocabulary, and nobody has it in that window: a count, noisy as any
    # (mostly LOW; now and then noise lifts a zero above the minimum), never UNKNOWN_CODE.
    nobody = ask(
        {
            "drugs": [
                {
                    "vocabulary": "ATC",
                    "code": "J07BN01",
                    "window": {"start": "1990-01-01", "end": "1990-12-31"},
                }
            ]
        }
    )
    for node in nobody["byJurisdiction"]:
        assert node["status"] == "OK"
        assert node["vocabularies"] == ["ATC"]
        count = node["count"]
        assert count["status"] in ("LOW", "PERTURBED")
        assert (count["value"] is None) == (count["status"] == "LOW")
        assert (count["value"] or 0) <= 6 * count["sd"]
        assert node["privacy"]["questionRho"] > 0


CONCEPTS = """
query($codes: [CodeInput!]!) {
  concepts(codes: $codes) {
    vocabulary code to descendants name knownBy
    byJurisdiction {
      jurisdiction status known descendantCount
      matches { vocabulary code name standard }
      descendants { vocabulary code name standard }
    }
  }
}
"""


def test_the_nodes_say_which_codes_their_vocabularies_hold(federation: LocalFederation) -> None:
    codes = [
        {"vocabulary": "ICD10", "code": "e119"},
        {"vocabulary": "ICD10", "code": "E11"},
        {"vocabulary": "ICD10", "code": "Z99.99"},
        {"vocabulary": "SNOMED", "code": "44054006"},
    ]
    # A researcher's token and no permit at all: nothing about a person is read.
    token = Credentials.of(federation.researcher().bearer)
    status, body = post(
        federation.gateway_url, {"query": CONCEPTS, "variables": {"codes": codes}}, token
    )
    assert status == 200, body
    assert "errors" not in body, body["errors"]
    e119, e11, z99, t2d = body["data"]["concepts"]
    assert e119["code"] == "E11.9"
    assert e119["name"] == "Type 2 diabetes mellitus without complications"
    assert sorted(e119["knownBy"]) == ["DE", "FR"]
    for node in e11["byJurisdiction"]:
        vocabulary = NATIONAL[Jurisdiction(node["jurisdiction"])]
        assert node["status"] == "OK"
        assert node["known"] is True
        assert node["matches"] == [
            {
                "vocabulary": vocabulary,
                "code": "E11",
                "name": "Type 2 diabetes mellitus",
                "standard": False,
            }
        ]
        # The codes below E11 in the node's own ICD-10 modification, reached by prefix (ICD-10
        # is not in concept_ancestor): what the node lists is what a question counts.
        listed = {(d["vocabulary"], d["code"]) for d in node["descendants"]}
        assert {(vocabulary, c) for c in ("E11.2", "E11.4", "E11.6", "E11.9")} <= listed
        assert node["descendantCount"] == len(node["descendants"])
    assert z99["knownBy"] == []
    assert z99["name"] is None
    assert {n["known"] for n in z99["byJurisdiction"]} == {False}
    # SNOMED type 2 diabetes: a standard concept with its hierarchy below it.
    assert t2d["name"] == "Type 2 diabetes mellitus"
    for node in t2d["byJurisdiction"]:
        assert node["matches"][0]["standard"] is True
        assert node["descendantCount"] >= 3
    # A range: the codes of it the node's vocabulary holds are its matches.
    status, body = post(
        federation.gateway_url,
        {
            "query": CONCEPTS,
            "variables": {"codes": [{"vocabulary": "ICD10", "code": "F70", "to": "f79"}]},
        },
        token,
    )
    assert "errors" not in body, body
    (f7x,) = body["data"]["concepts"]
    assert (f7x["code"], f7x["to"]) == ("F70", "F79")
    assert sorted(f7x["knownBy"]) == ["DE", "FR"]
    for node in f7x["byJurisdiction"]:
        vocabulary = NATIONAL[Jurisdiction(node["jurisdiction"])]
        codes = {(m["vocabulary"], m["code"]) for m in node["matches"]}
        assert {(vocabulary, c) for c in ("F70", "F71", "F72", "F73", "F79")} <= codes
    # The unknown code is refused as bad input nowhere: only malformed codes are.
    status, body = post(
        federation.gateway_url,
        {"query": CONCEPTS, "variables": {"codes": [{"vocabulary": "ICD10", "code": "E11'"}]}},
        token,
    )
    assert body["errors"][0]["extensions"]["code"] == "INVALID_CODE"
