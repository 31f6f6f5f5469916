"""What `tessera cohort import` prints is what the gateway's GraphQL takes: the input literals
make a valid `cohort(...)` document and the JSON variables coerce to `IndexEventInput` and
`CriteriaInput`, checked against the published SDL (schema/schema.graphql)."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import GraphQLSchema, OperationDefinitionNode, build_schema, parse, validate
from graphql.execution.values import get_variable_values

from tessera.atlas import AtlasCohort, import_definition
from tessera.atlas.render import graphql_arguments, graphql_document, variables
from tests.atlas.atlas_kit import EVERYTHING

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
