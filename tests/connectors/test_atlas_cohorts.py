"""ATLAS definitions end to end: imported (`tessera.atlas`), compiled for every dialect and
counted on the hand-written CDM (tests/connectors/conftest.py), whose persons are known one by
one: the translation selects exactly the persons ATLAS's definition describes."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pytest

from connectors.compiler import DIALECTS, compile_concept_lookup, compile_query
from schema.codes import MeasureKind
from schema.query import CohortQuery
from tessera.atlas import import_definition

FIXTURES = Path(__file__).parent.parent / "atlas" / "fixtures"
# The hand-written CDM's reference date (tests/connectors/conftest.py).
REFERENCE_DATE = dt.date(2024, 6, 30)
# The published definitions that import (tests/atlas/test_atlas_fixtures.py).
IMPORTED = (
    "psoriasis_vulgaris_first_dx.json",
    "inpatient_visits.json",
    "all_cause_mortality.json",
    "acute_typical_pneumonia.json",
)


def item(concept_id: int, code: str, vocabulary: str) -> dict[str, Any]:
    return {
        "concept": {
            "CONCEPT_ID": concept_id,
            "CONCEPT_CODE": code,
            "VOCABULARY_ID": vocabulary,
            "STANDARD_CONCEPT": "S",
        },
        "includeDescendants": True,
    }


CONCEPT_SETS = [
    {"id": 0, "name": "metformin", "expression": {"items": [item(1503297, "6809", "RxNorm")]}},
    {"id": 1, "name": "T2DM", "expression": {"items": [item(201826, "44054006", "SNOMED")]}},
    {"id": 2, "name": "T1DM", "expression": {"items": [item(201254, "46635009", "SNOMED")]}},
    {"id": 3, "name": "HbA1c", "expression": {"items": [item(3004410, "4548-4", "LOINC")]}},
]


def prior(codeset: int, days: int | None, occurrence: tuple[int, int]) -> dict[str, Any]:
    start = {"Coeff": -1} if days is None else {"Days": days, "Coeff": -1}
    return {
        "Criteria": {"ConditionOccurrence": {"CodesetId": codeset}},
        "StartWindow": {"Start": start, "End": {"Days": 0, "Coeff": 1}},
        "Occurrence": {"Type": occurrence[0], "Count": occurrence[1]},
    }


def new_metformin_users(t2dm_days: int | None) -> dict[str, Any]:
    """New users of metformin (first exposure, a year observed before) with type 2 diabetes
    recorded before (within `t2dm_days`, or ever) and no type 1 diabetes."""
    return {
        "ConceptSets": copy.deepcopy(CONCEPT_SETS),
        "PrimaryCriteria": {
            "CriteriaList": [{"DrugExposure": {"CodesetId": 0, "First": True}}],
            "ObservationWindow": {"PriorDays": 365, "PostDays": 0},
            "PrimaryCriteriaLimit": {"Type": "First"},
        },
        "QualifiedLimit": {"Type": "First"},
        "ExpressionLimit": {"Type": "First"},
        "InclusionRules": [
            {
                "name": "T2DM before",
                "expression": {"Type": "ALL", "CriteriaList": [prior(1, t2dm_days, (2, 1))]},
            },
            {
                "name": "no T1DM",
                "expression": {"Type": "ALL", "CriteriaList": [prior(2, None, (0, 0))]},
            },
        ],
        "EndStrategy": {"DateOffset": {"DateField": "StartDate", "Offset": 365}},
        "CollapseSettings": {"CollapseType": "ERA", "EraPad": 0},
    }


def women_with_a_high_hba1c() -> dict[str, Any]:
    return {
        "ConceptSets": copy.deepcopy(CONCEPT_SETS),
        "PrimaryCriteria": {
            "CriteriaList": [
                {"Measurement": {"CodesetId": 3, "ValueAsNumber": {"Value": 7, "Op": "gte"}}}
            ],
            "PrimaryCriteriaLimit": {"Type": "All"},
        },
        "QualifiedLimit": {"Type": "First"},
        "InclusionRules": [
            {
                "name": "women",
                "expression": {
                    "Type": "ALL",
                    "DemographicCriteriaList": [{"Gender": [{"CONCEPT_ID": 8532}]}],
                },
            }
        ],
    }


def count(con: duckdb.DuckDBPyConnection, query: CohortQuery) -> int:
    compiled = compile_query(query)
    cursor = con.cursor()
    ids = {
        cs: [row[0] for row in cursor.execute(lookup.sql, list(lookup.params)).fetchall()]
        for cs in compiled.concept_sets
        for lookup in [compile_concept_lookup(cs)]
    }
    rows = cursor.execute(compiled.sql, list(compiled.bind(ids).params)).fetchall()
    totals = {by: cells for by, cells in compiled.tabulate(rows)}
    (cell,) = totals[()]
    return int(cell.values[MeasureKind.PERSON_COUNT])


def question(definition: dict[str, Any] | Path) -> CohortQuery:
    cohort = import_definition(definition)
    return CohortQuery(criteria=cohort.criteria, index=cohort.index, reference_date=REFERENCE_DATE)


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        # Metformin: persons 1-10 (2019-04-01, T2DM 2019-03-01) and 11-12 (2021-06-01, T2DM
        # complication 2021-05-10); all observed a year before; person 3 opted out.
        pytest.param(new_metformin_users(None), 11, id="t2dm-ever-before"),
        # Within 30 days before: only 11 and 12 (22 days); 1-10 were diagnosed 31 days before.
        pytest.param(new_metformin_users(30), 2, id="t2dm-within-30-days"),
        # HbA1c 6.0 + id/10 for persons 1-20: at least 7.0 for 10-20, the women 11-19.
        pytest.param(women_with_a_high_hba1c(), 5, id="women-hba1c-7"),
        # The published all-cause mortality cohort: deaths of persons 41-44 and 2.
        pytest.param(FIXTURES / "all_cause_mortality.json", 5, id="all-cause-mortality"),
    ],
)
def test_imported_definitions_count_the_persons_they_describe(
    omop_con: duckdb.DuckDBPyConnection, definition: dict[str, Any] | Path, expected: int
) -> None:
    assert count(omop_con, question(definition)) == expected


@pytest.mark.parametrize("fixture", IMPORTED)
def test_the_published_definitions_that_import_compile_for_every_dialect(fixture: str) -> None:
    asked = question(FIXTURES / fixture)
    for dialect in DIALECTS.values():
        compiled = compile_query(asked, dialect=dialect)
        assert compiled.sql
        assert compiled.concept_sets or fixture != "psoriasis_vulgaris_first_dx.json"
