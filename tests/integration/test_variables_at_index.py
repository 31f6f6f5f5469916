"""A numeric variable at each person's index event, end to end through the GraphQL endpoint
of a federation of real processes: the mean of each type 2 diabetic's last HbA1c in the year
up to their first E11 record (the explicit index, from 2016), pooled and per country near the
truth computed from the nodes' databases (within the noise); the same question through the
Python client (`Variable.measurement(..., days=...)`) replays the same numbers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pytest

from schema.codes import Jurisdiction
from tessera.client import Client, Variable, event, index
from tessera.credentials import Credentials
from tessera.local import LocalFederation
from tests.integration.federation_kit import post

pytestmark = pytest.mark.integration

FROM = dt.date(2016, 1, 1)
QUESTION = """{ cohort(request: "DR-2026-0042", referenceDate: "2026-01-01",
    index: { events: [{ domain: CONDITION, codes: [{ vocabulary: ICD10, code: "E11" }] }],
             window: { start: "2016-01-01" } },
    criteria: {},
    variable: { source: MEASUREMENT, code: "4548-4", perPerson: LAST,
                indexWindow: { startDays: -365, endDays: 0 }, lo: 4, hi: 14 }) {
  summary { n { value status sd } mean { value status sd } }
  byJurisdiction { jurisdiction status summary { n { value } mean { value status sd } } }
} }"""
SUBJECT = "at-index@test.tessera.eu"
ORGANISATION = "Index Statistics Test Institute"


@pytest.fixture(scope="module")
def researcher(federation: LocalFederation) -> Credentials:
    """A researcher of this module's own, whose persons have spent nothing elsewhere."""
    return federation.credentials(
        federation.permits(subject=SUBJECT, applicant=ORGANISATION), subject=SUBJECT
    )


def truth(database: Path) -> list[float]:
    """Each person's last HbA1c in the 365 days up to their first E11 record from 2016,
    clipped: plain SQL, independent of the compiler."""
    with duckdb.connect(str(database), read_only=True) as con:
        rows = con.execute(
            """
            WITH first_e11 AS (
              SELECT co.person_id, MIN(co.condition_start_date) AS index_date
              FROM condition_occurrence co
              JOIN concept c ON c.concept_id = co.condition_source_concept_id
              JOIN person p ON p.person_id = co.person_id
              WHERE c.concept_code LIKE 'E11%' AND co.condition_start_date >= ?
                AND p.year_of_birth <= 2026
                AND co.person_id NOT IN (SELECT person_id FROM tessera_optout)
              GROUP BY co.person_id
            ), ranked AS (
              SELECT m.person_id, m.value_as_number AS value, row_number() OVER (
                PARTITION BY m.person_id ORDER BY m.measurement_date DESC, m.measurement_id DESC
              ) AS r
              FROM measurement m JOIN concept c ON c.concept_id = m.measurement_concept_id
              JOIN first_e11 f ON f.person_id = m.person_id
              WHERE c.concept_code = '4548-4' AND m.value_as_number IS NOT NULL
                AND m.measurement_date BETWEEN f.index_date - 365 AND f.index_date
            )
            SELECT value FROM ranked WHERE r = 1
            """,
            [FROM],
        ).fetchall()
    return [min(max(v, 4.0), 14.0) for (v,) in rows]


def test_a_mean_at_each_persons_index(federation: LocalFederation, researcher: Credentials) -> None:
    status, body = post(federation.gateway_url, {"query": QUESTION}, researcher)
    assert status == 200
    assert "errors" not in body, body
    answer: dict[str, Any] = body["data"]["cohort"]
    values = {j: truth(federation.database(j)) for j in federation.jurisdictions}
    everyone = [v for of_node in values.values() for v in of_node]
    assert len(everyone) >= 30  # the comparison is about something
    summary = answer["summary"]
    assert abs(summary["n"]["value"] - len(everyone)) <= 6 * summary["n"]["sd"]
    assert summary["mean"]["status"] == "PERTURBED"
    mean = sum(everyone) / len(everyone)
    assert abs(summary["mean"]["value"] - mean) <= 6 * summary["mean"]["sd"] + 1e-9
    for node in answer["byJurisdiction"]:
        assert node["status"] == "OK"
        own = node["summary"]["mean"]
        j = Jurisdiction(node["jurisdiction"])
        if own["value"] is not None:
            truth_mean = sum(values[j]) / len(values[j])
            assert abs(own["value"] - truth_mean) <= 6 * own["sd"] + 1e-9
    # The client asks the same question: the same stored answers, replayed.
    client = Client(
        federation.gateway_url, token=researcher.bearer, permits=list(researcher.permits)
    )
    again = client.cohort(
        request="DR-2026-0042",
        reference_date=dt.date(2026, 1, 1),
        index=index([event("CONDITION", ["ICD10:E11"])], window=(FROM, None)),
        variable=Variable.measurement("4548-4", per_person="LAST", days=(-365, 0), lo=4, hi=14),
    )
    pooled = again.summary_frame()
    pooled = pooled[pooled["jurisdiction"] == "POOLED"].set_index("statistic")
    assert float(pooled.loc["n", "value"]) == summary["n"]["value"]


BOTH = """{ cohort(request: "DR-2026-0042", referenceDate: "2026-01-01",
    index: { events: [{ domain: DRUG, codes: [{ vocabulary: ATC, code: "J07BN01" }] }],
             window: { start: "2021-01-01" } },
    criteria: {},
    variable: { source: AGE, lo: 0, hi: 100 },
    outcome: { event: { domain: CONDITION, codes: [{ vocabulary: ICD10, code: "U07.1" }] },
               window: { startDays: 0, endDays: 90 }, per: 1000 }) {
  summary { n { value status } mean { value status sd } }
  rate { events { value status } personYears { value status } rate { value status } }
  byJurisdiction { jurisdiction status privacy { questionRho } }
  breakdown(by: [AGE_BAND_10]) { cells { dimensions { value }
      summary { n { value status } } rate { personYears { value status } } } }
} }"""


def test_a_rate_and_a_summary_in_one_question(
    federation: LocalFederation, researcher: Credentials
) -> None:
    status, body = post(federation.gateway_url, {"query": BOTH}, researcher)
    assert status == 200
    assert "errors" not in body, body
    answer: dict[str, Any] = body["data"]["cohort"]
    assert answer["summary"]["mean"]["status"] == "PERTURBED"
    assert 0 < answer["summary"]["mean"]["value"] < 100
    assert answer["rate"]["personYears"]["status"] == "PERTURBED"
    assert answer["rate"]["rate"]["value"] is not None
    for node in answer["byJurisdiction"]:
        assert node["status"] == "OK"
        # Two tables (the total and the age bands), each six measures at 0.02.
        assert node["privacy"]["questionRho"] == pytest.approx(0.24)
    cells = answer["breakdown"]["cells"]
    assert any(c["summary"]["n"]["value"] is not None for c in cells)
    assert any(c["rate"]["personYears"]["value"] is not None for c in cells)
