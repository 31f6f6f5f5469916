"""The demo's report of a cohort answer: a country that released no count of its own."""

from __future__ import annotations

from tessera.report import render_cohort


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
