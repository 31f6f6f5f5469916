"""An incidence rate in the client: the question's document asks `rate` pooled, per country
and per cell with the outcome as a variable, and the answer's rates come back as tidy rows
and a typed frame (one row per statistic, with `per`)."""

from __future__ import annotations

from typing import Any

from tessera.client import POOLED, Response, event, index, outcome
from tessera.client.questions import breakdowns, cohort_question


def test_the_document_asks_the_rate_everywhere() -> None:
    question = cohort_question(
        request="DR-1",
        criteria={},
        by=breakdowns(["AGE_BAND_20"]),
        index=index([event("DRUG", ["ATC:J07BN01"])]),
        outcome=outcome(event("CONDITION", ["ICD10:I40"]), days=(0, 21), per=1_000),
    )
    assert "$outcome: OutcomeInput" in question.document
    assert "outcome: $outcome" in question.document
    # Pooled, each country's and each cell's.
    assert question.document.count("rate { per events") == 3
    assert question.variables["outcome"] == {
        "event": {
            "domain": "CONDITION",
            "codes": [{"vocabulary": "ICD10", "code": "I40", "descendants": True}],
        },
        "window": {"startDays": 0, "endDays": 21},
        "per": 1_000,
    }


def _rate(value: float | None, status: str = "PERTURBED") -> dict[str, Any]:
    estimate = {"value": value, "status": status, "sd": None if value is None else 1.5}
    return {
        "per": 100_000,
        "events": {"value": None if value is None else 12, "status": status, "sd": 5.0},
        "personYears": {"value": 4_000.0, "status": "PERTURBED", "sd": 0.3},
        "rate": estimate,
        "ciLow": estimate,
        "ciHigh": estimate,
    }


def test_rates_come_back_as_tidy_rows_and_a_frame() -> None:
    data = {
        "cohort": {
            "queryId": "q",
            "rate": _rate(300.0),
            "byJurisdiction": [{"jurisdiction": "FR", "status": "OK", "rate": _rate(None, "LOW")}],
            "b0": {
                "by": ["AGE_BAND_20"],
                "cells": [
                    {
                        "dimensions": [{"name": "AGE_BAND_20", "value": "20-39"}],
                        "count": {"value": 40, "status": "PERTURBED", "sd": 5.0},
                        "rate": _rate(250.0),
                    }
                ],
            },
        }
    }
    answer = Response.read(data).answer
    rows = answer.rate_rows()
    assert [r["statistic"] for r in rows[:5]] == [
        "events",
        "person_years",
        "rate",
        "ci_low",
        "ci_high",
    ]
    assert {r["jurisdiction"] for r in rows} == {POOLED, "FR"}
    fr_rate = next(r for r in rows if r["jurisdiction"] == "FR" and r["statistic"] == "rate")
    assert fr_rate["value"] is None
    assert fr_rate["status"] == "LOW"
    frame = answer.rate_frame("AGE_BAND_20")
    assert list(frame["age_band"].astype(str)) == ["20-39"] * 5
    assert float(frame[frame["statistic"] == "rate"]["value"].iloc[0]) == 250.0
    assert set(frame["per"]) == {100_000}
