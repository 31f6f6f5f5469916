"""Index events and criteria relative to them, from GraphQL to the nodes' question; their
errors name the field and never quote the input."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.nodes import MockNodeClient
from gateway.planner import plan_query
from schema.codes import AgeAt, EventDomain, Occurrence, VisitType, Vocabulary
from schema.errors import ErrorCode, TesseraError
from tests.gateway.gateway_kit import MEMBERS, REQUEST_ID, SUBJECT

EPI_PHARE = """
{
  cohort(
    request: "DR-2026-0042"
    index: {
      events: [{ domain: DRUG, codes: [{ vocabulary: ATC, code: "J07BN01" }] }]
      occurrence: ALL
      window: { start: "2021-01-01" }
      priorObservationDays: 365
      postObservationDays: 21
    }
    criteria: {
      age: { max: 29 }
      relative: [
        {
          event: {
            domain: CONDITION
            codes: [{ vocabulary: ICD10, code: "I40" }, { vocabulary: ICD10, code: "I30" }]
            excluded: [{ vocabulary: ICD10, code: "I30.1", descendants: false }]
            visit: INPATIENT_OR_EMERGENCY
          }
          window: { startDays: 1, endDays: 7 }
        }
        { event: { domain: DEATH }, window: { startDays: -36525, endDays: 0 }, exclude: true }
      ]
      anyOf: [
        { relative: [{ event: { domain: VISIT, visit: OUTPATIENT }
                       window: { startDays: -30, endDays: -1 }, atLeast: 2, atMost: 5 }] }
        { sex: MALE }
      ]
    }
  ) { count { value } }
}
"""


def plan(**kwargs: Any) -> Any:
    arguments: dict[str, Any] = {
        "members": MEMBERS,
        "request_id": REQUEST_ID,
        "subject": SUBJECT,
        "criteria": {},
        "jurisdictions": None,
        "reference_date": dt.date(2026, 1, 1),
        "tables": [],
        **kwargs,
    }
    return plan_query(**arguments)


async def test_an_index_and_relative_criteria_reach_the_nodes(
    graphql: Any, nodes: MockNodeClient
) -> None:
    body = await graphql(EPI_PHARE)
    assert "errors" not in body, body
    query = nodes.calls[0].request.query
    assert query.index is not None
    assert query.index.occurrence is Occurrence.ALL
    assert (query.index.prior_observation_days, query.index.post_observation_days) == (365, 21)
    (dose,) = query.index.events
    assert (dose.domain, dose.codes[0].code) == (EventDomain.DRUG, "J07BN01")
    myocarditis, death = query.criteria.relative
    assert [c.code for c in myocarditis.event.codes] == ["I40", "I30"]
    assert myocarditis.event.excluded[0].descendants is False
    assert myocarditis.event.visit is VisitType.INPATIENT_OR_EMERGENCY
    assert (myocarditis.window.start_days, myocarditis.window.end_days) == (1, 7)
    assert (death.event.domain, death.exclude) == (EventDomain.DEATH, True)
    (visits,) = query.criteria.any_of[0].relative
    assert (visits.at_least, visits.at_most) == (2, 5)
    # Ages are taken at each candidate dose.
    assert query.age_basis is AgeAt.INDEX_EVENT


async def test_relative_criteria_without_an_index_are_invalid(graphql: Any) -> None:
    criteria = "{ relative: [{ event: { domain: DEATH }, window: { startDays: 0, endDays: 28 } }] }"
    body = await graphql(
        f'{{ cohort(request: "DR-2026-0042", criteria: {criteria}) {{ count {{ value }} }} }}'
    )
    assert body["errors"][0]["extensions"]["code"] == ErrorCode.INVALID_CRITERIA.value
    assert "relative criteria need an index event" in body["errors"][0]["message"]


def test_a_malformed_code_of_an_index_is_an_invalid_code_naming_the_field() -> None:
    # As GraphQL gives them: the vocabulary an enum member.
    index = {
        "events": [
            {"domain": "CONDITION", "codes": [{"vocabulary": Vocabulary.ICD10, "code": "U07'"}]}
        ]
    }
    with pytest.raises(TesseraError) as caught:
        plan(index=index)
    assert caught.value.code is ErrorCode.INVALID_CODE
    assert caught.value.message == "index.events[0].codes[0].code is not a well-formed ICD10 code"


def test_a_malformed_excluded_code_of_a_relative_criterion_names_the_field() -> None:
    relative = {
        "event": {
            "domain": "CONDITION",
            "codes": [{"vocabulary": "ICD10", "code": "E11"}],
            "excluded": [{"vocabulary": Vocabulary.ICD10, "code": "E11", "to": "E1;"}],
        },
        "window": {"start_days": -1, "end_days": 0},
    }
    with pytest.raises(TesseraError) as caught:
        plan(criteria={"relative": [relative]}, index={"events": [{"domain": "DEATH"}]})
    assert caught.value.code is ErrorCode.INVALID_CODE
    assert caught.value.message == (
        "criteria.relative[0].event.excluded[0].to is not a well-formed ICD10 code"
    )


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"start_days": 5, "end_days": 1}, "criteria.relative[0].window: "),
        ({"start_days": -40000, "end_days": 1}, "criteria.relative[0].window.startDays: "),
    ],
)
def test_a_relative_window_out_of_bounds_is_invalid_criteria(
    window: dict[str, int], message: str
) -> None:
    relative = {"event": {"domain": "DEATH"}, "window": window}
    with pytest.raises(TesseraError) as caught:
        plan(criteria={"relative": [relative]}, index={"events": [{"domain": "DEATH"}]})
    assert caught.value.code is ErrorCode.INVALID_CRITERIA
    assert caught.value.message.startswith(message)
    assert "40000" not in caught.value.message


def test_an_index_without_events_is_invalid_criteria_naming_the_field() -> None:
    with pytest.raises(TesseraError) as caught:
        plan(index={"events": []})
    assert caught.value.code is ErrorCode.INVALID_CRITERIA
    assert caught.value.message.startswith("index.events: ")
