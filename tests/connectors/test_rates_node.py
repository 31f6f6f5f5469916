"""An incidence rate at one node, on the fixture database (tests/connectors/conftest.py): the
index is each person's first metformin (persons 1-10 on 2019-04-01, 11-12 on 2021-06-01; person
3 opted out: 11 persons), the outcome death in days 0-1900 after it (person 2 died on
2024-05-01, day 1857). Everyone's observation ends on 2024-12-31. Events and days at risk as
the follow-up says, noise at each measure's sensitivity (the days' is the window's length),
days withheld with their count of persons and by the magnitude rules, every measure
charged."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors.answers import StoredTable
from connectors.backends.duckdb import DuckDBBackend
from connectors.canonical import question_digest
from connectors.ledger import MemoryLedger
from connectors.noise import DiscreteGaussian, NoiseSource, ShiftedNoise
from connectors.release import released_table
from connectors.service import QueryService
from oversight.audit.log import AuditLog
from oversight.audit.store import MemoryAuditStore
from policies.disclosure import CellContext
from policies.magnitude import DOMINANCE
from policies.measures import COUNT_WITHHELD
from policies.person_time import person_time_reasons
from schema.codes import Dimension, Jurisdiction, MeasureKind, ValueStatus
from schema.query import RATES, CohortQuery
from schema.wire import NodeRequest, NodeResponse
from tests.connectors.connector_kit import (
    REFERENCE_DATE,
    approval_token,
    approval_verifier,
    policy,
    request_body,
)
from trust.request_token import RequestVerifier, load_verifying_keys

Sign = Callable[..., str]
AUDIT_KEY = Ed25519PrivateKey.generate()
COUNT = MeasureKind.PERSON_COUNT
EVENTS, DAYS = RATES
WINDOW_END = 1900
D = WINDOW_END + 1  # days 0 to 1900, both included


@pytest.fixture
def verifier(gateway_public_pem: Path) -> RequestVerifier:
    return RequestVerifier(
        keys=load_verifying_keys({"gateway-2024": gateway_public_pem}),
        issuer="tessera-gateway",
        audience="tessera-node-fr",
    )


def rate_body(tables: list[tuple[Dimension, ...]] | None = None) -> bytes:
    request = NodeRequest.model_validate_json(request_body(None, tables))
    query = CohortQuery.model_validate(
        {
            **request.query.model_dump(),
            "index": {
                "events": [{"domain": "DRUG", "codes": [{"vocabulary": "ATC", "code": "A10BA"}]}]
            },
            "outcome": {
                "event": {"domain": "DEATH"},
                "window": {"start_days": 0, "end_days": WINDOW_END},
            },
            "measures": [{"kind": k} for k in (COUNT, *RATES)],
        }
    )
    return request.model_copy(update={"query": query}).model_dump_json().encode()


async def answer(
    omop_db: Path,
    verifier: RequestVerifier,
    sign: Sign,
    body: bytes,
    *,
    noise: NoiseSource | None = None,
    ledger: MemoryLedger | None = None,
) -> NodeResponse:
    backend = DuckDBBackend(omop_db)
    try:
        svc = QueryService(
            jurisdiction=Jurisdiction.FR,
            backend=backend,
            verifier=verifier,
            policy=policy(),
            audit=AuditLog(MemoryAuditStore(), "node:tessera-node-fr", signing_key=AUDIT_KEY),
            approvals=approval_verifier(Jurisdiction.FR),
            noise=noise or ShiftedNoise(),
            ledger=ledger,
        )
        return await svc.handle(
            authorization=f"Bearer {sign(body)}", body=body, approval_token=approval_token()
        )
    finally:
        await backend.close()


def expected_days() -> int:
    first, later = dt.date(2019, 4, 1), dt.date(2021, 6, 1)
    died = (dt.date(2024, 5, 1) - first).days + 1  # person 2: the day of death included
    observed = (dt.date(2024, 12, 31) - later).days + 1  # 11 and 12: to the observation's end
    return 8 * D + died + 2 * observed  # persons 1 and 4-10 followed to day 1900


async def test_events_and_days_at_risk_follow_each_person(
    omop_db: Path, verifier: RequestVerifier, sign: Sign
) -> None:
    assert REFERENCE_DATE.year == 2024
    response = await answer(omop_db, verifier, sign, rate_body())
    (cell,) = response.tables[0].cells
    values = cell.values
    assert values[COUNT].value == 11
    # One death in 11 persons: below France's minimum of 11, LOW; the days are released.
    assert values[EVENTS].status is ValueStatus.LOW
    assert values[DAYS].value == expected_days()
    # Noise at each measure's sensitivity: France's sd 5, the days' 5 x 1901.
    assert {k: v.sd for k, v in values.items()} == {COUNT: 5.0, EVENTS: 5.0, DAYS: 5.0 * D}


async def test_days_are_withheld_where_their_count_of_persons_is(
    omop_db: Path, verifier: RequestVerifier, sign: Sign
) -> None:
    # By sex: 5 women and 6 men, both below France's minimum.
    response = await answer(omop_db, verifier, sign, rate_body([(Dimension.SEX,)]))
    for cell in response.tables[1].cells:
        days = cell.values[DAYS]
        assert days.value is None
        assert days.status is ValueStatus.LOW
        assert [r.rule for r in days.reasons] == [COUNT_WITHHELD]


async def test_every_measure_of_a_rate_is_charged(
    omop_db: Path, verifier: RequestVerifier, sign: Sign
) -> None:
    ledger = MemoryLedger()
    first = await answer(
        omop_db, verifier, sign, rate_body(), noise=DiscreteGaussian(reserve=0), ledger=ledger
    )
    assert first.privacy is not None
    # One table of three measures, each a count's cost at its sensitivity: 1 / (2 * 5^2).
    assert first.privacy.question_rho == pytest.approx(3 * 0.02)


def test_the_magnitude_rules_withhold_days_one_person_could_dominate() -> None:
    # Germany's dominance rule (n = 1, k = 85): a cell is sensitive when one person's most
    # (D days) can be more than 85% of it.
    de = policy(Jurisdiction.DE).disclosure_profile()
    assert de.dominance_n == 1
    assert de.dominance_k == 85
    assert [r.rule for r in person_time_reasons(100, 100, de, Jurisdiction.DE)] == [DOMINANCE]
    assert person_time_reasons(117, 100, de, Jurisdiction.DE)  # 100 > 0.85 x 117
    assert not person_time_reasons(118, 100, de, Jurisdiction.DE)  # 100 <= 0.85 x 118
    # A noisy total of no day is as sensitive as a cell can be.
    assert person_time_reasons(-40, 100, de, Jurisdiction.DE)
    # France publishes no magnitude rule.
    assert not person_time_reasons(1, 100, policy().disclosure_profile(), Jurisdiction.FR)
    # At release: released days that fail are SUPPRESSED, their noise's sd kept.
    context = CellContext(de, Jurisdiction.DE)
    stored = {
        COUNT: StoredTable({(): 40}),
        EVENTS: StoredTable({(): 0}),
        DAYS: StoredTable({(): 100}),
    }
    table = released_table((), stored, 5.0, context, sds={DAYS: 500.0}, most={DAYS: 100})
    days = table.cells[0].values[DAYS]
    assert days.status is ValueStatus.SUPPRESSED
    assert days.value is None
    assert [r.rule for r in days.reasons] == [DOMINANCE]
    with pytest.raises(ValueError, match="most one person"):
        released_table((), stored, 5.0, context, sds={DAYS: 500.0})


def test_a_rate_is_another_question_with_another_outcome_or_window() -> None:
    request = NodeRequest.model_validate_json(rate_body())
    query = request.query
    assert query.outcome is not None
    longer = query.model_copy(
        update={
            "outcome": query.outcome.model_copy(
                update={"window": query.outcome.window.model_copy(update={"end_days": 1000})}
            )
        }
    )
    for kind in RATES:
        assert question_digest(query, (), kind) != question_digest(longer, (), kind)
    # The cell's count of persons is the same cohort's: its stored answer is found again.
    assert question_digest(query, (), COUNT) == question_digest(longer, (), COUNT)


async def test_days_and_persons_are_split_by_calendar_year(
    omop_db: Path, verifier: RequestVerifier, sign: Sign
) -> None:
    # Each person's days in the year of each day (`schema.lexis`), the person one of the
    # persons of every year they are at risk in: 2021 has the 9 followed since 2019 and the 2
    # from 2021-06-01, where the year of the index date would have had 2.
    response = await answer(omop_db, verifier, sign, rate_body([(Dimension.CALENDAR_YEAR,)]))
    first, later = dt.date(2019, 4, 1), dt.date(2021, 6, 1)
    observed = dt.date(2024, 12, 31)
    spans = [(first, first + dt.timedelta(days=D - 1))] * 8
    spans += [(first, dt.date(2024, 5, 1)), (later, observed), (later, observed)]
    days: dict[str, int] = {}
    persons: dict[str, set[int]] = {}
    for person, (start, end) in enumerate(spans):
        for n in range((end - start).days + 1):
            year = str((start + dt.timedelta(days=n)).year)
            days[year] = days.get(year, 0) + 1
            persons.setdefault(year, set()).add(person)
    released = set()
    for cell in response.tables[1].cells:
        (year,) = cell.key
        values = cell.values
        at_risk = len(persons.get(year, ()))
        if at_risk >= 11:  # France's minimum
            assert values[COUNT].value == at_risk
            assert values[DAYS].value == days[year]
            released.add(year)
        else:
            assert values[COUNT].status is ValueStatus.LOW
            assert values[DAYS].value is None
    assert released == {"2021", "2022", "2023", "2024"}
    # A person is in up to 1 + 6 years of a table (1901 days cross at most six 1 Januarys):
    # the count's noise is scaled by ⌈√7⌉ = 3; the events' and the days' are as before.
    (total,) = response.tables[0].cells
    assert {k: v.sd for k, v in total.values.items()} == {COUNT: 15.0, EVENTS: 5.0, DAYS: 5.0 * D}


def test_a_split_count_of_persons_is_not_a_plain_count() -> None:
    # Persons at risk in each year, with noise of their own sd: their stored answers are
    # never those of the cohort's count, nor the days of entry cells those of split ones.
    split = NodeRequest.model_validate_json(rate_body([(Dimension.CALENDAR_YEAR,)])).query
    plain = NodeRequest.model_validate_json(rate_body([(Dimension.SEX,)])).query
    assert question_digest(split, (), COUNT) != question_digest(plain, (), COUNT)
    assert question_digest(split, (), DAYS) == question_digest(plain, (), DAYS)
    year = (Dimension.CALENDAR_YEAR,)
    assert question_digest(split, year, DAYS) != question_digest(plain, year, DAYS)
