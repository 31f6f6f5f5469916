"""The query model's index events and criteria relative to them: what they accept, what they
refuse (with which message), and that questions without them dump as before."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from schema.codes import AgeAt, EventDomain, Occurrence, VisitType
from schema.query import (
    MAX_INDEX_EVENTS,
    MAX_QUESTION_RELATIVE,
    MAX_RELATIVE_CRITERIA,
    MAX_RELATIVE_DAYS,
    CohortQuery,
    Criteria,
    EventSpec,
    IndexEvent,
    RelativeCriterion,
    RelativeWindow,
)

REFERENCE = dt.date(2025, 1, 1)
COVID: dict[str, Any] = {
    "domain": "CONDITION",
    "codes": [{"vocabulary": "ICD10", "code": "U07.1"}],
    "visit": "INPATIENT",
}
DIABETES: dict[str, Any] = {
    "domain": "CONDITION",
    "codes": [{"vocabulary": "ICD10", "code": "E11"}],
}


def coronado() -> CohortQuery:
    """Diabetic patients hospitalised with COVID-19, dead within 28 days of the admission."""
    return CohortQuery.model_validate(
        {
            "reference_date": REFERENCE,
            "index": {"events": [COVID], "occurrence": "FIRST", "prior_observation_days": 365},
            "criteria": {
                "relative": [
                    {
                        "event": DIABETES,
                        "window": {"start_days": -MAX_RELATIVE_DAYS, "end_days": -1},
                    },
                    {"event": {"domain": "DEATH"}, "window": {"start_days": 0, "end_days": 28}},
                ]
            },
        }
    )


def test_a_seed_protocol_is_written_as_it_reads() -> None:
    query = coronado()
    assert query.index is not None
    assert query.index.occurrence is Occurrence.FIRST
    assert query.index.events[0].visit is VisitType.INPATIENT
    assert query.criteria.relative[1].event.domain is EventDomain.DEATH
    # An index dates everyone: ages are taken at it, and no person lacks a year.
    assert query.dated
    assert query.age_basis is AgeAt.INDEX_EVENT
    assert CohortQuery.model_validate(query.model_dump(mode="json")) == query


def test_questions_without_an_index_dump_as_before() -> None:
    query = CohortQuery(criteria=Criteria(sex="FEMALE"), reference_date=REFERENCE)
    dumped = query.model_dump(mode="json")
    assert "index" not in dumped
    assert "relative" not in dumped["criteria"]
    assert query.age_basis is AgeAt.REFERENCE_DATE
    assert not query.dated


def test_the_index_window_gives_the_years_index_dates_fall_in() -> None:
    query = CohortQuery.model_validate(
        {
            "reference_date": REFERENCE,
            "index": {"events": [COVID], "window": {"start": "2020-03-01", "end": "2022-12-31"}},
            "criteria": {},
        }
    )
    assert query.index_years() == (2020, 2022)


def refused(message: str, data: dict[str, Any], model: type[Any] = CohortQuery) -> None:
    with pytest.raises(ValidationError, match=message):
        model.model_validate(data)


def test_relative_criteria_need_an_index() -> None:
    relative = {"event": DIABETES, "window": {"start_days": -30, "end_days": 0}}
    refused(
        "relative criteria need an index event",
        {"reference_date": REFERENCE, "criteria": {"relative": [relative]}},
    )
    # Also when they are nested in an anyOf group.
    refused(
        "relative criteria need an index event",
        {"reference_date": REFERENCE, "criteria": {"any_of": [{"relative": [relative]}]}},
    )


def test_relative_criteria_are_bounded_in_a_group_and_in_a_question() -> None:
    relative = {"event": DIABETES, "window": {"start_days": -30, "end_days": 0}}
    refused(
        f"at most {MAX_RELATIVE_CRITERIA} items",
        {"relative": [relative] * (MAX_RELATIVE_CRITERIA + 1)},
        Criteria,
    )
    groups = [{"relative": [relative] * MAX_RELATIVE_CRITERIA}] * 5
    assert 5 * MAX_RELATIVE_CRITERIA > MAX_QUESTION_RELATIVE
    refused(
        f"at most {MAX_QUESTION_RELATIVE} relative criteria",
        {"reference_date": REFERENCE, "index": {"events": [COVID]}, "criteria": {"any_of": groups}},
    )


def test_an_index_has_one_to_eight_alternative_events() -> None:
    refused("at least 1 item", {"events": []}, IndexEvent)
    refused(f"at most {MAX_INDEX_EVENTS} items", {"events": [COVID] * 9}, IndexEvent)
    assert len(IndexEvent.model_validate({"events": [COVID] * 8}).events) == 8


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"start_days": 1, "end_days": 0}, "a relative window starts after it ends"),
        ({"start_days": -MAX_RELATIVE_DAYS - 1, "end_days": 0}, "greater than or equal"),
        ({"start_days": 0, "end_days": MAX_RELATIVE_DAYS + 1}, "less than or equal"),
        ({"start_days": "0", "end_days": 3}, "valid integer"),
    ],
)
def test_relative_windows_are_ordered_and_bounded(window: dict[str, Any], message: str) -> None:
    refused(message, window, RelativeWindow)


def test_a_window_of_the_index_date_alone_is_allowed() -> None:
    assert RelativeWindow(start_days=0, end_days=0).end_days == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"domain": "CONDITION"}, "a CONDITION event needs at least one code"),
        ({"domain": "DRUG", "codes": []}, "a DRUG event needs at least one code"),
        (
            {"domain": "DEATH", "codes": [{"vocabulary": "ICD10", "code": "U07.1"}]},
            "a DEATH event takes no codes",
        ),
        (
            {
                "domain": "VISIT",
                "visit": "INPATIENT",
                "excluded": [{"vocabulary": "ICD10", "code": "E11"}],
            },
            "a VISIT event takes no codes",
        ),
        ({"domain": "VISIT"}, "a VISIT event needs its visit type"),
        ({"domain": "DEATH", "visit": "INPATIENT"}, "a DEATH event belongs to no visit"),
        ({**DIABETES, "value": {"min": 1}}, "only a MEASUREMENT event takes a value range"),
        ({**DIABETES, "visit": "WARD"}, "INPATIENT"),
        ({"domain": "PROCEDURE", "codes": DIABETES["codes"]}, "CONDITION"),
        ({**DIABETES, "codes": [{"vocabulary": "ICD10", "code": "E11"}] * 33}, "at most 32"),
        ({**DIABETES, "excluded": [{"vocabulary": "ICD10", "code": "E11.9"}] * 33}, "at most 32"),
        ({**DIABETES, "window": {"start": "2021-01-01", "end": "2020-01-01"}}, "start is after"),
    ],
)
def test_event_specs_are_consistent(spec: dict[str, Any], message: str) -> None:
    refused(message, spec, EventSpec)


def test_a_concept_set_excludes_codes_and_a_visit_is_named_by_its_type() -> None:
    spec = EventSpec.model_validate(
        {**DIABETES, "excluded": [{"vocabulary": "ICD10", "code": "e11.9", "descendants": False}]}
    )
    assert spec.excluded[0].code == "E11.9"
    visit = EventSpec(domain=EventDomain.VISIT, visit=VisitType.EMERGENCY)
    assert visit.codes == []


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"at_least": 0}, "greater than or equal to 1"),
        ({"at_least": 101}, "less than or equal to 100"),
        ({"at_least": 3, "at_most": 2}, "the most events asked for are fewer than the least"),
        ({"at_most": 0}, "greater than or equal to 1"),
        ({"at_least": True}, "valid integer"),
    ],
)
def test_relative_counts_are_bounded(counts: dict[str, Any], message: str) -> None:
    refused(
        message,
        {"event": DIABETES, "window": {"start_days": -1, "end_days": 1}, **counts},
        RelativeCriterion,
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prior_observation_days", -1, "greater than or equal to 0"),
        ("post_observation_days", 3654, "less than or equal to 3653"),
        ("occurrence", "LAST", "FIRST"),
    ],
)
def test_index_bounds(field: str, value: object, message: str) -> None:
    refused(message, {"events": [COVID], field: value}, IndexEvent)


def test_ages_at_the_index_event_accept_an_explicit_index() -> None:
    query = CohortQuery.model_validate(
        {
            "reference_date": REFERENCE,
            "age_at": "INDEX_EVENT",
            "index": {"events": [COVID]},
            "criteria": {},
        }
    )
    assert query.age_basis is AgeAt.INDEX_EVENT
    refused(
        "ages at the index event need an index",
        {"reference_date": REFERENCE, "age_at": "INDEX_EVENT", "criteria": {}},
    )
    at_reference = CohortQuery.model_validate(
        {
            "reference_date": REFERENCE,
            "age_at": "REFERENCE_DATE",
            "index": {"events": [COVID]},
            "criteria": {},
        }
    )
    assert at_reference.age_basis is AgeAt.REFERENCE_DATE
