"""A numeric variable's summary end to end, through the GraphQL endpoint of a federation of
real processes: the pooled and per-country mean HbA1c of diabetics near the truth computed
from the nodes' databases (within the noise), the same numbers when asked again, free, each
statistic charged, and LOW where too few persons have a value."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from schema.codes import Jurisdiction
from tessera.client import Client, Variable
from tessera.local import LocalFederation
from tests.integration.federation_kit import post, start_federation

pytestmark = pytest.mark.integration

FR, DE, DK = Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.DK
MEAN_HBA1C = """{ cohort(request: "DR-2026-0042", referenceDate: "2026-01-01",
    criteria: { conditions: [{ vocabulary: ICD10, code: "E11" }] },
    variable: { source: MEASUREMENT, code: "4548-4", perPerson: LAST,
                window: { start: "2015-01-01", end: "2025-12-31" }, lo: 4, hi: 14 }) {
  count { value status }
  summary { n { value status sd } mean { value status sd } sd { value } variance { value sd }
            ciLow { value } ciHigh { value } }
  byJurisdiction { jurisdiction status privacy { questionRho }
                   summary { n { value status } mean { value status sd } } }
  breakdown(by: [JURISDICTION, AGE_BAND_20]) { cells { dimensions { value }
      summary { n { value status } mean { value status reasons { rule } } } } }
} }"""


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    # Three nodes: a histogram alone is pooled securely (every shipped jurisdiction pools in
    # rounds of at least three).
    fed = start_federation(tmp_path_factory.mktemp("statistics"), (FR, DE, DK), persons=8_000)
    yield fed
    fed.stop()


def ask(federation: LocalFederation) -> dict[str, Any]:
    status, body = post(federation.gateway_url, {"query": MEAN_HBA1C}, federation.credentials(None))
    assert status == 200
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["cohort"]
    return result


def truth(database: Path) -> list[float]:
    """Each E11 patient's last HbA1c of 2015-2025, clipped to 4-14: plain SQL, independent of
    the compiler (the cohort: an ICD-10 E11 source code, not opted out)."""
    with duckdb.connect(str(database), read_only=True) as con:
        rows = con.execute(
            """
            WITH e11 AS (
              SELECT DISTINCT co.person_id FROM condition_occurrence co
              JOIN concept c ON c.concept_id = co.condition_source_concept_id
              JOIN person p ON p.person_id = co.person_id
              WHERE c.concept_code LIKE 'E11%' AND p.year_of_birth <= 2026
                AND co.person_id NOT IN (SELECT person_id FROM tessera_optout)
            ), ranked AS (
              SELECT m.person_id, m.value_as_number AS value, row_number() OVER (
                PARTITION BY m.person_id ORDER BY m.measurement_date DESC, m.measurement_id DESC
              ) AS r
              FROM measurement m JOIN concept c ON c.concept_id = m.measurement_concept_id
              WHERE c.concept_code = '4548-4' AND m.value_as_number IS NOT NULL
                AND m.measurement_date BETWEEN ? AND ?
            )
            SELECT value FROM ranked JOIN e11 USING (person_id) WHERE r = 1
            """,
            [dt.date(2015, 1, 1), dt.date(2025, 12, 31)],
        ).fetchall()
    return [min(max(v, 4.0), 14.0) for (v,) in rows]


def test_mean_hba1c_pooled_and_per_country(federation: LocalFederation) -> None:
    first = ask(federation)
    values = {j: truth(federation.database(j)) for j in (FR, DE, DK)}
    everyone = [v for of_node in values.values() for v in of_node]
    summary = first["summary"]
    assert summary["n"]["status"] == "PERTURBED"
    # The noise of n is 5 per node; of the mean, its own sd: within 6 of them.
    assert abs(summary["n"]["value"] - len(everyone)) <= 6 * summary["n"]["sd"]
    mean = sum(everyone) / len(everyone)
    assert abs(summary["mean"]["value"] - mean) <= 6 * summary["mean"]["sd"] + 1e-9
    assert summary["ciLow"]["value"] < summary["mean"]["value"] < summary["ciHigh"]["value"]
    assert summary["ciLow"]["value"] >= 4.0
    assert summary["ciHigh"]["value"] <= 14.0
    assert math.isclose(summary["sd"]["value"] ** 2, summary["variance"]["value"])
    for node in first["byJurisdiction"]:
        j = Jurisdiction(node["jurisdiction"])
        own = sum(values[j]) / len(values[j])
        assert abs(node["summary"]["mean"]["value"] - own) <= 6 * node["summary"]["mean"]["sd"]
        # Two tables (the total and the breakdown), each four statistics at 0.02.
        assert node["privacy"]["questionRho"] == pytest.approx(0.16)
    # Cells where n is LOW say so, and carry no mean; a noisy mean of a few persons may be
    # taken beyond the bounds by its noise, and is then shown at the bound.
    cells = [c["summary"] for c in first["breakdown"]["cells"]]
    low = [c for c in cells if c["n"]["status"] == "LOW"]
    assert low  # the 0-19 band has (almost) no diabetics
    assert all(c["mean"]["value"] is None and c["mean"]["status"] == "LOW" for c in low)
    released = [c for c in cells if c["n"]["status"] == "PERTURBED"]
    assert released
    assert all(4.0 <= c["mean"]["value"] <= 14.0 for c in released)
    # Asked again: the same numbers, free.
    again = ask(federation)
    assert again["summary"] == summary
    assert again["breakdown"] == first["breakdown"]
    assert {n["privacy"]["questionRho"] for n in again["byJurisdiction"]} == {0}


# Another reference date than MEAN_HBA1C's (the same persons): its total is a new table.
HISTOGRAM = """{ cohort(request: "DR-2026-0042", referenceDate: "2026-01-02",
    criteria: { conditions: [{ vocabulary: ICD10, code: "E11" }] },
    variable: { source: MEASUREMENT, code: "4548-4", perPerson: LAST,
                window: { start: "2015-01-01", end: "2025-12-31" }, lo: 4, hi: 14,
                binWidth: 0.5 }) {
  byJurisdiction { jurisdiction privacy { questionRho } }
  breakdown(by: [VALUE_BIN]) { cells { dimensions { value }
      count { value status reasons { rule } contributors } }
      quantiles { q1 { value bound } median { value status bound reasons { rule } }
                  q3 { value } } }
} }"""


def test_a_histogram_and_its_quartiles(federation: LocalFederation) -> None:
    status, body = post(federation.gateway_url, {"query": HISTOGRAM}, federation.credentials(None))
    assert status == 200
    assert "errors" not in body, body
    result = body["data"]["cohort"]
    cells = result["breakdown"]["cells"]
    # Every bin of 4-14 by 0.5, and UNKNOWN: the public domain.
    assert [c["dimensions"][0]["value"] for c in cells] == [
        *(f"{4 + i * 0.5:.1f}" for i in range(20)),
        "UNKNOWN",
    ]
    # Counts only (no summary selected), pooled securely over the three nodes, as any pooled
    # question of one table: 0.04.
    assert [n["privacy"]["questionRho"] for n in result["byJurisdiction"]] == [
        pytest.approx(0.04)
    ] * 3
    assert all(c["count"]["contributors"] == ["DK", "FR", "DE"] for c in cells)
    assert {c["count"]["status"] for c in cells} <= {"PERTURBED", "LOW"}
    ((quartiles),) = result["breakdown"]["quantiles"]
    values = sorted(v for j in (FR, DE, DK) for v in truth(federation.database(j)))
    true_median = values[len(values) // 2]
    median = quartiles["median"]
    assert median["bound"] == 0.5
    # Within its bin, give or take the noise of the bins around it.
    assert abs(median["value"] - true_median) <= 1.0
    assert quartiles["q1"]["value"] <= median["value"] <= quartiles["q3"]["value"]


def test_the_python_client_returns_tidy_frames(federation: LocalFederation) -> None:
    credentials = federation.credentials(None)
    client = Client(
        federation.gateway_url, token=credentials.bearer, permits=list(credentials.permits)
    )
    variable = Variable.measurement(
        "4548-4", per_person="LAST", start=dt.date(2015, 1, 1), lo=4, hi=14, bin_width=1
    )
    answer = client.cohort(
        concepts=["ICD10:E11"],
        by=[["SEX"], ["VALUE_BIN"]],
        variable=variable,
        reference_date=dt.date(2026, 1, 3),
    )
    summary = answer.summary_frame()
    # Pooled and per country, six numbers each.
    assert set(summary["jurisdiction"]) == {"POOLED", "FR", "DE", "DK"}
    assert list(summary[summary["jurisdiction"] == "POOLED"]["statistic"]) == [
        "n",
        "mean",
        "variance",
        "sd",
        "ci_low",
        "ci_high",
    ]
    mean = summary[(summary["jurisdiction"] == "POOLED") & (summary["statistic"] == "mean")]
    assert 4 <= float(mean["value"].iloc[0]) <= 14
    by_sex = answer.summary_frame("SEX")
    assert set(by_sex["sex"]) == {"FEMALE", "MALE", "UNKNOWN"}
    histogram = answer.frame("VALUE_BIN")
    assert list(histogram["bin_low"].dropna()) == [float(x) for x in range(4, 14)]
    quartiles = answer.quantiles_frame("VALUE_BIN")
    assert list(quartiles["statistic"]) == ["q1", "median", "q3", "iqr"]
    assert set(quartiles["bound"]) == {1.0, 2.0}


def test_tessera_query_prints_a_summary_and_quartiles(
    federation: LocalFederation, tmp_path: Path
) -> None:
    credentials = federation.credentials(None)
    token = tmp_path / "researcher.jwt"
    token.write_text(credentials.bearer or "")
    permits = []
    for i, permit in enumerate(credentials.permits):
        permits.append(tmp_path / f"permit-{i}.jwt")
        permits[-1].write_text(permit)
    command = [
        sys.executable, "-m", "tessera", "query", "--gateway", federation.gateway_url,
        "--token", str(token), "--permit", *map(str, permits), "--demo-dir", str(tmp_path),
        "--concept", "ICD10:E11", "--by", "VALUE_BIN", "--variable", "LOINC:4548-4",
        "--per-person", "LAST", "--bounds", "4-14", "--bin-width", "2",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "summary of the variable" in done.stdout
    assert "quartiles from the released bins" in done.stdout
    for heading in ("mean", "ci_low", "median"):
        assert heading in done.stdout
