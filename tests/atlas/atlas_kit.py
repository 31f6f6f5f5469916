"""A definition that uses every element the ATLAS import translates, for the tests of
`tessera.atlas`."""

from __future__ import annotations

from typing import Any


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
