"""The query pipeline, on the fake backend (canned rows) and on the fixture database."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from connector_kit import approval_token, approval_verifier, policy, request_body
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors.backends.duckdb import DuckDBBackend
from connectors.backends.fake import FakeBackend
from connectors.compiler import CompiledQuery, ConceptLookup, ConceptSet, Row, Statement
from connectors.errors import (
    BackendFailed,
    BadRequest,
    NodeRefusal,
    QueryTimeout,
    WrongNode,
)
from connectors.service import QueryService
from connectors.verify import RequestVerifier, load_gateway_keys
from policies.disclosure import PRIMARY_SUPPRESSION, SECONDARY_SUPPRESSION
from schema.audit.log import AuditLog
from schema.audit.store import MemoryAuditStore
from schema.codes import Dimension, Jurisdiction, NodeStatus, ValueStatus, Vocabulary
from schema.errors import ErrorCode
from schema.query import Criteria, EventCriterion
from schema.result import Value

Sign = Callable[..., str]
E11 = EventCriterion(vocabulary=Vocabulary.ICD10, code="E11")


def e11_body(
    tables: list[tuple[Dimension, ...]] | None = None,
    *,
    criteria: Criteria | None = None,
    **kw: Any,
) -> bytes:
    return request_body(criteria or Criteria(conditions=[E11]), tables, **kw)


@pytest.fixture
def verifier(gateway_public_pem: Path) -> RequestVerifier:
    return RequestVerifier(
        keys=load_gateway_keys({"gateway-2024": gateway_public_pem}),
        issuer="tessera-gateway",
        audience="tessera-node-fr",
    )


AUDIT_KEY = Ed25519PrivateKey.generate()


def service(
    backend: Any,
    verifier: RequestVerifier,
    *,
    store: MemoryAuditStore | None = None,
    signed: bool = True,
    query_timeout_s: float = 30.0,
) -> QueryService:
    audit = AuditLog(
        store or MemoryAuditStore(),
        "node:tessera-node-fr",
        signing_key=AUDIT_KEY if signed else None,
    )
    return QueryService(
        jurisdiction=Jurisdiction.FR,
        backend=backend,
        verifier=verifier,
        policy=policy(),
        audit=audit,
        query_timeout_s=query_timeout_s,
        approvals=approval_verifier(Jurisdiction.FR),
    )


async def ask(svc: QueryService, sign: Sign, body: bytes) -> Any:
    return await svc.handle(
        authorization=f"Bearer {sign(body)}", body=body, approval_token=approval_token()
    )


async def test_counts_are_protected_by_the_node_profile(
    verifier: RequestVerifier, sign: Sign
) -> None:
    # (grouping_id, sex, count, sum of record keys): total 120, FEMALE 112, MALE 8 (below
    # FR's 11).
    backend = FakeBackend([(1, None, 120, 30), (0, "MALE", 8, 10), (0, "FEMALE", 112, 20)])
    response = await ask(service(backend, verifier), sign, e11_body([(Dimension.SEX,)]))
    assert response.status is NodeStatus.OK
    assert response.jurisdiction is Jurisdiction.FR
    assert response.optout_register_version == "fake-optout-1"
    assert response.elapsed_ms > 0
    total, by_sex = response.tables
    assert total.by == ()
    assert [(c.key, c.count) for c in total.cells] == [([], Value.exact(120))]
    assert by_sex.by == (Dimension.SEX,)
    female, male = by_sex.cells
    # FEMALE would be the total minus MALE: suppressed too (secondary suppression).
    assert female.key == ["FEMALE"]
    assert female.count.value is None
    assert [r.rule for r in female.count.reasons] == [SECONDARY_SUPPRESSION]
    # A suppressed cell is still listed: the gateway learns it exists, not its count.
    assert male.key == ["MALE"]
    assert male.count.value is None
    assert male.count.status is ValueStatus.SUPPRESSED
    assert [(r.rule, r.jurisdiction) for r in male.count.reasons] == [
        (PRIMARY_SUPPRESSION, Jurisdiction.FR)
    ]


async def test_the_total_has_one_cell_even_for_an_empty_answer(
    verifier: RequestVerifier, sign: Sign
) -> None:
    response = await ask(service(FakeBackend([]), verifier), sign, e11_body())
    [total] = response.tables
    assert len(total.cells) == 1
    assert total.cells[0].key == []
    assert total.cells[0].count.status is ValueStatus.SUPPRESSED  # zero is suppressed in FR


async def test_codes_are_resolved_once_and_bound_as_concept_ids(
    verifier: RequestVerifier, sign: Sign
) -> None:
    e11 = ConceptSet(Vocabulary.ICD10, "E11", descendants=True)
    backend = FakeBackend([(0, 50, 1234)], concepts={e11: [1001, 1002]})
    svc = service(backend, verifier)
    await ask(svc, sign, e11_body())
    await ask(svc, sign, e11_body())
    lookups = [s for s in backend.statements if isinstance(s, ConceptLookup)]
    cohorts = [s for s in backend.statements if isinstance(s, CompiledQuery)]
    assert [lookup.concept_set for lookup in lookups] == [e11]
    assert len(cohorts) == 2
    assert all(c.bound and [1001, 1002] in c.params for c in cohorts)


async def test_a_bad_token_stops_the_pipeline(verifier: RequestVerifier, sign: Sign) -> None:
    backend = FakeBackend([(0, 50, 1234)])
    body = e11_body()
    with pytest.raises(NodeRefusal):
        await service(backend, verifier).handle(
            authorization=f"Bearer {sign(body, aud='tessera-node-de')}",
            body=body,
            approval_token=approval_token(),
        )
    assert backend.statements == []


async def test_a_bad_approval_stops_the_pipeline(verifier: RequestVerifier, sign: Sign) -> None:
    backend = FakeBackend([(0, 50, 1234)])
    body = e11_body()
    with pytest.raises(NodeRefusal) as refused:
        await service(backend, verifier).handle(
            authorization=f"Bearer {sign(body)}",
            body=body,
            approval_token=approval_token(request_id="DR-2099-0001"),
        )
    assert refused.value.code.value == "APPROVAL_MISMATCH"
    assert backend.statements == []


async def test_a_request_for_another_jurisdiction_is_refused(
    verifier: RequestVerifier, sign: Sign
) -> None:
    with pytest.raises(WrongNode, match="answers for FR, not DE"):
        await ask(service(FakeBackend(), verifier), sign, e11_body(jurisdiction=Jurisdiction.DE))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"{not json", "invalid request at body: Invalid JSON", id="malformed"),
        pytest.param(b"[]", "invalid request", id="not-an-object"),
        pytest.param(e11_body().replace(b'"E11"', b'"E11; DROP"'), "query.criteria", id="bad-code"),
        pytest.param(
            e11_body([(Dimension.JURISDICTION, Dimension.SEX)]),
            "JURISDICTION",
            id="jurisdiction-table",
        ),
    ],
)
async def test_an_invalid_request_is_a_short_bad_request(
    verifier: RequestVerifier, sign: Sign, body: bytes, message: str
) -> None:
    with pytest.raises(BadRequest, match=message) as raised:
        await ask(service(FakeBackend(), verifier), sign, body)
    assert len(raised.value.message) <= 300


async def test_backend_failure_propagates(verifier: RequestVerifier, sign: Sign) -> None:
    backend = FakeBackend(fail=True)
    with pytest.raises(BackendFailed):
        await ask(service(backend, verifier), sign, e11_body())
    assert backend.cohorts_open == 0


async def test_a_population_the_guard_refuses_never_gets_its_tables_computed(
    verifier: RequestVerifier, sign: Sign
) -> None:
    backend = FakeBackend([(0, 100, 1234)], population=range(1, 101))
    svc = service(backend, verifier)
    first = await ask(svc, sign, e11_body())
    assert first.status is NodeStatus.OK
    # Under the same approval, one person fewer: the two answers would single them out.
    backend.population = list(range(1, 100))
    backend.statements.clear()
    second = await ask(svc, sign, e11_body(criteria=Criteria(conditions=[E11], sex="MALE")))
    assert second.status is NodeStatus.DENIED
    assert [r.rule for r in second.reasons] == ["DIFFERENCING_GUARD"]
    assert not [s for s in backend.statements if isinstance(s, CompiledQuery)]
    assert backend.cohorts_open == 0


class HangingBackend(FakeBackend):
    """Cohort statements never finish; records whether the wait was cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = asyncio.Event()

    async def execute(self, statement: Statement) -> list[Row]:
        if isinstance(statement, ConceptLookup):
            return await super().execute(statement)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")


