"""What `tessera cohort import` prints is what the gateway's GraphQL takes: the input literals
make a valid `cohort(...)` document and the JSON variables coerce to `IndexEventInput` and
`CriteriaInput`, checked against the published SDL (schema/schema.graphql)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLSchema, OperationDefinitionNode, build_schema, parse, validate
from graphql.execution.values import get_variable_values

from tessera.atlas import AtlasCohort, import_definition
from tessera.atlas.render import graphql_arguments, graphql_document, variables

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
IMPORTED = (
    "psoriasis_vulgaris_first_dx.json",
    "inpatient_visits.json",
    "all_cause_mortality.json",
    "acute_typical_pneumonia.json",
)


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return build_schema((ROOT / "schema" / "schema.graphql").read_text())


def item(concept_id: int, code: str, vocabulary: str, **more: Any) -> dict[str, Any]:
    concept = {"CONCEPT_ID": concept_id, "CONCEPT_CODE": code, "VOCABULARY_ID": vocabulary}
    return {"concept": {**concept, "STANDARD_CONCEPT": "S"}, "includeDescendants": True, **more}


def window(start: int, end: int) -> dict[str, Any]:
    return {
        "Start": {"Days": abs(start), "Coeff": -1 if start < 0 else 1},
        "End": {"Days": abs(end), "Coeff": -1 if end < 0 else 1},
    }


# Every kind of input the translation writes: codes with exclusions, a visit, a value, a
# calendar window, relative criteria with counts and exclusions, alternatives, age and sex.
EVERYTHING: dict[str, Any] = {
    "ConceptSets": [
        {
            "id": 1,
            "expression": {
                "items": [
                    item(201826, "44054006", "SNOMED"),
                    item(443732, "421326000", "SNOMED", isExcluded=True),
                ]
            },
        },
        {"id": 2, "expression": {"items": [item(21600712, "A10BA", "ATC")]}},
        {"id": 3, "expression": {"items": [item(3004410, "4548-4", "LOINC")]}},
    ],
    "PrimaryCriteria": {
        "CriteriaList": [
            {
                "ConditionOccurrence": {
                    "CodesetId": 1,
                    "VisitType": [{"CONCEPT_ID": 9201}, {"CONCEPT_ID": 262}],
                    "OccurrenceStartDate": {"Value": "2020-01-01", "Op": "gte"},
                }
            }
        ],
        "ObservationWindow": {"PriorDays": 365, "PostDays": 28},
        "PrimaryCriteriaLimit": {"Type": "First"},
    },
    "InclusionRules": [
        {
            "expression": {
                "Type": "ANY",
                "CriteriaList": [
                    {
                        "Criteria": {"DrugExposure": {"CodesetId": 2}},
                        "StartWindow": window(0, 90),
                        "Occurrence": {"Type": 2, "Count": 2},
                    },
                    {
                        "Criteria": {
                            "Measurement": {
                                "CodesetId": 3,
                                "ValueAsNumber": {"Value": 6.5, "Op": "bt", "Extent": 9},
                            }
                        },
                        "StartWindow": window(-30, 0),
                        "Occurrence": {"Type": 1, "Count": 1},
                    },
                ],
            }
        },
        {
            "expression": {
                "Type": "ALL",
                "CriteriaList": [
                    {
                        "Criteria": {"Death": {}},
                        "StartWindow": window(0, 28),
                        "Occurrence": {"Type": 0, "Count": 0},
                    }
                ],
                "DemographicCriteriaList": [
                    {"Age": {"Value": 18, "Op": "gte"}, "Gender": [{"CONCEPT_ID": 8532}]}
                ],
            }
        },
    ],
}


def cohorts() -> list[AtlasCohort]:
    return [import_definition(FIXTURES / name) for name in IMPORTED] + [
        import_definition(EVERYTHING)
    ]


def test_the_rich_definition_uses_every_input() -> None:
    printed = graphql_arguments(import_definition(EVERYTHING))
    for field in (
        "excluded",
        "visit: INPATIENT",
        "value",
        "window",
        "relative",
        "anyOf",
        "atLeast: 2",
        "exclude: true",
        "postObservationDays: 28",
        "sex: FEMALE",
    ):
        assert field in printed, field


@pytest.mark.parametrize("cohort", cohorts())
def test_input_literals_make_a_valid_cohort_document(
    schema: GraphQLSchema, cohort: AtlasCohort
) -> None:
    document = parse(
        'query { cohort(request: "DR-1",\n' + graphql_arguments(cohort) + ") { queryId } }"
    )
    assert validate(schema, document) == []


@pytest.mark.parametrize("cohort", cohorts())
def test_json_variables_coerce_to_the_inputs(schema: GraphQLSchema, cohort: AtlasCohort) -> None:
    document = parse(
        "query Q($index: IndexEventInput, $criteria: CriteriaInput!) {"
        ' cohort(request: "DR-1", index: $index, criteria: $criteria) { queryId } }'
    )
    assert validate(schema, document) == []
    (operation,) = document.definitions
    assert isinstance(operation, OperationDefinitionNode)
    coerced = get_variable_values(schema, operation.variable_definitions or [], variables(cohort))
    # A list of errors when they do not coerce; the coerced values otherwise.
    assert not isinstance(coerced, list), coerced


@pytest.mark.parametrize("cohort", cohorts())
def test_a_whole_document_is_a_valid_question(schema: GraphQLSchema, cohort: AtlasCohort) -> None:
    text = graphql_document(cohort, request="DR-1", title="from a test")
    assert text.startswith("# from a test\n")
    assert validate(schema, parse(text)) == []
