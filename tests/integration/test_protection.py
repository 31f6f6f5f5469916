"""Protection across questions, end to end with real processes: routine hub work (an opt-out
register update, a rebuilt CDM, a new data release) refuses nothing and keeps every stored
answer and every person's spend; a second approval of the same applicant continues the first
one's ledger; persons whose budget is spent drop out of the counts without a refusal.

The attack simulator (`bench.attacks`, `tests/integration/test_attack_simulator.py`) attacks
the same protection; these tests check the bookkeeping it rests on.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from connectors.prepare import prepare_database
from schema.codes import Jurisdiction
from tessera.local import LocalFederation, policies_with_rate_limits
from tests.integration.federation_kit import post, start_federation

pytestmark = pytest.mark.integration

FR, DE = Jurisdiction.FR, Jurisdiction.DE
DIABETES_BY_SEX = """{ cohort(request: "%s", referenceDate: "2026-01-01",
    criteria: { conditions: [{ vocabulary: ICD10, code: "E11" }] }) {
  count { value status sd }
  byJurisdiction { jurisdiction status reasons { rule }
                   privacy { questionRho spentRho capRho dataRelease } }
  breakdown(by: [JURISDICTION, SEX]) { cells { dimensions { value } count { value status } } }
} }"""
DIABETES_BY_AGE = DIABETES_BY_SEX.replace("[JURISDICTION, SEX]", "[JURISDICTION, AGE_BAND_10]")
APPLICATION = "DR-2026-0042"


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[LocalFederation]:
    fed = start_federation(tmp_path / "federation", (FR, DE), persons=5_000)
    yield fed
    fed.stop()


def ask(federation: LocalFederation, query: str, **permits: Any) -> dict[str, Any]:
    status, body = post(
        federation.gateway_url,
        {"query": query % permits.pop("application", APPLICATION)},
        federation.credentials(federation.permits(**permits) if permits else None),
    )
    assert status == 200
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["cohort"]
    return result


def node(result: dict[str, Any], jurisdiction: Jurisdiction) -> dict[str, Any]:
    found: dict[str, Any] = next(
        n for n in result["byJurisdiction"] if n["jurisdiction"] == jurisdiction.value
    )
    assert found["status"] == "OK", found
    return found


def cells(result: dict[str, Any], jurisdiction: Jurisdiction) -> dict[str, Any]:
    return {
        c["dimensions"][1]["value"]: c["count"]
        for c in result["breakdown"]["cells"]
        if c["dimensions"][0]["value"] == jurisdiction.value
    }


def restart_after(federation: LocalFederation, jurisdiction: Jurisdiction, work: Any) -> None:
    """Stop a node, do `work` on its database (DuckDB lets nobody else open it meanwhile),
    start it again and wait until it is ready."""
    connector = federation.service(f"connector {jurisdiction.value}")
    connector.stop()
    work()
    connector.start()
    asyncio.run(connector.wait_ready())


def renumber_persons(database: Path, offset: int) -> None:
    """A rebuild of the same data by an ETL that numbers persons anew: every person_id moves,
    every source value stays."""
    with duckdb.connect(str(database)) as con:
        tables = [
            str(row[0])
            for row in con.execute(
                "SELECT table_name FROM information_schema.columns WHERE column_name = "
                "'person_id' AND table_name NOT LIKE 'tessera_person'"
            ).fetchall()
        ]
        for table in tables:
            con.execute(
                f"CREATE TABLE renumbered AS SELECT * REPLACE (person_id + {offset} AS person_id) "  # noqa: S608 - names from the catalogue
                f"FROM {table}"
            )
            con.execute(f"DROP TABLE {table}")
            con.execute(f"ALTER TABLE renumbered RENAME TO {table}")


def indexes_by_source(database: Path) -> dict[str, int]:
    with duckdb.connect(str(database), read_only=True) as con:
        rows = con.execute(
            "SELECT p.person_source_value, k.person_index FROM person AS p "
            "JOIN tessera_person AS k USING (person_id)"
        ).fetchall()
    return {str(source): int(index) for source, index in rows}


def test_routine_hub_work_refuses_nothing_and_keeps_answers_and_spend(
    federation: LocalFederation,
) -> None:
    first = ask(federation, DIABETES_BY_SEX)
    fr = node(first, FR)
    assert fr["privacy"]["questionRho"] == pytest.approx(0.04)  # the total and one table
    database, state = federation.database(FR), federation.node_state(FR)
    indexes = indexes_by_source(database)
    with duckdb.connect(str(database), read_only=True) as con:
        some = [int(r[0]) for r in con.execute("SELECT person_id FROM person LIMIT 40").fetchall()]

    # An opt-out register update: the same question is answered, with the stored numbers.
    restart_after(
        federation,
        FR,
        lambda: prepare_database(
            database, state=state, optout_ids=some, register_version="register-2"
        ),
    )
    after_optout = ask(federation, DIABETES_BY_SEX)
    assert node(after_optout, FR)["privacy"]["questionRho"] == 0.0
    assert node(after_optout, FR)["privacy"]["spentRho"] == fr["privacy"]["spentRho"]
    assert cells(after_optout, FR) == cells(first, FR)
    assert after_optout["count"] == first["count"]

    # A rebuild that numbers every person anew: the same persons keep their index, so the
    # stored answers and every person's spend carry over.
    restart_after(
        federation,
        FR,
        lambda: (renumber_persons(database, 10_000_000), prepare_database(database, state=state)),
    )
    assert indexes_by_source(database) == indexes
    after_rebuild = ask(federation, DIABETES_BY_SEX)
    assert node(after_rebuild, FR)["privacy"]["questionRho"] == 0.0
    assert cells(after_rebuild, FR) == cells(first, FR)
    by_age = node(ask(federation, DIABETES_BY_AGE), FR)
    assert by_age["privacy"]["spentRho"] == pytest.approx(0.06)  # 0.04 + a new table, 0.02

    # A new data release recomputes what is asked again, and charges it again.
    restart_after(federation, FR, lambda: prepare_database(database, state=state, release="2"))
    fresh = node(ask(federation, DIABETES_BY_SEX), FR)
    assert fresh["privacy"]["dataRelease"] == "2"
    assert fresh["privacy"]["questionRho"] == pytest.approx(0.04)
    assert fresh["privacy"]["spentRho"] == pytest.approx(0.10)
    # Germany saw none of it: its two questions were charged once each (0.04 + 0.02).
    germany = node(ask(federation, DIABETES_BY_SEX), DE)["privacy"]
    assert (germany["questionRho"], germany["spentRho"]) == (0.0, pytest.approx(0.06))


def test_a_second_approval_of_the_same_applicant_continues_its_ledger(
    federation: LocalFederation,
) -> None:
    first = ask(federation, DIABETES_BY_SEX)
    # Another application, with permits of its own from both HDABs, for the same researcher
    # of the same organisation: the same stored answers, the same budget.
    other = {"application_id": "DR-2027-0007", "request_id": "DR-2027-0007"}
    again = ask(federation, DIABETES_BY_SEX, application="DR-2027-0007", **other)
    for j in (FR, DE):
        assert node(again, j)["privacy"]["questionRho"] == 0.0
        assert cells(again, j) == cells(first, j)
    more = ask(federation, DIABETES_BY_AGE, application="DR-2027-0007", **other)
    assert node(more, FR)["privacy"]["spentRho"] == pytest.approx(0.06)


def tight_budget(directory: Path, rho: float) -> Path:
    """The shipped policies with a budget of `rho` per person for every applicant."""
    policies = policies_with_rate_limits(directory, per_minute=100_000, per_day=1_000_000)
    baseline = policies / "eu.toml"
    text = baseline.read_text()
    old = "value = { applicant = 0.5, organisation = 0.5 }"
    assert old in text
    baseline.write_text(text.replace(old, f"value = {{ applicant = {rho}, organisation = {rho} }}"))
    assert tomllib.loads(baseline.read_text())["disclosure"]["budget"]["value"]["applicant"] == rho
    return policies


def test_persons_whose_budget_is_spent_drop_out_without_a_refusal(tmp_path: Path) -> None:
    # A budget of 0.05 per person: the first question (a total and a table, 0.04) fits, a new
    # table about the same persons (0.02 more) does not, so it counts none of them, and is
    # answered like any other.
    federation = start_federation(
        tmp_path / "federation",
        (FR,),
        persons=5_000,
        policies=tight_budget(tmp_path / "policies", 0.05),
    )
    try:
        first = ask(federation, DIABETES_BY_SEX)
        assert first["count"]["value"] > 100
        second = ask(federation, DIABETES_BY_AGE)
        fr = node(second, FR)
        assert fr["reasons"] == []
        assert fr["privacy"]["spentRho"] == pytest.approx(0.06)  # the worst case, past the cap
        assert fr["privacy"]["capRho"] == pytest.approx(0.05)
        # Every diabetic has spent 0.04 and cannot afford 0.02 more: the new table counts
        # nobody, while the total, drawn with the first question, is stored. Its cells are
        # noise on zero: LOW, but where the noise alone reached FR's minimum of 11 (1.8% of
        # cells at sd 5: one of the 14 in a fifth of runs), and then small; counted, the
        # diabetics would fill half of them.
        released = [c["count"]["value"] for c in second["breakdown"]["cells"]]
        released = [value for value in released if value is not None]
        assert len(released) <= 3
        assert all(value <= 11 + 6 * 5 for value in released)
        assert second["count"] == first["count"]
        # Another organisation's researcher has a budget of their own.
        status, body = post(
            federation.gateway_url,
            {"query": DIABETES_BY_AGE % APPLICATION},
            federation.credentials(
                federation.permits(applicant="Another University", subject="b@other.eu"),
                subject="b@other.eu",
            ),
        )
        assert status == 200
        theirs = body["data"]["cohort"]["breakdown"]["cells"]
        assert {c["count"]["status"] for c in theirs} == {"LOW", "PERTURBED"}
    finally:
        federation.stop()
