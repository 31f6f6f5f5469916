"""An incidence rate end to end, through the GraphQL endpoint of a federation of real
processes: COVID-19 in the 90 days after a first mRNA dose, pooled and per country near the
truth computed from the nodes' databases (within the noise), by age band with the rate
withheld where its events are (each person's days and event in the band of their age on the
day: `schema.lexis`), every measure charged, the same numbers when asked again, free."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pytest

from schema.codes import Jurisdiction
from tessera.client import Client, event, index, outcome
from tessera.credentials import Credentials
from tessera.local import LocalFederation
from tests.integration.federation_kit import post

pytestmark = pytest.mark.integration

WINDOW = 90
RATE = """{ cohort(request: "DR-2026-0042", referenceDate: "2026-01-01",
    index: { events: [{ domain: DRUG, codes: [{ vocabulary: ATC, code: "J07BN01" }] }],
             window: { start: "2021-01-01" } },
    criteria: { age: { max: 79 } },
    outcome: { event: { domain: CONDITION, codes: [{ vocabulary: ICD10, code: "U07.1" }] },
               window: { startDays: 0, endDays: 90 }, per: 1000 }) {
  count { value status }
  rate { per events { value status sd } personYears { value status sd }
         rate { value status sd reasons { rule } } ciLow { value } ciHigh { value } }
  byJurisdiction { jurisdiction status error privacy { questionRho }
                   rate { events { value status sd } personYears { value sd status }
                          rate { value status } } }
  breakdown(by: [AGE_BAND_10]) { cells { dimensions { value }
      rate { events { value status sd } personYears { value status sd reasons { rule } }
             rate { value status reasons { rule } } } } }
} }"""


@pytest.fixture(scope="module")
def researcher(federation: LocalFederation) -> Credentials:
    """A researcher (and organisation) of this module's own: the shared federation's default
    researcher has spent budget in other modules, and persons who reached the cap drop out of
    their counts and days (the individual privacy filter), so the truth would not be theirs."""
    return federation.credentials(
        federation.permits(subject=SUBJECT, applicant=ORGANISATION), subject=SUBJECT
    )


SUBJECT = "rates@test.tessera.eu"
ORGANISATION = "Rates Test Institute"


def ask(federation: LocalFederation, researcher: Credentials) -> dict[str, Any]:
    status, body = post(federation.gateway_url, {"query": RATE}, researcher)
    assert status == 200
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["cohort"]
    return result


Truth = dict[str, tuple[int, int]]  # events and days at risk, in all and by age band


def truth(database: Path) -> Truth:
    """The node's events and days at risk: its rows by plain SQL (an ATC or ICD-10 source
    code, not opted out), each person's follow-up in Python, and its days and event in the
    age band of the person on each day (their age from their date of birth: `schema.lexis`),
    all under "" ."""
    with duckdb.connect(str(database), read_only=True) as con:
        doses = con.execute(
            """
            SELECT d.person_id, MIN(d.drug_exposure_start_date)
            FROM drug_exposure d JOIN concept c ON c.concept_id = d.drug_source_concept_id
            JOIN person p ON p.person_id = d.person_id
            WHERE c.concept_code LIKE 'J07BN01%' AND d.drug_exposure_start_date >= ?
              AND p.year_of_birth <= 2026
              AND d.person_id NOT IN (SELECT person_id FROM tessera_optout)
            GROUP BY d.person_id
            """,
            [dt.date(2021, 1, 1)],
        ).fetchall()
        births = {
            p: (year, month, day)
            for p, year, month, day in con.execute(
                "SELECT person_id, year_of_birth, month_of_birth, day_of_birth FROM person"
            ).fetchall()
        }
        periods: dict[int, list[tuple[dt.date, dt.date]]] = defaultdict(list)
        for person, begin, end in con.execute(
            "SELECT person_id, observation_period_start_date, observation_period_end_date "
            "FROM observation_period"
        ).fetchall():
            periods[person].append((begin, end))
        died = dict(
            con.execute("SELECT person_id, MIN(death_date) FROM death GROUP BY 1").fetchall()
        )
        cases: dict[int, list[dt.date]] = defaultdict(list)
        for person, date in con.execute(
            """
            SELECT co.person_id, co.condition_start_date FROM condition_occurrence co
            JOIN concept c ON c.concept_id = co.condition_source_concept_id
            WHERE c.concept_code LIKE 'U07.1%'
            """
        ).fetchall():
            cases[person].append(date)
    found_by: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def band(person: int, day: dt.date) -> str:
        year, month, of_month = births[person]
        birthday = dt.date(day.year, month or 1, 1) + dt.timedelta(days=(of_month or 1) - 1)
        age = day.year - year - (day < birthday)
        return f"{age - age % 10}-{age - age % 10 + 9}"

    for person, dose in doses:
        if dose.year - births[person][0] > 79:
            continue
        last = dose + dt.timedelta(days=WINDOW)
        observed = [end for begin, end in periods[person] if begin <= dose <= end]
        censored = min(
            last,
            max(observed) if observed else dose - dt.timedelta(days=1),
            died.get(person, last),
        )
        found = [d for d in cases[person] if dose <= d <= last]
        first = min(found) if found else None
        event = first is not None and first <= censored
        leaves = first if event and first is not None else censored
        for n in range((leaves - dose).days + 1):
            for key in ("", band(person, dose + dt.timedelta(days=n))):
                found_by[key][1] += 1
        if event:
            for key in ("", band(person, leaves)):
                found_by[key][0] += 1
    return {key: (events, days) for key, (events, days) in found_by.items()}


def test_an_incidence_rate_pooled_per_country_and_by_age_band(
    federation: LocalFederation, researcher: Credentials
) -> None:
    first = ask(federation, researcher)
    assert {n["status"] for n in first["byJurisdiction"]} == {"OK"}
    truths = {j: truth(federation.database(j)) for j in federation.jurisdictions}
    events = sum(t.get("", (0, 0))[0] for t in truths.values())
    days = sum(t.get("", (0, 0))[1] for t in truths.values())
    rate = first["rate"]
    assert rate["per"] == 1_000
    assert rate["personYears"]["status"] == "PERTURBED"
    years = rate["personYears"]
    assert abs(years["value"] - days / 365.25) <= 6 * years["sd"]
    assert rate["events"]["status"] == "PERTURBED"
    assert abs(rate["events"]["value"] - events) <= 6 * rate["events"]["sd"]
    value = rate["rate"]["value"]
    assert value == pytest.approx(rate["events"]["value"] / years["value"] * 1_000)
    assert rate["ciLow"]["value"] < value < rate["ciHigh"]["value"]
    assert rate["rate"]["sd"] > 0
    for node in first["byJurisdiction"]:
        j = Jurisdiction(node["jurisdiction"])
        own = node["rate"]
        assert (
            abs(own["personYears"]["value"] - truths[j][""][1] / 365.25)
            <= 6 * own["personYears"]["sd"]
        )
        assert node["privacy"]["questionRho"] > 0
    cells = [c["rate"] for c in first["breakdown"]["cells"]]
    # Where a cell's events are withheld (LOW at a node, so the pool is INCOMPLETE_POOL),
    # the rate is too.
    withheld = [c for c in cells if c["events"]["value"] is None]
    assert all(c["rate"]["value"] is None for c in withheld)
    assert all(c["rate"]["status"] in ("LOW", "SUPPRESSED") for c in withheld)
    released = [c for c in cells if c["rate"]["value"] is not None]
    assert released
    # Each band's pooled days and events near the union's, split by age on each day.
    for cell in first["breakdown"]["cells"]:
        key = cell["dimensions"][0]["value"]
        band_events = sum(t.get(key, (0, 0))[0] for t in truths.values())
        band_days = sum(t.get(key, (0, 0))[1] for t in truths.values())
        years, found = cell["rate"]["personYears"], cell["rate"]["events"]
        if years["value"] is not None:
            assert abs(years["value"] - band_days / 365.25) <= 6 * years["sd"], key
        if found["value"] is not None:
            assert abs(found["value"] - band_events) <= 6 * found["sd"], key
    # Asked again: the same numbers, free.
    again = ask(federation, researcher)
    assert again["rate"] == rate
    assert again["breakdown"] == first["breakdown"]
    assert {n["privacy"]["questionRho"] for n in again["byJurisdiction"]} == {0}


def test_the_client_and_tessera_query_give_the_same_rates(
    federation: LocalFederation, researcher: Credentials, tmp_path: Path
) -> None:
    # The question of RATE, asked through the client: the same stored answers, replayed.
    graphql = ask(federation, researcher)
    credentials = researcher
    client = Client(
        federation.gateway_url, token=credentials.bearer, permits=list(credentials.permits)
    )
    answer = client.cohort(
        request="DR-2026-0042",
        age=(None, 79),
        by=["AGE_BAND_10"],
        reference_date=dt.date(2026, 1, 1),
        index=index([event("DRUG", ["ATC:J07BN01"])], window=(dt.date(2021, 1, 1), None)),
        outcome=outcome(event("CONDITION", ["ICD10:U07.1"]), days=(0, WINDOW), per=1_000),
    )
    rates = answer.rate_frame()
    assert set(rates["jurisdiction"]) == {"POOLED", *(j.value for j in federation.jurisdictions)}
    pooled = rates[rates["jurisdiction"] == "POOLED"].set_index("statistic")
    assert list(pooled.index) == ["events", "person_years", "rate", "ci_low", "ci_high"]
    assert float(pooled.loc["rate", "value"]) == pytest.approx(graphql["rate"]["rate"]["value"])
    assert set(pooled["per"]) == {1_000}
    by_age = answer.rate_frame("AGE_BAND_10")
    assert "age_band" in by_age.columns
    assert {n.privacy["questionRho"] for n in answer.nodes if n.privacy} == {0}  # replayed
    # And from the terminal.
    token = tmp_path / "researcher.jwt"
    token.write_text(credentials.bearer or "")
    permits = []
    for i, permit in enumerate(credentials.permits):
        permits.append(tmp_path / f"permit-{i}.jwt")
        permits[-1].write_text(permit)
    command = [
        sys.executable, "-m", "tessera", "query", "--gateway", federation.gateway_url,
        "--token", str(token), "--permit", *map(str, permits), "--demo-dir", str(tmp_path),
        "--request", "DR-2026-0042", "--age", "-79", "--by", "AGE_BAND_10",
        "--index", "ATC:J07BN01", "--index-from", "2021-01-01", "--outcome", "ICD10:U07.1",
        "--follow-up", f"0-{WINDOW}", "--per", "1000",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "incidence rate per 1,000 person-years" in done.stdout
    assert "incidence rate by AGE_BAND_10" in done.stdout
    for heading in ("events", "person_years", "ci_low"):
        assert heading in done.stdout
