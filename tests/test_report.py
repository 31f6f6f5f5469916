"""The demo's report of a cohort answer: a country that released no count of its own."""

from __future__ import annotations

from tessera.report import format_spend, render_cohort


def test_a_country_asked_no_count_of_its_own_shows_why_never_low() -> None:
    result = {
        "count": {"value": 97, "status": "PERTURBED", "sd": 5.0, "contributors": ["FR", "DE"]},
        "byJurisdiction": [
            {
                "jurisdiction": "FR",
                "status": "OK",
                "reasons": [{"rule": "NOT_ASKED", "message": "this country's own count was not"}],
                "privacy": None,
            },
            {"jurisdiction": "DE", "status": "OK", "count": {"value": None, "status": "LOW"}},
        ],
    }
    text = render_cohort("rare", result)
    fr = next(line for line in text.splitlines() if line.strip().startswith("FR"))
    de = next(line for line in text.splitlines() if line.strip().startswith("DE"))
    assert "NOT_ASKED" in fr
    assert "low" not in fr
    assert "low" in de


def test_a_rate_is_printed_with_its_interval_events_and_person_years() -> None:
    rate = {
        "per": 100_000,
        "events": {"value": 44, "status": "PERTURBED", "sd": 10.0},
        "personYears": {"value": 61_234.5, "sd": 2.0},
        "rate": {"value": 71.85, "status": "PERTURBED", "sd": 16.3},
        "ciLow": {"value": 52.2},
        "ciHigh": {"value": 96.5},
    }
    withheld = {**rate, "rate": {"value": None, "status": "SUPPRESSED"}, "events": None}
    result = {
        "count": {"value": 61_000, "status": "PERTURBED", "sd": 10.0},
        "rate": rate,
        "byJurisdiction": [{"jurisdiction": "FR", "status": "OK", "rate": withheld}],
        "byAge": {"cells": [{"dimensions": [{"name": "AGE_BAND_20", "value": "20-39"}],
                             "count": {"value": 9, "status": "PERTURBED", "sd": 5.0},
                             "rate": rate}]},
    }  # fmt: skip
    text = render_cohort("incidence", result)
    assert (
        "pooled rate per 100,000 person-years: 71.8 ±16 (95% CI 52.2 to 96.5); "
        "events 44 ±10, 61,234 ±2 person-years"
    ) in text
    fr = next(line for line in text.splitlines() if line.strip().startswith("FR"))
    assert "suppressed" in fr
    assert "71.8 ±16" in next(line for line in text.splitlines() if "20-39" in line)


def test_a_spend_past_the_cap_says_what_it_means() -> None:
    within = format_spend({"questionRho": 0.04, "spentRho": 0.3, "capRho": 0.5})
    past = format_spend({"questionRho": 0.04, "spentRho": 0.54, "capRho": 0.5})
    assert within == "+0.04 → 0.30 of 0.50"
    assert past.startswith("+0.04 → 0.54 of 0.50")
    assert "drop out" in past
    assert format_spend(None) == ""
