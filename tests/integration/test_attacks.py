"""The known attacks on threshold suppression, replayed through the real GraphQL endpoint
against real connectors on synthetic OMOP data. Each attack must fail; each test says what the
attacker learned (interval widths, the spread of repeated answers, refusals).

The attacker of margin and cross-border subtraction is tests/attacker.py: integer programming
over every number released in one answer. Truths are computed straight from the databases,
independently of the connector's compiler, so each test also checks that there was something
to protect.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

import duckdb
import pytest

from policies.differencing import DIFFERENCING_GUARD
from policies.loader import shipped_disclosure_profile
from policies.profiles import strictest
from schema.codes import Dimension, Jurisdiction
from schema.query import Breakdown
from schema.result import Reason, Value
from tessera.local import LocalFederation
from tests.attacker import narrowed, small_counts
from tests.integration.conftest import post

pytestmark = pytest.mark.integration

J, SEX, AGE5 = Dimension.JURISDICTION, Dimension.SEX, Dimension.AGE_BAND_5
COUNT = "value status bound reasons { rule jurisdiction }"
E11 = '{ vocabulary: ICD10, code: "E11" }'


@pytest.fixture
def graphql(federation: LocalFederation, request: pytest.FixtureRequest) -> Any:
    """A researcher with permits of their own for this test (`DR-ATTACK-<test>`, one data
    request id across every HDAB): the differencing guard keeps its history per approval,
    so each attack starts afresh."""
    approval = f"DR-ATTACK-{request.node.name.removeprefix('test_')[:40]}".replace("_", "-")
    token = federation.credentials(federation.permits(request_id=approval, application_id=None))

    def run(query: str) -> dict[str, Any]:
        _, body = post(federation.gateway_url, {"query": query.replace(APPROVAL, approval)}, token)
        return body

    return run


APPROVAL = "__APPROVAL__"


def ask(
    graphql: Any,
    criteria: str,
    *,
    tables: Mapping[str, str] | None = None,
    jurisdictions: str = "",
) -> Any:
    where = f", jurisdictions: [{jurisdictions}]" if jurisdictions else ""
    breakdowns = "".join(
        f"{alias}: breakdown(by: [{by}]) {{ cells {{ dimensions {{ name value }} "
        f"count {{ {COUNT} }} }} }}\n"
        for alias, by in (tables or {}).items()
    )
    body = graphql(
        f"""{{ cohort(request: "{APPROVAL}", referenceDate: "2026-01-01"{where},
                      criteria: {criteria}) {{
                 count {{ {COUNT} }}
                 byJurisdiction {{ jurisdiction status
                                   reasons {{ rule jurisdiction message }}
                                   count {{ {COUNT} }} }}
                 {breakdowns}
             }} }}"""
    )
    assert "errors" not in body, body.get("errors")
    return body["data"]["cohort"]


def value_of(count: Mapping[str, Any]) -> Value:
    return Value(
        value=count["value"],
        status=count["status"],
        bound=count["bound"],
        reasons=[Reason(rule=r["rule"], jurisdiction=r["jurisdiction"]) for r in count["reasons"]],
    )


def released(result: Any, tables: Mapping[str, Breakdown]) -> tuple[Any, Any]:
    """Everything one answer releases, as the attacker reads it, with each cell's minimum
    count (that of its country, or the strictest of the answering countries)."""
    answering = [
        Jurisdiction(n["jurisdiction"]) for n in result["byJurisdiction"] if n["status"] == "OK"
    ]
    pooled_min = strictest(shipped_disclosure_profile(j) for j in answering).min_count
    values: dict[Breakdown, dict[tuple[str, ...], Value]] = {
        (): {(): value_of(result["count"])},
        (J,): {
            (n["jurisdiction"],): value_of(n["count"])
            for n in result["byJurisdiction"]
            if n["status"] == "OK"
        },
    }
    for alias, by in tables.items():
        values[by] = {
            tuple(d["value"] for d in cell["dimensions"]): value_of(cell["count"])
            for cell in result[alias]["cells"]
        }
    thresholds = {
        by: {
            key: shipped_disclosure_profile(Jurisdiction(key[by.index(J)])).min_count
            if J in by
            else pooled_min
            for key in cells
        }
        for by, cells in values.items()
    }
    return values, thresholds


def truth(federation: LocalFederation, jurisdiction: Jurisdiction, where: str) -> int:
    """Diabetics (ICD10 E11 and below) matching `where`, straight from the database."""
    with duckdb.connect(str(federation.database(jurisdiction)), read_only=True) as con:
        row = con.execute(
            f"""
            SELECT count(DISTINCT p.person_id)
            FROM person p
            JOIN condition_occurrence co ON co.person_id = p.person_id
            JOIN concept c ON c.concept_id = co.condition_source_concept_id
            WHERE c.vocabulary_id = 'ICD10' AND c.concept_code LIKE 'E11%'
              AND p.year_of_birth <= 2026
              AND p.person_id NOT IN (SELECT person_id FROM tessera_optout)
              AND ({where})
            """  # noqa: S608 - fixed test SQL
        ).fetchone()
    assert row is not None
    return int(row[0])


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n  attacker learned: {line}")


# -- margin subtraction ------------------------------------------------------------------------
def test_margin_subtraction_learns_nothing(
    graphql: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tables = {"bySexAge": (J, SEX, AGE5), "bySex": (J, SEX), "byAge": (J, AGE5)}
    # France alone (exact counts, a minimum of 11), its cells labelled by country.
    result = ask(
        graphql,
        f"{{ age: {{ min: 80 }}, conditions: [{E11}] }}",
        tables={
            "bySexAge": "JURISDICTION, SEX, AGE_BAND_5",
            "bySex": "JURISDICTION, SEX",
            "byAge": "JURISDICTION, AGE_BAND_5",
        },
        jurisdictions="FR",
    )
    values, thresholds = released(result, tables)
    small = small_counts(values)
    assert small, "the breakdown has small counts to protect"
    assert narrowed(values, thresholds) == {}
    report(capsys, f"nothing about {len(small)} small counts beyond 'below the minimum'")


# -- cross-country subtraction -----------------------------------------------------------------
def test_the_pooled_total_minus_the_other_countries_reveals_no_country(
    graphql: Any, federation: LocalFederation, capsys: pytest.CaptureFixture[str]
) -> None:
    tables = {"byCountrySex": (J, SEX), "bySex": (SEX,)}
    result = ask(
        graphql,
        f"{{ age: {{ min: 96 }}, conditions: [{E11}] }}",
        tables={"byCountrySex": "JURISDICTION, SEX", "bySex": "SEX"},
    )
    truths = {
        j: truth(federation, j, "2026 - p.year_of_birth >= 96") for j in federation.jurisdictions
    }
    small = [j for j, n in truths.items() if 0 < n < shipped_disclosure_profile(j).min_count]
    assert small, f"a country below its minimum is needed: {truths}"
    nodes = {n["jurisdiction"]: n for n in result["byJurisdiction"]}
    for j in small:
        assert nodes[j.value]["count"]["value"] is None
    # The EU total is not computed from a withheld part, so there is nothing to subtract from.
    assert result["count"]["value"] is None
    values, thresholds = released(result, tables)
    assert narrowed(values, thresholds) == {}
    report(capsys, f"nothing about {', '.join(j.value for j in small)} (below their minimum)")


# -- averaging repeated queries ----------------------------------------------------------------
def test_averaging_repeated_and_reworded_queries_learns_nothing(
    graphql: Any, federation: LocalFederation, capsys: pytest.CaptureFixture[str]
) -> None:
    wordings = [
        f"{{ conditions: [{E11}] }}",
        f"{{ anyOf: [{{ conditions: [{E11}] }}] }}",
        f"{{ anyOf: [{{ conditions: [{E11}] }}, {{ conditions: [{E11}] }}] }}",
        f"{{ age: {{ min: 0 }}, conditions: [{E11}] }}",
    ]
    answers = [
        {n["jurisdiction"]: n["count"] for n in ask(graphql, wordings[i % 4])["byJurisdiction"]}
        for i in range(24)
    ]
    germany = [a["DE"] for a in answers]
    assert {c["status"] for c in germany} == {"PERTURBED"}
    values = [c["value"] for c in germany]
    true_de = truth(federation, Jurisdiction.DE, "TRUE")
    # Every answer is the same number: their mean is one answer, their variance zero.
    assert statistics.pvariance(values) == 0
    assert abs(statistics.mean(values) - true_de) == abs(values[0] - true_de) <= 2
    for j in ("FR", "FI", "DK"):
        assert len({a[j]["value"] for a in answers}) == 1
    report(
        capsys,
        f"24 answers for DE, variance {statistics.pvariance(values)}: the mean is one answer, "
        f"still within ±2 of the truth and no closer",
    )


# -- differencing (tracker) ----------------------------------------------------------------------
def test_a_tracker_pair_is_refused_where_it_would_isolate_a_few_persons(
    graphql: Any, federation: LocalFederation, capsys: pytest.CaptureFixture[str]
) -> None:
    everyone = ask(graphql, f"{{ conditions: [{E11}] }}")
    # "All diabetics except those aged 100": the difference is a handful of persons.
    all_but = ask(graphql, f"{{ age: {{ max: 99 }}, conditions: [{E11}] }}")
    first = {n["jurisdiction"]: n for n in everyone["byJurisdiction"]}
    second = {n["jurisdiction"]: n for n in all_but["byJurisdiction"]}
    refused = []
    for j in federation.jurisdictions:
        difference = truth(federation, j, "2026 - p.year_of_birth >= 100")
        floor = shipped_disclosure_profile(j).differencing_floor
        assert first[j.value]["status"] == "OK"
        if 0 < difference < floor:
            assert second[j.value]["status"] == "DENIED"
            assert [r["rule"] for r in second[j.value]["reasons"]] == [DIFFERENCING_GUARD]
            assert str(difference) not in second[j.value]["reasons"][0]["message"]
            refused.append(j.value)
        else:
            assert second[j.value]["status"] == "OK"
            a, b = first[j.value]["count"]["value"], second[j.value]["count"]["value"]
            noise = (first[j.value]["count"]["bound"] or 0) + (
                second[j.value]["count"]["bound"] or 0
            )
            assert a - b == 0 or a - b >= floor - noise
    assert refused, "the tracker must isolate fewer than k persons somewhere"
    report(capsys, f"refusals from {', '.join(refused)}; elsewhere differences of 0 or ≥ k")


# -- a histogram with a one-person bin -----------------------------------------------------------
def test_a_one_person_bin_is_never_released(
    graphql: Any, federation: LocalFederation, capsys: pytest.CaptureFixture[str]
) -> None:
    tables = {"histogram": (J, AGE5, SEX)}
    result = ask(
        graphql,
        f"{{ age: {{ min: 95 }}, conditions: [{E11}] }}",
        tables={"histogram": "JURISDICTION, AGE_BAND_5, SEX"},
    )
    sex = (
        "CASE p.gender_concept_id WHEN 8532 THEN 'FEMALE' WHEN 8507 THEN 'MALE' ELSE 'UNKNOWN' END"
    )
    ones = []
    for j in federation.jurisdictions:
        for band, low, high in (("95-99", 95, 99), ("100-104", 100, 104)):
            for s in ("FEMALE", "MALE", "UNKNOWN"):
                n = truth(
                    federation,
                    j,
                    f"2026 - p.year_of_birth BETWEEN {low} AND {high} AND {sex} = '{s}'",
                )
                if n == 1:
                    ones.append((j.value, band, s))
    assert ones, "the histogram has one-person bins"
    cells = {
        tuple(d["value"] for d in c["dimensions"]): c["count"] for c in result["histogram"]["cells"]
    }
    for key in ones:
        assert cells[key]["value"] is None
        assert cells[key]["status"] == "SUPPRESSED"
    for key, count in cells.items():
        minimum = shipped_disclosure_profile(Jurisdiction(key[0])).min_count
        assert count["value"] is None or count["value"] >= minimum
    values, thresholds = released(result, tables)
    assert narrowed(values, thresholds) == {}
    report(capsys, f"nothing about {len(ones)} one-person bins")


# -- isolating one person by narrow criteria -----------------------------------------------------
def test_narrow_criteria_isolating_one_person_release_nothing(
    graphql: Any, federation: LocalFederation, capsys: pytest.CaptureFixture[str]
) -> None:
    isolated = {
        j
        for j in federation.jurisdictions
        if truth(federation, j, "2026 - p.year_of_birth = 98") == 1
    }
    assert isolated, "some country has exactly one diabetic aged 98"
    result = ask(
        graphql,
        f"{{ age: {{ min: 98, max: 98 }}, conditions: [{E11}] }}",
        tables={"bySex": "JURISDICTION, SEX"},
    )
    nodes = {n["jurisdiction"]: n for n in result["byJurisdiction"]}
    for j in isolated:
        count = nodes[j.value]["count"]
        assert count["value"] is None
        assert {"rule": "PRIMARY_SUPPRESSION", "jurisdiction": j.value} in count["reasons"]
    for cell in result["bySex"]["cells"]:
        country = cell["dimensions"][0]["value"]
        if Jurisdiction(country) in isolated:
            assert cell["count"]["value"] is None
    assert result["count"]["value"] is None
    report(capsys, f"only 'below the minimum' for {', '.join(sorted(j.value for j in isolated))}")
