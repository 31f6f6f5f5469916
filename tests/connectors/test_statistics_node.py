"""A numeric variable's statistics at one node, on the fixture database (tests/connectors/
conftest.py: HbA1c 6.0 + id/10 for persons 1-20 on 2023-06-01, person 3 opted out; the E11
cohort is persons 1-20 less person 3): values clipped to the question's bounds, noise at each
statistic's sensitivity, withheld with their count, the same numbers when asked again, and
every statistic charged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors.backends.duckdb import DuckDBBackend
from connectors.compiler import DUCKDB, compile_concept_lookup, compile_query
from connectors.ledger import Account, MemoryLedger, units
from connectors.noise import DiscreteGaussian, NoiseSource, ShiftedNoise
from connectors.service import QueryService
from oversight.audit.log import AuditLog
from oversight.audit.store import MemoryAuditStore
from policies.domain import table_domain
from policies.measures import N_WITHHELD
from schema.codes import Dimension, Jurisdiction, MeasureKind, ValueStatus, Vocabulary
from schema.query import (
    STATISTICS,
    Code,
    CohortQuery,
    Criteria,
    EventCriterion,
    Measure,
    NumericVariable,
)
from schema.variables import PerPerson, VariableSource
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
E11 = EventCriterion(vocabulary=Vocabulary.ICD10, code="E11")
AUDIT_KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def verifier(gateway_public_pem: Path) -> RequestVerifier:
    return RequestVerifier(
        keys=load_verifying_keys({"gateway-2024": gateway_public_pem}),
        issuer="tessera-gateway",
        audience="tessera-node-fr",
    )


def service(
    backend: Any,
    verifier: RequestVerifier,
    *,
    noise: NoiseSource | None = None,
    ledger: MemoryLedger | None = None,
) -> QueryService:
    """France's node on `backend`, with noise that adds nothing unless given."""
    return QueryService(
        jurisdiction=Jurisdiction.FR,
        backend=backend,
        verifier=verifier,
        policy=policy(),
        audit=AuditLog(MemoryAuditStore(), "node:tessera-node-fr", signing_key=AUDIT_KEY),
        approvals=approval_verifier(Jurisdiction.FR),
        noise=noise or ShiftedNoise(),
        ledger=ledger,
    )


async def ask(svc: QueryService, sign: Sign, body: bytes) -> NodeResponse:
    return await svc.handle(
        authorization=f"Bearer {sign(body)}", body=body, approval_token=approval_token()
    )


def e11_body(tables: list[tuple[Dimension, ...]] | None) -> bytes:
    return request_body(Criteria(conditions=[E11]), tables)


N, S1, S2 = STATISTICS
COUNT = MeasureKind.PERSON_COUNT
HBA1C = Code(vocabulary=Vocabulary.LOINC, code="4548-4")
# The E11 cohort's HbA1c values, person 3 opted out.
VALUES = [round(6.0 + p / 10, 1) for p in range(1, 21) if p != 3]


def statistics_body(
    variable: NumericVariable, tables: list[tuple[Dimension, ...]] | None = None
) -> bytes:
    request = NodeRequest.model_validate_json(e11_body(tables))
    query = request.query.model_copy(
        update={
            "measures": [Measure(kind=k) for k in (COUNT, *STATISTICS)],
            "variable": variable,
        }
    )
    return request.model_copy(update={"query": query}).model_dump_json().encode()


def hba1c(lo: float | None = None, hi: float | None = None) -> NumericVariable:
    return NumericVariable(
        source=VariableSource.MEASUREMENT, code=HBA1C, per_person=PerPerson.FIRST, lo=lo, hi=hi
    )


async def answer(omop_db: Path, verifier: RequestVerifier, sign: Sign, body: bytes) -> NodeResponse:
    backend = DuckDBBackend(omop_db)
    try:
        return await ask(service(backend, verifier), sign, body)
    finally:
        await backend.close()


def total(response: NodeResponse, table: int = 0) -> dict[MeasureKind, object]:
    (cell,) = [c for c in response.tables[table].cells if not c.key]
    return {kind: value.value for kind, value in cell.values.items()}


