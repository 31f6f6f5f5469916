"""The query pipeline, on the fake backend (canned rows) and on the fixture database: noise on
every count, full public domains, answers stored once, persons metered by the ledger."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors.answers import MemoryAnswers, Shelf, StoredTable
from connectors.backends.duckdb import DuckDBBackend
from connectors.backends.fake import FakeBackend
from connectors.compiler import ConceptLookup, ConceptSet, PopulationQuery, Row, Statement
from connectors.errors import (
    BackendFailed,
    BadRequest,
    LedgerUnavailable,
    NodeRefusal,
    QueryTimeout,
    QuestionTooCostly,
    WrongNode,
)
from connectors.ledger import Account, Admitted, MemoryLedger, PersonIndexes, units
from connectors.noise import NoiseSource, ShiftedNoise
from connectors.service import QueryService
from oversight.audit.log import AuditLog
from oversight.audit.store import MemoryAuditStore
from policies.disclosure import BELOW_MINIMUM, NOISE
from policies.model import NodeLayer
from policies.policy_set import EffectivePolicy
from schema.codes import Dimension, Jurisdiction, MeasureKind, NodeStatus, NoiseLevel, Vocabulary
from schema.errors import ErrorCode
from schema.measures import MEASURES
from schema.query import Criteria, EventCriterion
from schema.wire import NodeRequest, NodeResponse
from tests.connectors.connector_kit import (
    SHIPPED,
    approval_token,
    approval_verifier,
    policy,
    request_body,
)
from trust.request_token import RequestRefused, RequestVerifier, load_verifying_keys

Sign = Callable[..., str]
E11 = EventCriterion(vocabulary=Vocabulary.ICD10, code="E11")
SEX = Dimension.SEX
COUNT = MeasureKind.PERSON_COUNT


def e11_body(
    tables: list[tuple[Dimension, ...]] | None = None,
    *,
    criteria: Criteria | None = None,
    noise: NoiseLevel = NoiseLevel.STANDARD,
    **kw: Any,
) -> bytes:
    body = request_body(criteria or Criteria(conditions=[E11]), tables, **kw)
    if noise is NoiseLevel.STANDARD:
        return body
    request = NodeRequest.model_validate_json(body)
    return request.model_copy(update={"noise": noise}).model_dump_json().encode()


@pytest.fixture
def verifier(gateway_public_pem: Path) -> RequestVerifier:
    return RequestVerifier(
        keys=load_verifying_keys({"gateway-2024": gateway_public_pem}),
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
    noise: NoiseSource | None = None,
    ledger: Any = None,
    answers: MemoryAnswers | None = None,
    policy_: EffectivePolicy | None = None,
    workers: int = 2,
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
        policy=policy_ or policy(),
        audit=audit,
        query_timeout_s=query_timeout_s,
        approvals=approval_verifier(Jurisdiction.FR),
        noise=noise or ShiftedNoise(),
        ledger=ledger,
        answers=answers,
        workers=workers,
    )


async def ask(svc: QueryService, sign: Sign, body: bytes, **token: Any) -> NodeResponse:
    return await svc.handle(
        authorization=f"Bearer {sign(body)}", body=body, approval_token=approval_token(**token)
    )


def cells(response: NodeResponse, table: int) -> dict[tuple[str, ...], tuple[int | None, str]]:
    return {
        tuple(c.key): (c.values[COUNT].value, c.values[COUNT].status.value)
        for c in response.tables[table].cells
    }


def tables_statements(backend: FakeBackend) -> list[Statement]:
    return [s for s in backend.statements if not isinstance(s, ConceptLookup | PopulationQuery)]


# Rows (grouping_id, sex, persons): total 120, FEMALE 112, MALE 8 (below FR's 11).
BY_SEX_ROWS = [(1, None, 120), (0, "MALE", 8), (0, "FEMALE", 112)]
# Rows (grouping_id, persons) of the total alone.
TOTAL_ROWS = [(0, 120)]


async def test_every_count_is_noisy_and_every_cell_of_the_domain_is_listed(
    verifier: RequestVerifier, sign: Sign
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    noise = ShiftedNoise(lambda i: 2)  # visible, deterministic "noise"
    response = await ask(service(backend, verifier, noise=noise), sign, e11_body([(SEX,)]))
    assert response.status is NodeStatus.OK
    assert response.optout_register_version == "fake-optout-1"
    assert cells(response, 0) == {(): (122, "PERTURBED")}
    # UNKNOWN has nobody: it is listed, noisy, and LOW like MALE's 8 + 2.
    assert cells(response, 1) == {
        ("FEMALE",): (114, "PERTURBED"),
        ("MALE",): (None, "LOW"),
        ("UNKNOWN",): (None, "LOW"),
    }
    female, male, _ = response.tables[1].cells
    assert female.values[COUNT].sd == male.values[COUNT].sd == 5.0
    assert [(r.rule, r.jurisdiction) for r in female.values[COUNT].reasons] == [
        (NOISE, Jurisdiction.FR)
    ]
    assert [(r.rule, r.jurisdiction) for r in male.values[COUNT].reasons] == [
        (BELOW_MINIMUM, Jurisdiction.FR)
    ]
    # Two tables at sd 5: each person counted is charged 2 / (2 * 5^2) = 0.04.
    assert response.privacy is not None
    assert response.privacy.model_dump() == {
        "sigma": 5.0,
        "question_rho": 0.04,
        "spent_rho": 0.04,
        "cap_rho": 0.5,
        "organisation_spent_rho": None,
        "organisation_cap_rho": None,
        "data_release": "fake-release-1",
    }


async def test_the_total_has_one_cell_even_for_an_empty_answer(
    verifier: RequestVerifier, sign: Sign
) -> None:
    response = await ask(service(FakeBackend([]), verifier), sign, e11_body())
    assert cells(response, 0) == {(): (None, "LOW")}


async def test_the_same_question_gets_the_same_numbers_and_costs_nothing_again(
    verifier: RequestVerifier, sign: Sign
) -> None:
    e11 = ConceptSet(Vocabulary.ICD10, "E11", descendants=True)
    backend = FakeBackend(BY_SEX_ROWS, concepts={e11: [1001, 1002]}, population=range(120))
    svc = service(backend, verifier, noise=None)
    svc.noise = noise = _Counting()
    first = await ask(svc, sign, e11_body([(SEX,)]))
    again = await ask(svc, sign, e11_body([(SEX,)]))
    assert again.tables == first.tables
    assert (noise.draws, len(tables_statements(backend))) == (2, 1)  # one draw per table
    assert again.privacy is not None
    assert first.privacy is not None
    assert (again.privacy.question_rho, again.privacy.spent_rho) == (0.0, 0.04)
    # Codes are resolved once and bound as concept ids.
    lookups = [s for s in backend.statements if isinstance(s, ConceptLookup)]
    assert [lookup.concept_set for lookup in lookups] == [e11]
    # The total asked alone is the same table, with the same number: free.
    alone = await ask(svc, sign, e11_body())
    assert alone.tables == first.tables[:1]
    assert alone.privacy is not None
    assert alone.privacy.question_rho == 0.0


class _Counting(ShiftedNoise):
    """Real noise draws, counted (`draws` is the number of tables drawn)."""

    def draw(self, counts: Sequence[int], sd: float) -> list[int]:
        self.draws += 1
        rng = np.random.default_rng()
        return [int(c) + int(rng.integers(-20, 21)) for c in counts]


async def test_a_table_in_another_order_is_the_same_question(
    verifier: RequestVerifier, sign: Sign
) -> None:
    rows = [(3, None, None, 120), (0, "FEMALE", "60-69", 70), (0, "MALE", "60-69", 50)]
    backend = FakeBackend(rows, population=range(120))
    svc = service(backend, verifier, noise=_Counting())
    age = Dimension.AGE_BAND_10
    first = await ask(svc, sign, e11_body([(SEX, age)]))
    swapped = await ask(svc, sign, e11_body([(age, SEX)]))
    assert swapped.privacy is not None
    assert swapped.privacy.question_rho == 0.0
    mine = {tuple(c.key): c.values[COUNT] for c in first.tables[1].cells}
    theirs = {(c.key[1], c.key[0]): c.values[COUNT] for c in swapped.tables[1].cells}
    assert mine == theirs


async def test_one_question_asking_a_table_in_both_orders_gets_the_same_numbers_twice(
    verifier: RequestVerifier, sign: Sign
) -> None:
    rows = [(3, None, None, 120), (0, "FEMALE", "60-69", 70), (0, "MALE", "60-69", 50)]
    backend = FakeBackend(rows, population=range(120))
    age = Dimension.AGE_BAND_10
    both = await ask(
        service(backend, verifier, noise=_Counting()), sign, e11_body([(SEX, age), (age, SEX)])
    )
    assert [table.by for table in both.tables] == [(), (SEX, age), (age, SEX)]
    mine = {tuple(c.key): c.values[COUNT] for c in both.tables[1].cells}
    theirs = {(c.key[1], c.key[0]): c.values[COUNT] for c in both.tables[2].cells}
    assert mine == theirs


class _Raced(MemoryAnswers):
    """An answer store in which an identical question, racing, stores its tables after this
    one looked them up and before it stores its own."""

    async def get(self, shelf: Shelf, questions: Sequence[str]) -> dict[str, StoredTable]:
        return {}


async def test_a_question_racing_an_identical_one_answers_with_the_numbers_stored_first(
    verifier: RequestVerifier, sign: Sign
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    answers = _Raced()
    first = await ask(
        service(backend, verifier, answers=answers, noise=ShiftedNoise(lambda i: 3)),
        sign,
        e11_body([(SEX,)]),
    )
    second = await ask(
        service(backend, verifier, answers=answers, noise=ShiftedNoise(lambda i: 7)),
        sign,
        e11_body([(SEX,)]),
    )
    assert cells(first, 0) == {(): (123, "PERTURBED")}
    assert second.tables == first.tables


async def test_colleagues_share_answers_and_an_organisation_budget(
    verifier: RequestVerifier, sign: Sign
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    svc = service(backend, verifier, noise=_Counting())
    body = e11_body([(SEX,)])
    alice = await ask(svc, sign, body, applicant="Org A", sub="alice@a.eu")
    bob = await ask(svc, sign, body, applicant="Org A", sub="bob@a.eu")
    carol = await ask(svc, sign, body, applicant="Org B", sub="carol@b.eu")
    assert bob.tables == alice.tables
    assert alice.privacy is not None
    assert bob.privacy is not None
    assert carol.privacy is not None
    assert (alice.privacy.organisation_spent_rho, alice.privacy.organisation_cap_rho) == (
        0.04,
        0.5,
    )
    assert (bob.privacy.question_rho, bob.privacy.spent_rho) == (0.0, 0.0)
    # Another organisation's noise is its own, and so is its spend.
    assert carol.tables != alice.tables
    assert (carol.privacy.question_rho, carol.privacy.organisation_spent_rho) == (0.04, 0.04)


async def test_persons_whose_budget_is_spent_drop_out_of_the_counts_silently(
    verifier: RequestVerifier, sign: Sign
) -> None:
    ledger = MemoryLedger()
    me = Account("researcher", "researcher@test.eu", units(0.5))
    # Persons 0..9 have spent all but 0.01 of their budget with this researcher earlier.
    await ledger.admit([me], np.arange(10, dtype=np.uint32), units(0.49))
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    response = await ask(service(backend, verifier, ledger=ledger), sign, e11_body([(SEX,)]))
    # No refusal, no status: the answer is computed without them.
    assert response.status is NodeStatus.OK
    assert backend.excluded == [list(range(10))]
    assert {tuple(c.key) for c in response.tables[1].cells} == {
        ("FEMALE",),
        ("MALE",),
        ("UNKNOWN",),
    }
    assert response.privacy is not None
    assert (response.privacy.question_rho, response.privacy.spent_rho) == (0.04, 0.53)
    # Nobody else was excluded, and nobody is charged twice for the same question.
    again = await ask(service(backend, verifier, ledger=ledger), sign, e11_body([(SEX,)]))
    assert backend.excluded[-1] == list(range(10))
    assert again.privacy is not None
    assert again.privacy.spent_rho == 0.57


async def test_coarse_noise_doubles_the_sd_and_costs_a_quarter(
    verifier: RequestVerifier, sign: Sign
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    svc = service(backend, verifier)
    response = await ask(svc, sign, e11_body([(SEX,)], noise=NoiseLevel.COARSE))
    assert response.privacy is not None
    assert (response.privacy.sigma, response.privacy.question_rho) == (10.0, 0.01)
    assert {c.values[COUNT].sd for t in response.tables for c in t.cells} == {10.0}


async def test_a_question_costing_more_than_the_budget_is_refused_for_its_form(
    verifier: RequestVerifier, sign: Sign
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    # A node layer may raise the noise, never lower it: a budget of 0.01 per person is the
    # way to make two tables (0.04) too costly.
    tight = NodeLayer.model_validate(
        {
            "name": "a hub's own layer",
            "node": {"id": "tessera-node-fr", "jurisdiction": "FR"},
            "disclosure": {
                "budget": {"value": {"applicant": 0.01, "organisation": 0.5}, "source": "hub"}
            },
        }
    )
    svc = service(backend, verifier, policy_=SHIPPED.effective(Jurisdiction.FR, tight))
    with pytest.raises(QuestionTooCostly) as raised:
        await ask(svc, sign, e11_body([(SEX,)]))
    assert raised.value.code is ErrorCode.QUESTION_TOO_COSTLY
    assert tables_statements(backend) == []


async def test_a_new_data_release_recomputes_and_charges_again(
    verifier: RequestVerifier, sign: Sign
) -> None:
    backend = FakeBackend(TOTAL_ROWS, population=range(120))
    svc = service(backend, verifier)
    await ask(svc, sign, e11_body())
    backend._release = "fake-release-2"
    again = await ask(svc, sign, e11_body())
    assert again.privacy is not None
    assert (again.privacy.question_rho, again.privacy.data_release) == (0.02, "fake-release-2")
    assert len(tables_statements(backend)) == 2


async def test_a_measures_noise_scales_with_its_sensitivity_and_costs_a_counts(
    verifier: RequestVerifier, sign: Sign, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One person moving a table's values by 2: noise of sd 2 x 5, and what the discrete
    # Gaussian's privacy map says of it, 2^2 / (2 * 10^2): a count's 1 / (2 * 5^2).
    monkeypatch.setitem(
        MEASURES, COUNT, dataclasses.replace(MEASURES[COUNT], sensitivity=lambda query: 2)
    )
    response = await ask(
        service(FakeBackend(TOTAL_ROWS, population=range(120)), verifier), sign, e11_body()
    )
    assert response.privacy is not None
    assert response.privacy.question_rho == 0.02
    assert {v.sd for v in response.tables[0].values()} == {10.0}


class _BrokenLedger(MemoryLedger):
    async def admit(
        self, accounts: Sequence[Account], persons: PersonIndexes, cost: int, *, reserve: int = 0
    ) -> Admitted:
        raise LedgerUnavailable("the node's privacy ledger is unavailable")


async def test_without_its_ledger_a_node_answers_nothing(
    verifier: RequestVerifier, sign: Sign
) -> None:
    backend = FakeBackend(BY_SEX_ROWS, population=range(120))
    with pytest.raises(LedgerUnavailable) as raised:
        await ask(service(backend, verifier, ledger=_BrokenLedger()), sign, e11_body())
    assert raised.value.code is ErrorCode.LEDGER_UNAVAILABLE
    assert tables_statements(backend) == []
    assert backend.cohorts_open == 0


class _Kept(MemoryAnswers):
    """Counts the tables stored."""

    kept = 0

    async def put(
        self, shelf: Shelf, tables: Mapping[str, StoredTable], *, synced: bool = True
    ) -> dict[str, StoredTable]:
        self.kept += len(tables)
        return await super().put(shelf, tables, synced=synced)


class _FailingFlush(MemoryLedger):
    """Charges in memory, and a disk that fails every flush until `mended`."""

    def __init__(self) -> None:
        super().__init__()
        self.mended = False

    async def flush(self) -> None:
        await super().flush()
        if not self.mended:
            raise LedgerUnavailable("the node's privacy ledger is unavailable")


async def test_an_answer_is_stored_only_once_its_charges_are_on_disk(
    verifier: RequestVerifier, sign: Sign
) -> None:
    ledger, answers = _FailingFlush(), _Kept()
    svc = service(
        FakeBackend(BY_SEX_ROWS, population=range(120)), verifier, ledger=ledger, answers=answers
    )
    with pytest.raises(LedgerUnavailable):
        await ask(svc, sign, e11_body([(SEX,)]))
    # Nothing kept that a repeated question would be served without a charge on disk.
    assert answers.kept == 0
    ledger.mended = True
    again = await ask(svc, sign, e11_body([(SEX,)]))
    assert again.privacy is not None
    # Drawn afresh and charged (on top of the first charge, which the flush kept).
    assert (again.privacy.question_rho, again.privacy.spent_rho) == (0.04, 0.08)


async def test_a_bad_token_stops_the_pipeline(verifier: RequestVerifier, sign: Sign) -> None:
    backend = FakeBackend([(0, 50)])
    body = e11_body()
    with pytest.raises(RequestRefused):
        await service(backend, verifier).handle(
            authorization=f"Bearer {sign(body, aud='tessera-node-de')}",
            body=body,
            approval_token=approval_token(),
        )
    assert backend.statements == []


async def test_a_bad_approval_stops_the_pipeline(verifier: RequestVerifier, sign: Sign) -> None:
    backend = FakeBackend([(0, 50)])
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


class HangingBackend(FakeBackend):
    """Cohort statements never finish; records whether the wait was cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = asyncio.Event()

    async def execute(self, statement: Statement) -> list[Row]:
        if isinstance(statement, ConceptLookup | PopulationQuery):
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
        [(1, None, 98765), (0, "MALE", 7), (0, "FEMALE", 98758)], population=[4, 5]
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
    ledger = MemoryLedger()
    try:
        body = e11_body([(Dimension.AGE_BAND_10,)], criteria=Criteria())
        response = await ask(service(backend, verifier, ledger=ledger), sign, body)
    finally:
        await backend.close()
    # Without noise (the fake adds 0) the numbers are the truth: 47 persons, of whom only
    # 40-49 reaches FR's minimum of 11; every band of ages 0 to 130 is listed.
    assert cells(response, 0) == {(): (47, "PERTURBED")}
    by_age = cells(response, 1)
    assert len(by_age) == 14
    assert {key: value for key, value in by_age.items() if value[0] is not None} == {
        ("40-49",): (11, "PERTURBED")
    }
    assert response.optout_register_version == "optout-2024-06-01"
    assert response.privacy is not None
    assert response.privacy.data_release == "cdm-2024-06"
    # Every person of the cohort was charged for the two tables.
    spend = ledger.array(Account("researcher", "researcher@test.eu", units(0.5)), 50)
    assert int((spend == units(0.04)).sum()) == 47


