"""Planning: the whole selection becomes one request per node."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.nodes import MockNodeClient
from gateway.planner import default_reference_date, plan_query
from schema.codes import Dimension, Jurisdiction, Vocabulary
from schema.errors import ErrorCode, TesseraError
from schema.query import Criteria
from tests.gateway.gateway_kit import AGE10, APPROVAL, MEMBERS, REQUEST_ID, SEX, SUBJECT, error_code

D = Dimension


def node_tables(nodes: MockNodeClient) -> list[tuple[Dimension, ...]]:
    assert len(nodes.calls) == len(MEMBERS), "one request per node"
    tables = {tuple(c.request.query.tables) for c in nodes.calls}
    assert len(tables) == 1, "every node gets the same question"
    return list(tables.pop())


async def test_aliases_fragments_and_variables_make_one_request(
    graphql: Any, nodes: MockNodeClient
) -> None:
    query = """
    query Q($dims: [Dimension!]!, $band: Dimension!) {
      cohort(request: "DR-2026-0042", criteria: { sex: FEMALE }) {
        count { value }
        bySex: breakdown(by: [SEX]) { ...cells }
        again: breakdown(by: [SEX]) { by }
        ... on CohortResult { byVar: breakdown(by: $dims) { ...cells } }
        ...More
      }
    }
    fragment More on CohortResult {
      mixed: breakdown(by: [JURISDICTION, $band]) { ...cells }
    }
    fragment cells on Breakdown { by cells { dimensions { name value } count { value } } }
    """
    body = await graphql(query, {"dims": ["SEX", "CALENDAR_YEAR"], "band": "AGE_BAND_10"})
    assert "errors" not in body, body
    assert node_tables(nodes) == [(), SEX, (D.SEX, D.CALENDAR_YEAR), AGE10]
    result = body["data"]["cohort"]
    assert result["bySex"]["by"] == result["again"]["by"] == ["SEX"]
    assert result["byVar"]["by"] == ["SEX", "CALENDAR_YEAR"]
    assert result["mixed"]["by"] == ["JURISDICTION", "AGE_BAND_10"]
    # Every band of the public domain, from every node.
    assert {tuple(d["value"] for d in c["dimensions"]) for c in result["mixed"]["cells"]} == {
        (j.value, f"{low}-{low + 9}") for j in MEMBERS for low in range(0, 131, 10)
    }


async def test_single_value_for_a_list_argument(graphql: Any, nodes: MockNodeClient) -> None:
    # GraphQL coerces one value into a one-element list, in a literal and in a variable.
    body = await graphql(
        'query($d: [Dimension!]!) { cohort(request: "DR-2026-0042", criteria: {}) '
        "{ a: breakdown(by: SEX) { by } b: breakdown(by: $d) { by } } }",
        {"d": "AGE_BAND_10"},
    )
    assert "errors" not in body, body
    assert node_tables(nodes) == [(), SEX, AGE10]
    assert body["data"]["cohort"]["b"]["by"] == ["AGE_BAND_10"]


async def test_jurisdiction_is_stripped_from_node_tables(
    graphql: Any, nodes: MockNodeClient
) -> None:
    body = await graphql(
        '{ cohort(request: "DR-2026-0042", criteria: {}) {'
        " a: breakdown(by: [JURISDICTION]) { by }"
        " b: breakdown(by: [SEX, JURISDICTION]) { by }"
        " c: breakdown(by: [JURISDICTION, SEX]) { by } } }"
    )
    assert "errors" not in body, body
    assert node_tables(nodes) == [(), SEX]


async def test_skipped_breakdowns_are_not_asked(graphql: Any, nodes: MockNodeClient) -> None:
    body = await graphql(
        'query($yes: Boolean!) { cohort(request: "DR-2026-0042", criteria: {}) {'
        " a: breakdown(by: [SEX]) @skip(if: $yes) { by }"
        " b: breakdown(by: [AGE_BAND_10]) @include(if: $yes) { by }"
        " ... @include(if: false) { c: breakdown(by: [CALENDAR_YEAR]) { by } } } }",
        {"yes": True},
    )
    assert "errors" not in body, body
    assert node_tables(nodes) == [(), AGE10]
    assert set(body["data"]["cohort"]) == {"b"}


async def test_each_cohort_field_is_planned_separately(graphql: Any, nodes: MockNodeClient) -> None:
    body = await graphql(
        '{ a: cohort(request: "DR-2026-0042", criteria: {sex: MALE}) { breakdown(by: [SEX]) '
        '{ by } } b: cohort(request: "DR-2026-0042", criteria: {sex: FEMALE}) { count { value }'
        " } }"
    )
    assert "errors" not in body, body
    tables = sorted(
        (c.request.query.criteria.sex, tuple(c.request.query.tables)) for c in nodes.calls
    )
    assert tables == [("FEMALE", ((),))] * 3 + [("MALE", ((), SEX))] * 3


async def test_reference_date_defaults_to_the_first_of_january(
    graphql: Any, nodes: MockNodeClient
) -> None:
    body = await graphql('{ cohort(request: "DR-2026-0042", criteria: {}) { referenceDate } }')
    expected = dt.date(dt.datetime.now(dt.UTC).year, 1, 1)
    assert body["data"]["cohort"]["referenceDate"] == expected.isoformat()
    assert nodes.calls[0].request.query.reference_date == expected


async def test_too_many_breakdowns(graphql: Any) -> None:
    fields = (
        " ".join(
            f"b{i}: breakdown(by: [SEX, CALENDAR_YEAR, AGE_BAND_{w}]) {{ by }}"
            for i, w in enumerate((5, 10, 20))
        )
        + " ".join(
            f" c{i}: breakdown(by: [{d}]) {{ by }}"
            for i, d in enumerate(
                ("SEX", "CALENDAR_YEAR", "AGE_BAND_5", "AGE_BAND_10", "AGE_BAND_20")
            )
        )
        + " d: breakdown(by: [SEX, AGE_BAND_5]) { by }"
    )
    body = await graphql(f'{{ cohort(request: "DR-2026-0042", criteria: {{}}) {{ {fields} }} }}')
    assert error_code(body) == "INVALID_CRITERIA"
    assert body["errors"][0]["message"].startswith("breakdown: ")


def plan(**kwargs: Any) -> Any:
    arguments: dict[str, Any] = {
        "members": MEMBERS,
        "request_id": REQUEST_ID,
        "subject": SUBJECT,
        "criteria": {},
        "jurisdictions": None,
        "reference_date": dt.date(2026, 1, 1),
        "tables": [],
    }
    arguments.update(kwargs)
    return plan_query(**arguments)


def test_plan_defaults_to_every_member_and_the_total() -> None:
    p = plan()
    assert set(p.jurisdictions) == set(MEMBERS)
    assert p.tables == ((),)
    assert p.node_query.tables == [()]
    assert p.node_query.criteria == Criteria()
    request = p.node_request(Jurisdiction.DK, APPROVAL)
    assert (request.jurisdiction, request.query_id, request.request_id) == (
        Jurisdiction.DK,
        p.query_id,
        REQUEST_ID,
    )


def test_plan_keeps_gateway_tables_and_strips_node_tables() -> None:
    p = plan(tables=[(D.JURISDICTION, D.SEX), (D.SEX,), (D.JURISDICTION,)])
    assert p.tables == ((), (D.JURISDICTION, D.SEX), (D.SEX,), (D.JURISDICTION,))
    assert p.node_query.tables == [(), (D.SEX,)]


def test_unknown_jurisdiction_lists_the_members() -> None:
    with pytest.raises(TesseraError) as caught:
        plan(jurisdictions=[Jurisdiction.FR, Jurisdiction.SE])
    assert caught.value.code is ErrorCode.UNKNOWN_JURISDICTION
    assert caught.value.extensions["unknown"] == ["SE"]
    assert "members: FR, DK, NO" in caught.value.message


def test_an_empty_jurisdiction_list_is_invalid() -> None:
    with pytest.raises(TesseraError) as caught:
        plan(jurisdictions=[])
    assert caught.value.code is ErrorCode.INVALID_CRITERIA
    assert caught.value.message.startswith("jurisdictions: ")


def test_invalid_criteria_never_echo_the_input() -> None:
    huge = "x" * 5000
    with pytest.raises(TesseraError) as caught:
        plan(criteria={"sex": huge})
    assert caught.value.code is ErrorCode.INVALID_CRITERIA
    assert huge[:50] not in str(caught.value.extensions)
    assert caught.value.message.startswith("criteria.sex: ")


def test_repeated_jurisdiction_in_a_breakdown_is_invalid() -> None:
    with pytest.raises(TesseraError) as caught:
        plan(tables=[(D.JURISDICTION, D.JURISDICTION)])
    assert caught.value.message == "breakdown: a breakdown repeats a dimension"


def test_default_reference_date() -> None:
    assert default_reference_date(dt.date(2027, 8, 14)) == dt.date(2027, 1, 1)


def test_a_question_too_large_for_one_node_request_is_invalid() -> None:
    events = [{"vocabulary": "SNOMED", "code": "1234567890123"}] * 32
    group = {"conditions": events, "drugs": events, "measurements": events}
    with pytest.raises(TesseraError) as caught:
        plan(criteria={**group, "any_of": [{**group, "any_of": [group] * 8}] * 8})
    assert caught.value.code is ErrorCode.INVALID_CRITERIA
    assert "too large" in caught.value.message


async def test_a_code_range_reaches_the_nodes_normalised(
    graphql: Any, nodes: MockNodeClient
) -> None:
    criteria = '{ conditions: [{ vocabulary: ICD10, code: "f70", to: "f79" }] }'
    body = await graphql(
        f'{{ cohort(request: "DR-2026-0042", criteria: {criteria}) {{ count {{ value }} }} }}'
    )
    assert "errors" not in body, body
    (condition,) = nodes.calls[0].request.query.criteria.conditions
    assert (condition.code, condition.to) == ("F70", "F79")


def test_a_malformed_end_of_a_range_is_an_invalid_code_naming_the_field() -> None:
    with pytest.raises(TesseraError) as caught:
        plan(
            criteria={
                "conditions": [{"vocabulary": Vocabulary.ICD10, "code": "F70", "to": "F7'--"}]
            }
        )
    assert caught.value.code is ErrorCode.INVALID_CODE
    assert caught.value.message == "criteria.conditions[0].to is not a well-formed ICD10 code"


def test_a_range_out_of_order_is_invalid_criteria_saying_why() -> None:
    with pytest.raises(TesseraError) as caught:
        plan(criteria={"drugs": [{"vocabulary": "ATC", "code": "A10BX", "to": "A10BA"}]})
    assert caught.value.code is ErrorCode.INVALID_CRITERIA
    assert caught.value.message == "criteria.drugs[0]: a range starts before it ends"
    assert "A10" not in caught.value.message


async def test_exclusions_and_counts_reach_the_nodes(graphql: Any, nodes: MockNodeClient) -> None:
    criteria = (
        '{ conditions: [{ vocabulary: ICD10, code: "E11", atLeast: 2 }'
        ' { vocabulary: ICD10, code: "C00", to: "C97", exclude: true }] }'
    )
    body = await graphql(
        f'{{ cohort(request: "DR-2026-0042", criteria: {criteria}) {{ count {{ value }} }} }}'
    )
    assert "errors" not in body, body
    diabetes, cancer = nodes.calls[0].request.query.criteria.conditions
    assert (diabetes.at_least, diabetes.exclude) == (2, False)
    assert (cancer.at_least, cancer.exclude, cancer.to) == (1, True, "C97")


@pytest.mark.parametrize("at_least", [0, -1, 101])
def test_an_occurrence_count_out_of_bounds_is_invalid_criteria(at_least: int) -> None:
    with pytest.raises(TesseraError) as caught:
        plan(
            criteria={
                "conditions": [
                    {"vocabulary": Vocabulary.ICD10, "code": "E11", "at_least": at_least}
                ]
            }
        )
    assert caught.value.code is ErrorCode.INVALID_CRITERIA
    assert caught.value.message.startswith("criteria.conditions[0].atLeast: ")


async def test_prior_observation_reaches_the_nodes(graphql: Any, nodes: MockNodeClient) -> None:
    criteria = '{ priorObservationDays: 365, conditions: [{ vocabulary: ICD10, code: "E11" }] }'
    body = await graphql(
        f'{{ cohort(request: "DR-2026-0042", criteria: {criteria}) {{ count {{ value }} }} }}'
    )
    assert "errors" not in body, body
    assert nodes.calls[0].request.query.criteria.prior_observation_days == 365


@pytest.mark.parametrize("days", [-1, 3654])
def test_prior_observation_out_of_bounds_is_invalid_criteria(days: int) -> None:
    with pytest.raises(TesseraError) as caught:
        plan(criteria={"prior_observation_days": days})
    assert caught.value.code is ErrorCode.INVALID_CRITERIA
    assert caught.value.message.startswith("criteria.priorObservationDays: ")


async def test_death_reaches_the_nodes(graphql: Any, nodes: MockNodeClient) -> None:
    criteria = (
        '{ death: { window: { start: "2020-01-01" } }, anyOf: [{ death: { exclude: true } }] }'
    )
    body = await graphql(
        f'{{ cohort(request: "DR-2026-0042", criteria: {criteria}) {{ count {{ value }} }} }}'
    )
    assert "errors" not in body, body
    criteria_sent = nodes.calls[0].request.query.criteria
    assert criteria_sent.death is not None
    assert criteria_sent.death.window is not None
    assert (criteria_sent.death.window.start, criteria_sent.death.exclude) == (
        dt.date(2020, 1, 1),
        False,
    )
    assert criteria_sent.any_of[0].death is not None
    assert criteria_sent.any_of[0].death.exclude
