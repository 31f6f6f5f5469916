"""Bad input gets a clear GraphQL error with a stable code, through the real HTTP endpoint."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration


def error_code(body: dict[str, Any]) -> str:
    assert body.get("errors"), body
    code: str = body["errors"][0]["extensions"]["code"]
    return code


def cohort(criteria: str, extra: str = "") -> str:
    return (
        f'{{ cohort(request: "DR-2026-0042", {extra} criteria: {criteria}) '
        "{ count { value status } } }"
    )


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ cohort(", "GRAPHQL_PARSE_FAILED"),
        (
            cohort('{ conditions: [{ vocabulary: ICD11, code: "E11" }] }'),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            '{ cohort(request: "DR-2026-0042", criteria: {}) '
            "{ breakdown(by: [SHOE_SIZE]) { by } } }",
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (cohort("{ age: { min: 70, max: 40 } }"), "INVALID_CRITERIA"),
        (
            cohort('{ conditions: [{ vocabulary: ICD10, code: "E11\'; DROP TABLE person;--" }] }'),
            "INVALID_CODE",
        ),
        (cohort("{ sex: FEMALE }", "jurisdictions: [SE],"), "UNKNOWN_JURISDICTION"),
        (
            '{ cohort(request: "DR-2099-0001", criteria: {}) { count { value } } }',
            "REQUEST_MISMATCH",
        ),
    ],
    ids=["parse", "vocabulary", "dimension", "age-range", "sql-in-code", "jurisdiction", "request"],
)
def test_bad_input_gets_a_stable_code(graphql: Any, query: str, code: str) -> None:
    body = graphql(query)
    assert error_code(body) == code
    text = str(body)
    assert "Traceback" not in text
    assert "SELECT" not in text


def test_missing_token_is_unauthenticated(graphql: Any) -> None:
    assert error_code(graphql(cohort("{ sex: MALE }"), auth=None)) == "UNAUTHENTICATED"


def test_garbage_token_is_malformed(graphql: Any) -> None:
    assert error_code(graphql(cohort("{ sex: MALE }"), auth="not-a-jwt")) == "TOKEN_MALFORMED"