async def test_an_unknown_code_ends_the_question_before_anyone_is_counted(
    verifier: RequestVerifier, sign: Sign
) -> None:
    e11 = ConceptSet(Vocabulary.ICD10, "E11", descendants=True)
    backend = FakeBackend(BY_SEX_ROWS, concepts={e11: []}, population=range(120))
    ledger = MemoryLedger()
    svc = service(backend, verifier, ledger=ledger)
    response = await ask(svc, sign, e11_body([(SEX,)]))
    assert response.status is NodeStatus.UNKNOWN_CODE
    assert [(c.vocabulary, c.code) for c in response.unknown_codes] == [(Vocabulary.ICD10, "E11")]
    assert [r.rule for r in response.reasons] == ["UNKNOWN_CODE"]
    assert (response.tables, response.privacy) == ([], None)
    # Only the vocabulary was read: no cohort, no table, nobody charged.
    assert all(isinstance(s, ConceptLookup) for s in backend.statements)
    assert backend.excluded == []
    # The same code known (and nobody having it) is a count, charged as any.
    known = FakeBackend([], population=[])
    answered = await ask(service(known, verifier), sign, e11_body())
    assert answered.status is NodeStatus.OK
    assert answered.vocabularies == ["ICD10"]
    assert cells(answered, 0) == {(): (None, "LOW")}
    assert answered.privacy is not None


