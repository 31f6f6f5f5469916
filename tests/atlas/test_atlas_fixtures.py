"""Published ATLAS definitions (tests/atlas/fixtures/README.md): each imports as expected, or
is refused for exactly these reasons, each by its JSON path."""

from __future__ import annotations

from pathlib import Path

import pytest

from schema.codes import EventDomain, Occurrence, VisitType, Vocabulary
from schema.query import Code, Criteria, EventSpec, RelativeWindow
from tessera.atlas import AtlasProblem, AtlasRefused, import_definition

FIXTURES = Path(__file__).parent / "fixtures"


def test_psoriasis_at_first_diagnosis() -> None:
    cohort = import_definition(FIXTURES / "psoriasis_vulgaris_first_dx.json")
    assert cohort.index.events == [
        EventSpec(
            domain=EventDomain.CONDITION,
            codes=[Code(vocabulary=Vocabulary.SNOMED, code="200975007")],
        )
    ]
    assert cohort.index.occurrence is Occurrence.FIRST
    assert cohort.index.prior_observation_days == 365
    assert cohort.index.post_observation_days is None
    assert cohort.criteria == Criteria()
    assert [n.path for n in cohort.notes] == [
        "CollapseSettings",
        "QualifiedLimit",
        "ExpressionLimit",
    ]


def test_inpatient_visits() -> None:
    cohort = import_definition(FIXTURES / "inpatient_visits.json")
    assert cohort.index.events == [EventSpec(domain=EventDomain.VISIT, visit=VisitType.INPATIENT)]
    assert cohort.index.occurrence is Occurrence.ALL
    assert cohort.criteria == Criteria()
    assert "EndStrategy" in [n.path for n in cohort.notes]


def test_all_cause_mortality() -> None:
    cohort = import_definition(FIXTURES / "all_cause_mortality.json")
    assert cohort.index.events == [EventSpec(domain=EventDomain.DEATH)]
    assert cohort.criteria == Criteria()


def test_acute_typical_pneumonia_without_a_concomitant_non_acute_one() -> None:
    cohort = import_definition(FIXTURES / "acute_typical_pneumonia.json")
    (event,) = cohort.index.events
    assert event.codes == [Code(vocabulary=Vocabulary.SNOMED, code="95436008")]
    assert [c.code for c in event.excluded] == [
        "102361000119104",
        "312149008",
        "12381000132107",
        "64667001",
        "84353005",
    ]
    assert cohort.index.occurrence is Occurrence.ALL
    (rule,) = cohort.criteria.relative
    assert rule.window == RelativeWindow(start_days=-1, end_days=-1)
    assert rule.exclude
    assert rule.at_least == 1
    assert rule.at_most is None
    assert {c.code for c in rule.event.codes} == {c.code for c in event.excluded}


OBSERVATION = (
    "Observation events are not in Tessera's query model (it has ConditionOccurrence, "
    "DrugExposure, Measurement, VisitOccurrence, Death)"
)


def cpt4(item: int, concept_id: int, name: str) -> tuple[AtlasProblem, str, str]:
    return (
        AtlasProblem.UNSUPPORTED_VOCABULARY,
        f"ConceptSets[1].expression.items[{item}].concept.VOCABULARY_ID",
        f"concept {concept_id} ({name}): vocabulary 'CPT4' is not one Tessera's codes are in "
        "(ICD10, SNOMED, ATC, LOINC, RxNorm)",
    )


REFUSED = {
    "multiple_myeloma_2dx.json": [
        (
            AtlasProblem.UNSUPPORTED_VALUE,
            "PrimaryCriteria.CriteriaList[0].ConditionOccurrence.First",
            "the first event of one of several alternative index events: Tessera takes each "
            "person's first of them all (PrimaryCriteriaLimit First)",
        ),
        (
            AtlasProblem.UNSUPPORTED_ELEMENT,
            "PrimaryCriteria.CriteriaList[1].Observation",
            OBSERVATION,
        ),
        (
            AtlasProblem.UNSUPPORTED_ELEMENT,
            "AdditionalCriteria.CriteriaList[0].Criteria.Observation",
            OBSERVATION,
        ),
        (
            AtlasProblem.UNSUPPORTED_ELEMENT,
            "InclusionRules[0].expression.CriteriaList[1].Criteria.Observation",
            OBSERVATION,
        ),
    ],
    "stroke_events_in_hospital.json": [
        (
            AtlasProblem.UNSUPPORTED_ELEMENT,
            "AdditionalCriteria.CriteriaList[0].EndWindow",
            "a window on the event's end: Tessera's windows are on event start dates (an index "
            "event during a visit of a type: give it a VisitType)",
        )
    ],
    "sulfasalazine_new_users_prior_ra.json": [
        cpt4(
            3,
            2107572,
            "Disease prognosis for rheumatoid arthritis assessed, good prognosis documented (RA)",
        ),
        cpt4(
            4,
            2107561,
            "Disease prognosis for rheumatoid arthritis assessed, poor prognosis documented (RA)",
        ),
        cpt4(
            7,
            2108721,
            "Patient receiving first-time biologic disease modifying "
            "anti-rheumatic drug therapy for rheumatoid arthritis (RA)",
        ),
        cpt4(10, 2107560, "Rheumatoid arthritis (RA) disease activity, high (RA)"),
        cpt4(11, 2107558, "Rheumatoid arthritis (RA) disease activity, low (RA)"),
        cpt4(12, 2107559, "Rheumatoid arthritis (RA) disease activity, moderate (RA)"),
        (
            AtlasProblem.UNSUPPORTED_ELEMENT,
            "InclusionRules[0].expression.CriteriaList[1].Criteria.Observation",
            OBSERVATION,
        ),
    ],
}


@pytest.mark.parametrize("fixture", sorted(REFUSED))
def test_refused_for_exactly_these_reasons(fixture: str) -> None:
    with pytest.raises(AtlasRefused) as caught:
        import_definition(FIXTURES / fixture)
    found = [(r.code, r.path, r.message) for r in caught.value.refusals]
    assert found == REFUSED[fixture]


def test_every_fixture_is_tested_and_documented() -> None:
    tested = {
        "psoriasis_vulgaris_first_dx.json",
        "inpatient_visits.json",
        "all_cause_mortality.json",
        "acute_typical_pneumonia.json",
    }
    shipped = {p.name for p in FIXTURES.glob("*.json")}
    assert shipped == tested | set(REFUSED)
    readme = (FIXTURES / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in shipped)