async def test_the_sums_are_of_values_clipped_to_the_questions_bounds(
    omop_db: Path, verifier: RequestVerifier, sign: Sign
) -> None:
    # Bounds 3.0-7.0 in tenths: centre 50, so u = min(10x, 70) - 50, and k = 20**2 // 2.
    response = await answer(omop_db, verifier, sign, statistics_body(hba1c(3.0, 7.0)))
    units_ = [min(round(10 * x), 70) - 50 for x in VALUES]
    assert max(VALUES) > 7.0  # some values are clipped
    assert total(response) == {
        COUNT: 19,
        N: 19,
        S1: sum(units_),
        S2: sum(u * u - 200 for u in units_),
    }
    # Without clipping (the registry's 3-20): the plain sums.
    wide = await answer(omop_db, verifier, sign, statistics_body(hba1c()))
    centre = (30 + 200) // 2
    plain = [round(10 * x) - centre for x in VALUES]
    k = max(centre - 30, 200 - centre) ** 2 // 2
    assert total(wide)[S1] == sum(plain)
    assert total(wide)[S2] == sum(u * u - k for u in plain)


async def test_persons_without_a_value_are_in_no_statistic(
    omop_db: Path, verifier: RequestVerifier, sign: Sign
) -> None:
    # Everyone: 47 persons, of whom the 19 of persons 1-20 have a value (person 21's
    # measurement has none).
    request = NodeRequest.model_validate_json(statistics_body(hba1c(3.0, 7.0)))
    everyone = request.query.model_copy(update={"criteria": Criteria()})
    body = request.model_copy(update={"query": everyone}).model_dump_json().encode()
    response = await answer(omop_db, verifier, sign, body)
    units_ = [min(round(10 * x), 70) - 50 for x in VALUES]
    assert total(response) == {
        COUNT: 47,
        N: 19,
        S1: sum(units_),
        S2: sum(u * u - 200 for u in units_),
    }


async def test_each_statistic_carries_noise_at_its_sensitivity(
    omop_db: Path, verifier: RequestVerifier, sign: Sign
) -> None:
    # FR's sd 5: n's 5, the sum's 5 * 20, the squares' 5 * (400 - 200).
    response = await answer(omop_db, verifier, sign, statistics_body(hba1c(3.0, 7.0)))
    (cell,) = response.tables[0].cells
    assert {k: v.sd for k, v in cell.values.items()} == {
        COUNT: 5.0,
        N: 5.0,
        S1: 100.0,
        S2: 1000.0,
    }
    assert all(v.status is ValueStatus.PERTURBED for v in cell.values.values())


async def test_sums_are_withheld_where_their_count_is_low(
    omop_db: Path, verifier: RequestVerifier, sign: Sign
) -> None:
    # By sex: 9 women and 10 men with a value, both below FR's minimum of 11.
    body = statistics_body(hba1c(3.0, 7.0), [(Dimension.SEX,)])
    response = await answer(omop_db, verifier, sign, body)
    by_sex = {tuple(c.key): c.values for c in response.tables[1].cells}
    for key in (("FEMALE",), ("MALE",)):
        values = by_sex[key]
        assert values[N].status is ValueStatus.LOW
        for kind in (S1, S2):
            assert values[kind].status is ValueStatus.LOW
            assert values[kind].value is None
            assert [r.rule for r in values[kind].reasons] == [N_WITHHELD]
    assert total(response)[N] == 19


async def test_the_same_question_gets_the_same_statistics_and_is_charged_once(
    omop_db: Path, verifier: RequestVerifier, sign: Sign
) -> None:
    ledger = MemoryLedger()
    backend = DuckDBBackend(omop_db)
    body = statistics_body(hba1c(4.0, 9.0), [(Dimension.SEX,)])
    try:
        svc = service(backend, verifier, ledger=ledger, noise=DiscreteGaussian(reserve=0))
        first = await ask(svc, sign, body)
        again = await ask(svc, sign, body)
    finally:
        await backend.close()
    assert first.tables == again.tables
    assert first.privacy is not None
    assert again.privacy is not None
    # Two tables of four statistics each (the count, n and the two sums), each 1 / (2 * 5^2).
    assert first.privacy.question_rho == pytest.approx(8 * 0.02)
    assert again.privacy.question_rho == 0
    spend = ledger.array(Account("researcher", "researcher@test.eu", units(0.5)), 50)
    assert int((spend == units(8 * 0.02)).sum()) == 19


