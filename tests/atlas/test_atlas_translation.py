"""Each element of an ATLAS (Circe) definition, alone: what it becomes in the query model, or
the refusal that names it by its JSON path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from schema.codes import EventDomain, Occurrence, Sex, VisitType, Vocabulary
from schema.query import (
    MAX_RELATIVE_DAYS,
    AgeRange,
    Code,
    Criteria,
    DateWindow,
    EventSpec,
    RelativeCriterion,
    RelativeWindow,
    ValueRange,
)
from tessera.atlas import AtlasCohort, AtlasProblem, AtlasRefused, Refusal, import_definition

DIABETES = Code(vocabulary=Vocabulary.SNOMED, code="44054006")
METFORMIN = Code(vocabulary=Vocabulary.RXNORM, code="6809")
HBA1C = Code(vocabulary=Vocabulary.LOINC, code="4548-4", descendants=False)
CONDITION = EventSpec(domain=EventDomain.CONDITION, codes=[DIABETES])
DRUG = EventSpec(domain=EventDomain.DRUG, codes=[METFORMIN])


def concept(
    concept_id: int, code: str, vocabulary: str, *, standard: str = "S", **item: Any
) -> dict[str, Any]:
    return {
        "concept": {
            "CONCEPT_ID": concept_id,
            "CONCEPT_CODE": code,
            "VOCABULARY_ID": vocabulary,
            "CONCEPT_NAME": f"concept {code}",
            "STANDARD_CONCEPT": standard,
        },
        "includeDescendants": True,
        **item,
    }


CONCEPT_SETS = [
    {"id": 1, "name": "T2DM", "expression": {"items": [concept(201826, "44054006", "SNOMED")]}},
    {"id": 2, "name": "metformin", "expression": {"items": [concept(1503297, "6809", "RxNorm")]}},
    {
        "id": 3,
        "name": "inpatient",
        "expression": {"items": [concept(9201, "IP", "Visit"), concept(262, "ERIP", "Visit")]},
    },
    {
        "id": 4,
        "name": "HbA1c",
        "expression": {"items": [concept(3004410, "4548-4", "LOINC", includeDescendants=False)]},
    },
    {
        "id": 5,
        "name": "T2DM, ICD-10",
        "expression": {"items": [concept(45576876, "E11.9", "ICD10", standard="N")]},
    },
    {
        "id": 6,
        "name": "metformin, RxNorm Extension",
        "expression": {"items": [concept(21600000, "OMOP1", "RxNorm Extension")]},
    },
    {
        "id": 7,
        "name": "T2DM but not with complications",
        "expression": {
            "items": [
                concept(201826, "44054006", "SNOMED"),
                concept(443732, "421326000", "SNOMED", isExcluded=True),
            ]
        },
    },
]


def definition(**parts: Any) -> dict[str, Any]:
    """A minimal definition: the first diabetes diagnosis; `parts` replace its elements."""
    base: dict[str, Any] = {
        "ConceptSets": copy.deepcopy(CONCEPT_SETS),
        "PrimaryCriteria": {
            "CriteriaList": [{"ConditionOccurrence": {"CodesetId": 1}}],
            "ObservationWindow": {"PriorDays": 0, "PostDays": 0},
            "PrimaryCriteriaLimit": {"Type": "First"},
        },
        "QualifiedLimit": {"Type": "First"},
        "ExpressionLimit": {"Type": "First"},
        "InclusionRules": [],
        "CensoringCriteria": [],
        "CollapseSettings": {"CollapseType": "ERA", "EraPad": 0},
        "CensorWindow": {},
    }
    return {**base, **parts}


def primary(*criteria: dict[str, Any], limit: str = "First", prior: int = 0, post: int = 0) -> Any:
    return {
        "CriteriaList": list(criteria),
        "ObservationWindow": {"PriorDays": prior, "PostDays": post},
        "PrimaryCriteriaLimit": {"Type": limit},
    }


def correlated(
    criterion: dict[str, Any],
    start: tuple[int | None, int],
    end: tuple[int | None, int],
    occurrence: tuple[int, int],
    **extra: Any,
) -> dict[str, Any]:
    def bound(days: int | None, coeff: int) -> dict[str, Any]:
        return {"Coeff": coeff} if days is None else {"Days": days, "Coeff": coeff}

    return {
        "Criteria": criterion,
        "StartWindow": {"Start": bound(*start), "End": bound(*end), "UseEventEnd": False},
        "Occurrence": {"Type": occurrence[0], "Count": occurrence[1]},
        **extra,
    }


def rule(*criteria: dict[str, Any], kind: str = "ALL", **group: Any) -> dict[str, Any]:
    return {
        "name": "rule",
        "expression": {
            "Type": kind,
            "CriteriaList": list(criteria),
            "DemographicCriteriaList": group.pop("demographics", []),
            "Groups": group.pop("groups", []),
            **group,
        },
    }


def translated(data: dict[str, Any]) -> AtlasCohort:
    return import_definition(data)


def refused(data: dict[str, Any]) -> list[Refusal]:
    with pytest.raises(AtlasRefused) as caught:
        import_definition(data)
    return list(caught.value.refusals)


def relative(cohort: AtlasCohort) -> list[RelativeCriterion]:
    return list(cohort.criteria.relative)


# --- the index event -------------------------------------------------------------------------


def test_a_first_diagnosis_with_prior_and_post_observation() -> None:
    cohort = translated(
        definition(
            PrimaryCriteria=primary({"ConditionOccurrence": {"CodesetId": 1}}, prior=365, post=30)
        )
    )
    assert cohort.index.events == [CONDITION]
    assert cohort.index.occurrence is Occurrence.FIRST
    assert (cohort.index.prior_observation_days, cohort.index.post_observation_days) == (365, 30)
    assert cohort.criteria == Criteria()


def test_an_index_event_always_lies_in_an_observation_period() -> None:
    # ATLAS joins every index event to the observation period it lies in, whatever its days.
    cohort = translated(definition())
    assert (cohort.index.prior_observation_days, cohort.index.post_observation_days) == (0, None)


def test_alternative_index_events_and_every_event() -> None:
    cohort = translated(
        definition(
            PrimaryCriteria=primary(
                {"ConditionOccurrence": {"CodesetId": 1}},
                {"DrugExposure": {"CodesetId": 2}},
                limit="All",
            ),
            QualifiedLimit={"Type": "All"},
        )
    )
    assert cohort.index.events == [CONDITION, DRUG]
    assert cohort.index.occurrence is Occurrence.ALL


def test_first_on_the_criterion_is_no_such_event_before() -> None:
    cohort = translated(
        definition(
            PrimaryCriteria=primary({"DrugExposure": {"CodesetId": 2, "First": True}}, prior=365)
        )
    )
    assert cohort.index.occurrence is Occurrence.FIRST
    assert relative(cohort) == [
        RelativeCriterion(
            event=DRUG,
            window=RelativeWindow(start_days=-MAX_RELATIVE_DAYS, end_days=-1),
            exclude=True,
        )
    ]


def test_concept_set_exclusions_visit_types_values_and_dates() -> None:
    cohort = translated(
        definition(
            PrimaryCriteria=primary(
                {
                    "ConditionOccurrence": {
                        "CodesetId": 7,
                        "VisitType": [{"CONCEPT_ID": 9201}, {"CONCEPT_ID": 262}],
                        "OccurrenceStartDate": {"Value": "2020-03-01", "Op": "gte"},
                    }
                },
                {
                    "Measurement": {
                        "CodesetId": 4,
                        "ValueAsNumber": {"Value": 6.5, "Op": "gte"},
                        "OccurrenceStartDate": {
                            "Value": "2019-01-01",
                            "Op": "bt",
                            "Extent": "2019-12-31",
                        },
                    }
                },
            )
        )
    )
    condition, measurement = cohort.index.events
    assert condition.excluded == [Code(vocabulary=Vocabulary.SNOMED, code="421326000")]
    assert condition.visit is VisitType.INPATIENT
    assert condition.window == DateWindow(start="2020-03-01")  # type: ignore[arg-type]
    assert measurement.codes == [HBA1C]
    assert measurement.value == ValueRange(min=6.5)
    assert measurement.window == DateWindow(start="2019-01-01", end="2019-12-31")  # type: ignore[arg-type]


def test_visits_and_deaths_as_index_events() -> None:
    visits = translated(
        definition(PrimaryCriteria=primary({"VisitOccurrence": {"CodesetId": 3}}, limit="All"))
    )
    assert visits.index.events == [EventSpec(domain=EventDomain.VISIT, visit=VisitType.INPATIENT)]
    deaths = translated(definition(PrimaryCriteria=primary({"Death": {}})))
    assert deaths.index.events == [EventSpec(domain=EventDomain.DEATH)]


def test_age_and_gender_at_the_index() -> None:
    cohort = translated(
        definition(
            PrimaryCriteria=primary(
                {
                    "ConditionOccurrence": {
                        "CodesetId": 1,
                        "First": True,
                        "Age": {"Value": 18, "Op": "gt"},
                        "Gender": [{"CONCEPT_ID": 8532}],
                    }
                }
            )
        )
    )
    assert cohort.criteria.age == AgeRange(min=19)
    assert cohort.criteria.sex is Sex.FEMALE


def test_an_age_on_the_first_event_alone_admits_anyone_with_an_event_at_that_age() -> None:
    # ATLAS: the earliest event at 18 or over; Tessera: any event at 18 or over, the earliest.
    cohort = translated(
        definition(
            PrimaryCriteria=primary(
                {"ConditionOccurrence": {"CodesetId": 1, "Age": {"Value": 18, "Op": "gte"}}}
            )
        )
    )
    assert cohort.index.occurrence is Occurrence.ALL
    assert cohort.criteria.age == AgeRange(min=18)


def test_an_age_on_the_first_event_with_further_criteria_is_refused() -> None:
    (refusal,) = refused(
        definition(
            PrimaryCriteria=primary(
                {"ConditionOccurrence": {"CodesetId": 1, "Age": {"Value": 18, "Op": "gte"}}}
            ),
            InclusionRules=[
                rule(correlated({"DrugExposure": {"CodesetId": 2}}, (None, -1), (0, 1), (2, 1)))
            ],
        )
    )
    assert refusal.path == "PrimaryCriteria.CriteriaList[0].ConditionOccurrence.Age"
    assert refusal.code is AtlasProblem.UNSUPPORTED_VALUE


# --- inclusion rules and additional criteria ---------------------------------------------------


@pytest.mark.parametrize(
    ("occurrence", "counts"),
    [
        ((2, 1), {}),
        ((2, 3), {"at_least": 3}),
        ((0, 0), {"exclude": True}),
        ((1, 0), {"exclude": True}),
        ((0, 2), {"at_least": 2, "at_most": 2}),
        ((1, 2), {"at_least": 3, "exclude": True}),
    ],
)
def test_occurrence_counts(occurrence: tuple[int, int], counts: dict[str, Any]) -> None:
    cohort = translated(
        definition(
            InclusionRules=[
                rule(correlated({"DrugExposure": {"CodesetId": 2}}, (365, -1), (0, 1), occurrence))
            ]
        )
    )
    assert relative(cohort) == [
        RelativeCriterion(event=DRUG, window=RelativeWindow(start_days=-365, end_days=0), **counts)
    ]


def test_at_least_none_holds_for_everyone() -> None:
    cohort = translated(
        definition(
            InclusionRules=[
                rule(correlated({"DrugExposure": {"CodesetId": 2}}, (365, -1), (0, 1), (2, 0)))
            ]
        )
    )
    assert cohort.criteria == Criteria()


def test_windows_without_days_reach_as_far_as_the_model_does() -> None:
    cohort = translated(
        definition(
            AdditionalCriteria={
                "Type": "ALL",
                "CriteriaList": [
                    correlated(
                        {"ConditionOccurrence": {"CodesetId": 1}}, (None, -1), (1, -1), (0, 0)
                    )
                ],
            }
        )
    )
    (criterion,) = relative(cohort)
    assert criterion.window == RelativeWindow(start_days=-MAX_RELATIVE_DAYS, end_days=-1)
    assert any(n.path.endswith("IgnoreObservationPeriod") for n in cohort.notes)


def test_any_groups_demographics_and_several_rules_are_conjoined() -> None:
    drug = correlated({"DrugExposure": {"CodesetId": 2}}, (30, 1), (90, 1), (2, 1))
    lab = correlated({"Measurement": {"CodesetId": 4}}, (30, -1), (0, 1), (2, 1))
    cohort = translated(
        definition(
            InclusionRules=[
                rule(drug, lab, kind="ANY"),
                rule(
                    demographics=[
                        {"Age": {"Value": 40, "Extent": 69, "Op": "bt"}},
                        {"Gender": [{"CONCEPT_ID": 8507}]},
                    ]
                ),
            ]
        )
    )
    assert cohort.criteria.age == AgeRange(min=40, max=69)
    assert cohort.criteria.sex is Sex.MALE
    options = cohort.criteria.any_of
    assert [o.relative[0].event for o in options] == [
        DRUG,
        EventSpec(domain=EventDomain.MEASUREMENT, codes=[HBA1C]),
    ]


def test_two_any_rules_nest() -> None:
    drug = correlated({"DrugExposure": {"CodesetId": 2}}, (30, 1), (90, 1), (2, 1))
    lab = correlated({"Measurement": {"CodesetId": 4}}, (30, -1), (0, 1), (2, 1))
    cohort = translated(
        definition(InclusionRules=[rule(drug, lab, kind="ANY"), rule(drug, lab, kind="ANY")])
    )
    assert len(cohort.criteria.any_of) == 2
    assert all(len(option.any_of) == 2 for option in cohort.criteria.any_of)


def test_nested_groups_and_at_least_all() -> None:
    drug = correlated({"DrugExposure": {"CodesetId": 2}}, (30, 1), (90, 1), (2, 1))
    cohort = translated(
        definition(
            InclusionRules=[
                rule(
                    drug,
                    kind="AT_LEAST",
                    Count=2,
                    groups=[{"Type": "ANY", "CriteriaList": [drug]}],
                )
            ]
        )
    )
    assert len(relative(cohort)) == 2


# --- what is left aside --------------------------------------------------------------------------


def test_cohort_period_settings_are_noted_not_translated() -> None:
    cohort = translated(
        definition(
            EndStrategy={"DateOffset": {"DateField": "StartDate", "Offset": 7}},
            CensoringCriteria=[{"DrugExposure": {"CodesetId": 2}}],
        )
    )
    assert {n.path for n in cohort.notes} >= {
        "EndStrategy",
        "CensoringCriteria",
        "CollapseSettings",
    }


def test_inclusion_rules_on_each_first_qualified_event() -> None:
    drug = correlated({"DrugExposure": {"CodesetId": 2}}, (30, 1), (90, 1), (2, 1))
    cohort = translated(
        definition(
            PrimaryCriteria=primary({"ConditionOccurrence": {"CodesetId": 1}}, limit="All"),
            InclusionRules=[rule(drug)],
        )
    )
    # ATLAS tests the rules on each person's first event only: Tessera's FIRST.
    assert cohort.index.occurrence is Occurrence.FIRST
    (refusal,) = refused(
        definition(
            PrimaryCriteria=primary({"ConditionOccurrence": {"CodesetId": 1}}, limit="All"),
            AdditionalCriteria={"Type": "ALL", "CriteriaList": [drug]},
            InclusionRules=[rule(drug)],
        )
    )
    assert refusal.path == "QualifiedLimit.Type"


# --- refusals ------------------------------------------------------------------------------------


def paths(data: dict[str, Any]) -> list[tuple[AtlasProblem, str]]:
    return [(r.code, r.path) for r in refused(data)]


def test_unsupported_domains_filters_and_settings_are_named_by_path() -> None:
    data = definition(
        PrimaryCriteria=primary(
            {"ConditionOccurrence": {"CodesetId": 1, "ConditionType": [{"CONCEPT_ID": 32020}]}},
            {"ProcedureOccurrence": {"CodesetId": 1}},
        ),
        CensorWindow={"StartDate": "2020-01-01"},
        InclusionRules=[
            rule(
                correlated(
                    {"DrugExposure": {"CodesetId": 2}},
                    (30, -1),
                    (0, 1),
                    (2, 1),
                    RestrictVisit=True,
                )
            )
        ],
    )
    assert paths(data) == [
        (
            AtlasProblem.UNSUPPORTED_ELEMENT,
            "PrimaryCriteria.CriteriaList[0].ConditionOccurrence.ConditionType",
        ),
        (AtlasProblem.UNSUPPORTED_ELEMENT, "PrimaryCriteria.CriteriaList[1].ProcedureOccurrence"),
        (
            AtlasProblem.UNSUPPORTED_ELEMENT,
            "InclusionRules[0].expression.CriteriaList[0].RestrictVisit",
        ),
        (AtlasProblem.UNSUPPORTED_ELEMENT, "CensorWindow"),
    ]


def test_defaults_that_say_nothing_are_not_refused() -> None:
    data = definition(
        PrimaryCriteria=primary(
            {
                "ConditionOccurrence": {
                    "CodesetId": 1,
                    "ConditionTypeExclude": False,
                    "ConditionType": None,
                    "ProviderSpecialty": [],
                }
            }
        )
    )
    assert translated(data).index.events == [CONDITION]


def test_concepts_outside_the_vocabularies_or_non_standard_are_refused() -> None:
    assert paths(
        definition(
            PrimaryCriteria=primary(
                {"ConditionOccurrence": {"CodesetId": 5}}, {"DrugExposure": {"CodesetId": 6}}
            )
        )
    ) == [
        (
            AtlasProblem.UNSUPPORTED_CONCEPT,
            "ConceptSets[4].expression.items[0].concept.STANDARD_CONCEPT",
        ),
        (
            AtlasProblem.UNSUPPORTED_VOCABULARY,
            "ConceptSets[5].expression.items[0].concept.VOCABULARY_ID",
        ),
    ]


def test_include_mapped_unknown_sets_and_bad_counts() -> None:
    data = definition(
        PrimaryCriteria=primary({"ConditionOccurrence": {"CodesetId": 99}}),
        InclusionRules=[
            rule(
                correlated({"DrugExposure": {"CodesetId": 2}}, (30, -1), (0, 1), (2, 1))
                | {"Occurrence": {"Type": 2, "Count": 1, "IsDistinct": True}}
            )
        ],
    )
    data["ConceptSets"][0]["expression"]["items"][0]["includeMapped"] = True
    assert paths(data) == [
        (
            AtlasProblem.UNKNOWN_CONCEPT_SET,
            "PrimaryCriteria.CriteriaList[0].ConditionOccurrence.CodesetId",
        ),
        (
            AtlasProblem.UNSUPPORTED_VALUE,
            "InclusionRules[0].expression.CriteriaList[0].Occurrence.IsDistinct",
        ),
    ]
    data["PrimaryCriteria"] = primary({"ConditionOccurrence": {"CodesetId": 1}})
    assert (
        AtlasProblem.UNSUPPORTED_CONCEPT,
        "ConceptSets[0].expression.items[0].includeMapped",
    ) in paths(data)


def test_a_visit_set_that_is_no_visit_type() -> None:
    data = definition(PrimaryCriteria=primary({"VisitOccurrence": {"CodesetId": 3}}))
    data["ConceptSets"][2]["expression"]["items"].append(concept(9202, "OP", "Visit"))
    assert paths(data) == [(AtlasProblem.UNSUPPORTED_VALUE, "ConceptSets[2]")]


def test_malformed_definitions() -> None:
    assert [r.code for r in refused({"ConceptSets": []})] == [AtlasProblem.MALFORMED]
    (refusal,) = refused(definition(PrimaryCriteria={"CriteriaList": "nope"}))
    assert refusal.path == "PrimaryCriteria.CriteriaList"
    with pytest.raises(AtlasRefused):
        import_definition("[1, 2]")


def test_a_webapi_definition_wrapping_its_expression() -> None:
    import json

    wrapped = {"name": "T2DM", "expression": json.dumps(definition())}
    assert translated(wrapped).index.events == [CONDITION]


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([(9201, True)], VisitType.INPATIENT),
        ([(9201, False), (262, False)], VisitType.INPATIENT),
        ([(9203, True)], VisitType.EMERGENCY),
        ([(9202, False)], VisitType.OUTPATIENT),
        ([(9201, True), (9203, True)], VisitType.INPATIENT_OR_EMERGENCY),
        ([(9201, False)], None),  # without 262, not what INPATIENT counts
        ([(9203, False)], None),
        ([(262, True)], None),
    ],
)
def test_visit_concept_sets_as_visit_types(
    items: list[tuple[int, bool]], expected: VisitType | None
) -> None:
    data = definition(PrimaryCriteria=primary({"VisitOccurrence": {"CodesetId": 3}}))
    data["ConceptSets"][2]["expression"]["items"] = [
        concept(concept_id, "X", "Visit", includeDescendants=descendants)
        for concept_id, descendants in items
    ]
    if expected is None:
        assert paths(data) == [(AtlasProblem.UNSUPPORTED_VALUE, "ConceptSets[2]")]
    else:
        cohort = translated(data)
        assert cohort.index.events == [EventSpec(domain=EventDomain.VISIT, visit=expected)]


def test_the_query_models_bounds_are_refusals_at_the_element() -> None:
    drug = correlated({"DrugExposure": {"CodesetId": 2}}, (30, 1), (90, 1), (2, 1))
    (refusal,) = refused(definition(InclusionRules=[rule(*[drug] * 17)]))
    assert (refusal.code, refusal.path) == (
        AtlasProblem.OUT_OF_BOUNDS,
        "InclusionRules[0].expression",
    )
    assert "16" in refusal.message
    lab = correlated({"Measurement": {"CodesetId": 4}}, (30, -1), (0, 1), (2, 1))
    nested: dict[str, Any] = {"Type": "ANY", "CriteriaList": [drug, lab]}
    for _ in range(4):
        nested = {"Type": "ANY", "CriteriaList": [drug], "Groups": [nested]}
    refusals = refused(definition(InclusionRules=[rule(kind="ALL", groups=[nested])]))
    assert {r.code for r in refusals} == {AtlasProblem.OUT_OF_BOUNDS}
    assert any("deeper" in r.message for r in refusals)


def at_own_visit(**changes: Any) -> dict[str, Any]:
    nested = correlated({"VisitOccurrence": {"CodesetId": 3}}, (None, -1), (None, 1), (2, 1))
    nested["RestrictVisit"] = True
    nested.update(changes)
    return {"Type": "ALL", "CriteriaList": [nested], "DemographicCriteriaList": [], "Groups": []}


def test_an_event_at_its_own_visit_of_a_type() -> None:
    cohort = translated(
        definition(
            PrimaryCriteria=primary(
                {"ConditionOccurrence": {"CodesetId": 1, "CorrelatedCriteria": at_own_visit()}}
            )
        )
    )
    assert cohort.index.events == [
        EventSpec(domain=EventDomain.CONDITION, codes=[DIABETES], visit=VisitType.INPATIENT)
    ]
    where = "PrimaryCriteria.CriteriaList[0].ConditionOccurrence.CorrelatedCriteria"
    assert paths(
        definition(
            PrimaryCriteria=primary(
                {
                    "ConditionOccurrence": {
                        "CodesetId": 1,
                        "CorrelatedCriteria": at_own_visit(RestrictVisit=False),
                    }
                },
                {
                    "DrugExposure": {
                        "CodesetId": 2,
                        "CorrelatedCriteria": {
                            "Type": "ALL",
                            "CriteriaList": [
                                correlated(
                                    {"DrugExposure": {"CodesetId": 2}}, (9, -1), (0, 1), (2, 1)
                                )
                            ],
                        },
                    }
                },
            )
        )
    ) == [
        (AtlasProblem.UNSUPPORTED_VALUE, f"{where}.CriteriaList[0].RestrictVisit"),
        (
            AtlasProblem.UNSUPPORTED_ELEMENT,
            "PrimaryCriteria.CriteriaList[1].DrugExposure.CorrelatedCriteria",
        ),
    ]


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e300, -5, 18.5])
def test_ages_that_are_no_ages_are_refused(value: float) -> None:
    data = definition(
        PrimaryCriteria=primary(
            {
                "ConditionOccurrence": {
                    "CodesetId": 1,
                    "First": True,
                    "Age": {"Value": value, "Op": "gte"},
                }
            }
        )
    )
    (refusal,) = refused(data)
    assert refusal.path.startswith("PrimaryCriteria.CriteriaList[0].ConditionOccurrence.Age")


@pytest.mark.parametrize(
    ("date", "op"), [("9999-12-31", "gt"), ("0001-01-01", "lt"), ("1800-01-01", "gte")]
)
def test_dates_out_of_the_models_bounds_are_refused(date: str, op: str) -> None:
    data = definition(
        PrimaryCriteria=primary(
            {
                "ConditionOccurrence": {
                    "CodesetId": 1,
                    "OccurrenceStartDate": {"Value": date, "Op": op},
                }
            }
        )
    )
    (refusal,) = refused(data)
    assert refusal.code is AtlasProblem.OUT_OF_BOUNDS


def test_last_is_refused_only_where_a_person_has_several_candidates() -> None:
    one = translated(definition(QualifiedLimit={"Type": "Last"}, ExpressionLimit={"Type": "Last"}))
    assert one.index.occurrence is Occurrence.FIRST
    every = definition(
        PrimaryCriteria=primary({"ConditionOccurrence": {"CodesetId": 1}}, limit="All"),
        ExpressionLimit={"Type": "Last"},
    )
    assert paths(every) == [(AtlasProblem.UNSUPPORTED_VALUE, "ExpressionLimit.Type")]
    assert paths(definition(QualifiedLimit={"Type": "Sometimes"})) == [
        (AtlasProblem.UNSUPPORTED_VALUE, "QualifiedLimit.Type")
    ]
