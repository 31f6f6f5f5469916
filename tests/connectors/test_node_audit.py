"""The connector's audit trail and spans: one entry per verified request, before the answer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from connectors.app import create_app
from connectors.backends.fake import FakeBackend
from connectors.errors import WrongNode
from connectors.noise import ShiftedNoise
from connectors.service import QueryService
from connectors.settings import ConnectorSettings
from oversight.audit.log import AuditLog
from oversight.audit.store import AuditStoreError, MemoryAuditStore
from schema.approval import ApplicantId
from schema.audit.entry import Decision, PermitRecord, released_hash
from schema.codes import Dimension, Jurisdiction, NodeStatus
from schema.errors import ErrorCode, SettingsError
from schema.query import Criteria
from schema.wire import APPROVAL_HEADER, QUERY_PATH, NodeRequest
from tests.connectors.connector_kit import (
    HDAB_ISSUER,
    approval_token,
    approval_verifier,
    policy,
    request_body,
    write_hdab_public_pem,
)
from trust.request_token import RequestRefused, RequestVerifier, load_verifying_keys

Sign = Callable[..., str]
CHAIN = "node:tessera-node-fr"
# total 120; FEMALE 112; MALE 8 (below FR's 11: suppressed)
# (grouping id, sex, persons, sum of record keys)
ROWS = [(1, None, 120), (0, "MALE", 8), (0, "FEMALE", 112)]


def body(jurisdiction: Jurisdiction = Jurisdiction.FR) -> bytes:
    return request_body(Criteria(), [(), (Dimension.SEX,)], jurisdiction)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def store() -> MemoryAuditStore:
    return MemoryAuditStore()


@pytest.fixture
def service(
    gateway_public_pem: Path, spans: InMemorySpanExporter, store: MemoryAuditStore
) -> QueryService:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    verifier = RequestVerifier(
        keys=load_verifying_keys({"gateway-2024": gateway_public_pem}),
        issuer="tessera-gateway",
        audience="tessera-node-fr",
    )
    return QueryService(
        jurisdiction=Jurisdiction.FR,
        backend=FakeBackend(ROWS, population=range(120)),
        noise=ShiftedNoise(),
        verifier=verifier,
        approvals=approval_verifier(Jurisdiction.FR),
        policy=policy(),
        audit=AuditLog(store, CHAIN, signing_key=Ed25519PrivateKey.generate()),
        tracer=provider.get_tracer("test"),
    )


async def test_an_answer_is_recorded_before_it_leaves(
    service: QueryService, store: MemoryAuditStore, sign: Sign
) -> None:
    request = body()
    response = await service.handle(
        authorization=f"Bearer {sign(request)}", body=request, approval_token=approval_token()
    )
    (row,) = store.rows[CHAIN]
    entry = row.record()
    assert entry.decision is Decision.ANSWERED
    assert (entry.query_id, entry.approval, entry.service) == (
        "q-00000001",
        "DR-2026-0042",
        "tessera-node-fr",
    )
    assert (entry.principal, entry.issuer, entry.purpose) == (
        "researcher@test.eu",
        HDAB_ISSUER,
        "scientific_research",
    )
    assert entry.datasets == ["tessera-node-fr"]
    # Who asked, and under which permit, as the permit this node verified names them.
    assert entry.applicant == ApplicantId(researcher="researcher@test.eu")
    assert entry.permits == [
        PermitRecord(jurisdiction=Jurisdiction.FR, issuer=HDAB_ISSUER, request_id="DR-2026-0042")
    ]
    assert entry.caller == "gateway-2024"
    assert entry.jurisdictions == [Jurisdiction.FR]
    # MALE (and UNKNOWN, with nobody) are below FR's minimum; every count is noisy.
    assert entry.rules == ["BELOW_MINIMUM", "NOISE"]
    assert entry.cells_suppressed == 2
    assert entry.optout_register_version == "fake-optout-1"
    assert entry.sql_fingerprint is not None
    assert entry.result_hash == released_hash(response.model_dump(mode="json"))
    assert entry.query_hash == released_hash(
        NodeRequest.model_validate_json(request).query.model_dump(mode="json")
    )
    assert [s.name for s in entry.steps] == [
        "verify",
        "parse",
        "approval",
        "policy",
        "compile",
        "queue",
        "codes",
        "population",
        "ledger",
        "sql",
        "protect",
    ]


async def test_a_refusal_after_verification_is_recorded(
    service: QueryService, store: MemoryAuditStore, sign: Sign
) -> None:
    request = body(Jurisdiction.DE)
    with pytest.raises(WrongNode):
        await service.handle(authorization=f"Bearer {sign(request)}", body=request)
    (row,) = store.rows[CHAIN]
    assert row.record().decision is Decision.REFUSED
    assert row.record().error_code is ErrorCode.WRONG_NODE
    assert row.record().principal is None


async def test_an_unverified_request_is_not_recorded(
    service: QueryService, store: MemoryAuditStore
) -> None:
    with pytest.raises(RequestRefused):
        await service.handle(authorization="Bearer nonsense", body=body())
    assert store.rows == {}


async def test_no_answer_without_its_entry(
    service: QueryService, store: MemoryAuditStore, sign: Sign
) -> None:
    store.fail = True
    request = body()
    with pytest.raises(AuditStoreError):
        await service.handle(authorization=f"Bearer {sign(request)}", body=request)


async def test_spans_continue_the_gateways_trace(
    service: QueryService, spans: InMemorySpanExporter, sign: Sign
) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    context = propagate.extract({"traceparent": f"00-{trace_id}-{parent_id}-01"})
    request = body()
    await service.handle(
        authorization=f"Bearer {sign(request)}",
        body=request,
        trace_parent=context,
        approval_token=approval_token(),
    )
    finished = spans.get_finished_spans()
    (root,) = [s for s in finished if s.name == "connector.query"]
    assert root.kind is SpanKind.SERVER
    assert f"{root.context.trace_id:032x}" == trace_id
    assert root.parent is not None
    assert f"{root.parent.span_id:016x}" == parent_id
    # One span per answer: its steps are its events, each with its duration.
    assert [s.name for s in finished] == ["connector.query"]
    assert all(
        isinstance((e.attributes or {})["tessera.step.elapsed_us"], int) for e in root.events
    )
    children = [e.name for e in root.events]
    assert children == [
        "connector.verify",
        "connector.parse",
        "connector.approval",
        "connector.policy",
        "connector.compile",
        "connector.queue",
        "connector.codes",
        "connector.population",
        "connector.ledger",
        "connector.sql",
        "connector.protect",
        "audit.write",
    ]
    attributes = dict(root.attributes or {})
    assert attributes["tessera.query_id"] == "q-00000001"
    assert attributes["tessera.jurisdiction"] == "FR"
    assert attributes["tessera.cells_suppressed"] == 2
    assert attributes["tessera.rules_fired"] == ("BELOW_MINIMUM", "NOISE")
    assert attributes["tessera.optout_register_version"] == "fake-optout-1"
    assert len(str(attributes["tessera.sql.fingerprint"])) == 16
    (compile_step,) = [e for e in root.events if e.name == "connector.compile"]
    assert compile_step.attributes is not None
    assert (
        compile_step.attributes["tessera.sql.fingerprint"] == attributes["tessera.sql.fingerprint"]
    )
    # A fingerprint, never the SQL text.
    recorded = [dict(root.attributes or {})] + [dict(e.attributes or {}) for e in root.events]
    assert all("SELECT" not in str(v) for a in recorded for v in a.values())


async def test_a_failed_step_is_an_event_with_its_code_only(
    service: QueryService, spans: InMemorySpanExporter, sign: Sign
) -> None:
    request = body(Jurisdiction.DE)
    with pytest.raises(WrongNode):
        await service.handle(authorization=f"Bearer {sign(request)}", body=request)
    (root,) = [s for s in spans.get_finished_spans() if s.name == "connector.query"]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes is not None
    assert root.attributes["tessera.error_code"] == "WRONG_NODE"
    (parse,) = [e for e in root.events if e.name == "connector.parse"]
    assert parse.attributes is not None
    assert parse.attributes["tessera.error_code"] == "WRONG_NODE"
    # No exception event: its message could carry values.
    assert all(e.name != "exception" for e in root.events)


async def test_the_service_answers_503_when_its_audit_is_unavailable(
    omop_db: Path, gateway_public_pem: Path, sign: Sign, tmp_path: Path
) -> None:
    key = tmp_path / "audit.key.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
    )
    settings = ConnectorSettings(
        jurisdiction=Jurisdiction.FR,
        database=omop_db,
        gateway_keys={"gateway-2024": gateway_public_pem},
        audit_key=key,
        hdab_issuer=HDAB_ISSUER,
        hdab_public_key=write_hdab_public_pem(tmp_path / "hdab.pem"),
    )
    store = MemoryAuditStore()
    async with TestClient(TestServer(create_app(settings, audit_store=store))) as client:
        request = body()
        store.fail = True
        response = await client.post(
            QUERY_PATH,
            data=request,
            headers={"Authorization": f"Bearer {sign(request)}", APPROVAL_HEADER: approval_token()},
        )
        assert response.status == 503
        error: dict[str, Any] = await response.json()
        assert error["code"] == "AUDIT_UNAVAILABLE"
        store.fail = False
        request = body()
        response = await client.post(
            QUERY_PATH,
            data=request,
            headers={"Authorization": f"Bearer {sign(request)}", APPROVAL_HEADER: approval_token()},
        )
        assert response.status == 200
        assert (await response.json())["status"] == NodeStatus.OK.value
    assert [r.record().decision for r in store.rows[CHAIN]] == [Decision.ANSWERED]


def test_audit_settings(tmp_path: Path) -> None:
    env = {"TESSERA_CONNECTOR_JURISDICTION": "FR", "TESSERA_CONNECTOR_DATABASE": "data/fr.duckdb"}
    assert ConnectorSettings.from_env(env).audit_db == "data/fr.audit.sqlite3"
    given = ConnectorSettings.from_env(
        {
            **env,
            "TESSERA_CONNECTOR_AUDIT_DB": "postgresql://postgres@127.0.0.1/audit",
            "TESSERA_CONNECTOR_AUDIT_KEY": str(tmp_path / "key.pem"),
        }
    )
    assert (given.audit_db, given.audit_key) == (
        "postgresql://postgres@127.0.0.1/audit",
        tmp_path / "key.pem",
    )
    with pytest.raises(SettingsError, match="AUDIT_KEY"):
        create_app(given, backend=FakeBackend())
    (tmp_path / "key.pem").write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SettingsError, match="AUDIT_KEY"):
        create_app(given, backend=FakeBackend())