async def test_a_persons_age_is_a_variable_too(
    omop_db: Path, verifier: RequestVerifier, sign: Sign
) -> None:
    # Ages at the first E11: persons 1-10 born 1964, diagnosed 2019 (person 2 in 2016), 55
    # (52); 11-15 born 1979, 2021: 42; 16-20, 2023: 44. Bounds 18-90: centre 54.
    variable = NumericVariable(source=VariableSource.AGE, lo=18, hi=90)
    response = await answer(omop_db, verifier, sign, statistics_body(variable))
    ages = [52 if p == 2 else 55 if p <= 10 else 42 if p <= 15 else 44 for p in range(1, 21)]
    ages = [a for p, a in zip(range(1, 21), ages, strict=True) if p != 3]
    assert total(response) == {
        COUNT: 19,
        N: 19,
        S1: sum(a - 54 for a in ages),
        S2: sum((a - 54) ** 2 - 648 for a in ages),
    }


def histogram(omop_db: Path, query: CohortQuery) -> dict[tuple[str, ...], int]:
    """The exact counts of a histogram's table (its compiled statement, on the fixture
    database: what the node draws its noise for)."""
    compiled = compile_query(query, dialect=DUCKDB)
    with duckdb.connect(str(omop_db), read_only=True) as con:
        ids = {}
        for concept_set in compiled.concept_sets:
            lookup = compile_concept_lookup(concept_set, dialect=DUCKDB)
            rows = con.execute(lookup.sql, list(lookup.params)).fetchall()
            ids[concept_set] = [r[0] for r in rows]
        bound = compiled.bind(ids)
        rows = con.execute(bound.sql, list(bound.params)).fetchall()
    ((_, _), (_, cells)) = compiled.tabulate(rows)
    return {cell.key: cell.values[COUNT] for cell in cells}


def test_a_histogram_counts_each_persons_clipped_value_in_its_bin(omop_db: Path) -> None:
    # Bins of 0.5 from 4.0 to 7.0: values above 7.0 are clipped into the last bin (6.5-7.0),
    # and the 28 persons of everyone without a value are UNKNOWN.
    variable = NumericVariable(
        source=VariableSource.MEASUREMENT, code=HBA1C, lo=4.0, hi=7.0, bin_width=0.5
    )
    query = CohortQuery(
        criteria=Criteria(),
        reference_date=REFERENCE_DATE,
        tables=[(Dimension.VALUE_BIN,)],
        variable=variable,
    )
    counts = histogram(omop_db, query)
    expected = {(f"{4.0 + i * 0.5:.1f}",): 0 for i in range(6)}
    for x in VALUES:
        edge = min(int((round(10 * x) - 40) // 5) * 5 + 40, 65)
        expected[(f"{edge // 10}.{edge % 10}",)] += 1
    expected[("UNKNOWN",)] = 47 - len(VALUES)
    assert {k: v for k, v in counts.items() if v} == {k: v for k, v in expected.items() if v}
    assert counts[("6.5",)] == len([x for x in VALUES if x >= 6.5])
    # Its public domain: every bin, from the question alone.
    assert tuple(table_domain((Dimension.VALUE_BIN,), query)) == (
        ("4.0",),
        ("4.5",),
        ("5.0",),
        ("5.5",),
        ("6.0",),
        ("6.5",),
        ("UNKNOWN",),
    )


def test_a_histogram_of_ages_uses_the_age_date(omop_db: Path) -> None:
    # Ages at the first E11 (see above): 52 and 55 in 50-59, 42 and 44 in 40-49.
    variable = NumericVariable(source=VariableSource.AGE, lo=20, hi=90, bin_width=10)
    query = CohortQuery(
        criteria=Criteria(conditions=[E11]),
        reference_date=REFERENCE_DATE,
        tables=[(Dimension.VALUE_BIN,)],
        variable=variable,
    )
    counts = histogram(omop_db, query)
    assert {k: v for k, v in counts.items() if v} == {("40",): 10, ("50",): 9}