async def test_a_researchers_burst_does_not_queue_another_researcher_behind_it(
    verifier: RequestVerifier, sign: Sign
) -> None:
    """With one database worker, four questions are in the database work at once, at most
    two of one researcher's: the others wait their turn, and another researcher's question
    goes in at once instead of behind the whole burst."""
    gate = asyncio.Event()

    class Gated(FakeBackend):
        started: list[Statement] = []  # the class is made anew for this test

        async def execute(self, statement: Statement) -> list[Row]:
            if isinstance(statement, PopulationQuery):
                self.started.append(statement)
                await gate.wait()
            return await super().execute(statement)

    backend = Gated(BY_SEX_ROWS, population=range(120))
    svc = service(backend, verifier, workers=1)
    burst = [
        asyncio.create_task(ask(svc, sign, e11_body([(SEX,)]), sub="heavy@test.eu"))
        for _ in range(6)
    ]
    await asyncio.sleep(0.2)
    assert len(backend.started) == 2
    other = asyncio.create_task(ask(svc, sign, e11_body([(SEX,)]), sub="other@test.eu"))
    await asyncio.sleep(0.2)
    assert len(backend.started) == 3
    gate.set()
    answers = await asyncio.gather(*burst, other)
    assert {a.status for a in answers} == {NodeStatus.OK}