async def test_a_query_past_the_node_time_limit_is_cancelled(
    verifier: RequestVerifier, sign: Sign
) -> None:
    backend = HangingBackend()
    svc = service(backend, verifier, query_timeout_s=0.2)
    with pytest.raises(QueryTimeout) as raised:
        await ask(svc, sign, e11_body())
    assert raised.value.code is ErrorCode.QUERY_TIMEOUT
    assert "0.2 s" in raised.value.message
    assert backend.cancelled.is_set()
    assert backend.cohorts_open == 0


async def test_counts_are_never_logged(
    verifier: RequestVerifier, sign: Sign, caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeBackend(
        [(1, None, 98765, 3), (0, "MALE", 7, 1), (0, "FEMALE", 98758, 2)], population=[4, 5]
    )
    with caplog.at_level(logging.DEBUG):
        await ask(service(backend, verifier), sign, e11_body([(Dimension.SEX,)]))
    assert "q-00000001" in caplog.text
    for count in ("98765", "98758", "7"):
        # A count alone, not a digit of a number such as the elapsed "7.3 ms" or of a hash.
        assert not re.search(rf"(?<![\w.]){count}(?![\w.])", caplog.text), count


async def test_readiness_reasons(verifier: RequestVerifier) -> None:
    assert await service(FakeBackend(), verifier).not_ready_reason() is None
    assert "prepare" in (
        await service(FakeBackend(not_ready="run prepare"), verifier).not_ready_reason() or ""
    )
    keyless = RequestVerifier(keys={}, issuer="tessera-gateway", audience="tessera-node-fr")
    assert "key" in (await service(FakeBackend(), keyless).not_ready_reason() or "")
    unsigned = service(FakeBackend(), verifier, signed=False)
    assert await unsigned.not_ready_reason() == "no audit signing key is configured"
    broken = MemoryAuditStore()
    broken.fail = True
    assert "audit trail" in (
        await service(FakeBackend(), verifier, store=broken).not_ready_reason() or ""
    )


async def test_end_to_end_on_the_fixture_database(
    omop_db: Path, verifier: RequestVerifier, sign: Sign
) -> None:
    backend = DuckDBBackend(omop_db)
    try:
        body = e11_body([(Dimension.AGE_BAND_10,)], criteria=Criteria())
        response = await ask(service(backend, verifier), sign, body)
    finally:
        await backend.close()
    total, by_age = response.tables
    assert total.cells[0].count == Value.exact(47)
    # 20-29 (10), 30-39, 60-69 and 70-79 are below FR's 11; with 40-49 (11) released, the
    # total would bound the four small ones (together 36): 40-49 is suppressed too.
    assert {tuple(c.key): c.count.value for c in by_age.cells} == {
        ("20-29",): None,
        ("30-39",): None,
        ("40-49",): None,
        ("60-69",): None,
        ("70-79",): None,
    }
    assert {c.count.reasons[0].rule for c in by_age.cells} == {
        PRIMARY_SUPPRESSION,
        SECONDARY_SUPPRESSION,
    }
    assert response.optout_register_version == "optout-2024-06-01"
