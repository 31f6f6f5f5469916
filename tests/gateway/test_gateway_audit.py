"""The gateway's audit trail and the compliance API, through the HTTP endpoint."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.nodes import MockNodeClient
from gateway.settings import GatewaySettings
from oversight.audit.store import MemoryAuditStore
from schema.approval import ROLES_CLAIM, Role
from schema.audit.chain import verify_chain
from schema.audit.entry import released_hash
from schema.codes import Jurisdiction
from schema.errors import SettingsError
from tests.gateway.gateway_kit import (
    DEFAULT_COUNTS,
    SEX,
    Keys,
    counts_handler,
    error_code,
    mint,
    node_response,
)

CHAIN = "gateway:tessera-gateway"
COHORT = """
query($j: [Jurisdiction!]) {
  cohort(request: "DR-2026-0042", jurisdictions: $j, criteria: {sex: FEMALE}) {
    queryId traceId count { value }
    breakdown(by: [SEX]) { cells { count { value } } }
  }
}
"""
ENTRIES = """
query($filter: AuditFilter, $first: Int = 50, $before: Int) {
  auditEntries(filter: $filter, first: $first, before: $before) {
    entries { seq queryId researcher approval purpose jurisdictions decision errorCode
              permits { jurisdiction issuer request } }
    nextBefore
  }
}
"""
ENTRY = """
query($q: ID!) {
  auditEntry(queryId: $q) {
    seq hash time queryId traceId researcher issuer approval purpose datasets jurisdictions
    decision errorCode rulesFired cellsSuppressed queryHash resultHash
    steps { name elapsedMs }
    nodes { jurisdiction decision status latencyMs nodeElapsedMs rulesFired cellsSuppressed
            optoutRegisterVersion responseHash errorCode }
  }
}
"""


@pytest.fixture
def store() -> MemoryAuditStore:
    return MemoryAuditStore()


@pytest.fixture
async def app_client(
    settings: GatewaySettings, nodes: MockNodeClient, store: MemoryAuditStore
) -> AsyncIterator[TestClient]:
    app = create_app(settings, node_client=nodes, audit_store=store)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
def compliance(keys: Keys) -> str:
    return mint(keys, **{ROLES_CLAIM: [Role.COMPLIANCE.value], "approval": None})


async def post(
    client: TestClient, query: str, token: str | None, **variables: Any
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def test_every_answer_has_one_entry_with_its_steps(
    app_client: TestClient, token: str, compliance: str, store: MemoryAuditStore
) -> None:
    answer = (await post(app_client, COHORT, token))["data"]["cohort"]
    (row,) = store.rows[CHAIN]
    assert verify_chain(CHAIN, store.rows[CHAIN]).ok
    body = await post(app_client, ENTRY, compliance, q=answer["queryId"])
    entry = body["data"]["auditEntry"]
    assert entry["seq"] == 1
    assert entry["hash"] == row.hash
    assert entry["traceId"] == answer["traceId"]
    assert (entry["researcher"], entry["approval"], entry["purpose"]) == (
        "researcher@test.tessera.eu",
        "DR-2026-0042",
        "scientific_research",
    )
    assert entry["jurisdictions"] == ["DK", "FR", "NO"]
    assert entry["decision"] == "ANSWERED"
    assert [s["name"] for s in entry["steps"]] == [
        "authenticate",
        "authorize",
        "plan",
        "policy",
        "limits",
        "admission",
        "fan_out",
        "combine",
    ]
    assert all(s["elapsedMs"] >= 0 for s in entry["steps"])
    assert [n["jurisdiction"] for n in entry["nodes"]] == ["DK", "FR", "NO"]
    assert {n["status"] for n in entry["nodes"]} == {"OK"}
    assert all(n["responseHash"] and n["latencyMs"] is not None for n in entry["nodes"])
    assert dt.datetime.fromisoformat(entry["time"]).tzinfo is not None


async def test_suppression_is_recorded_by_rule_and_number_never_by_value(
    settings: GatewaySettings, keys: Keys, token: str, compliance: str
) -> None:
    counts = {
        j: {(): 300, SEX: {("FEMALE",): 298, ("MALE",): 2}}
        for j in (Jurisdiction.FR, Jurisdiction.DK, Jurisdiction.NO)
    }
    store = MemoryAuditStore()
    app = create_app(
        settings, node_client=MockNodeClient(counts_handler(counts)), audit_store=store
    )
    async with TestClient(TestServer(app)) as client:
        everyone = COHORT.replace("criteria: {sex: FEMALE}", "criteria: {}")
        answer = (await post(client, everyone, token))["data"]["cohort"]
        entry = (await post(client, ENTRY, compliance, q=answer["queryId"]))["data"]["auditEntry"]
    # MALE (2) and UNKNOWN (nobody) are LOW at each node, and so are the pooled cells; FEMALE
    # is released (noisy), whatever the others.
    assert entry["rulesFired"] == ["BELOW_MINIMUM", "INCOMPLETE_POOL", "NOISE"]
    assert entry["cellsSuppressed"] >= 2
    assert {n["cellsSuppressed"] for n in entry["nodes"]} == {2}
    assert {tuple(n["rulesFired"]) for n in entry["nodes"]} == {("BELOW_MINIMUM", "NOISE")}


async def test_node_response_hashes_match_the_nodes_answers(
    settings: GatewaySettings, token: str, compliance: str
) -> None:
    sent: dict[str, str] = {}

    def handler(node: Any, request: Any) -> Any:
        response = node_response(request, DEFAULT_COUNTS[node.jurisdiction])
        sent[node.jurisdiction.value] = released_hash(response.model_dump(mode="json"))
        return response

    store = MemoryAuditStore()
    app = create_app(settings, node_client=MockNodeClient(handler), audit_store=store)
    async with TestClient(TestServer(app)) as client:
        answer = (await post(client, COHORT, token))["data"]["cohort"]
        entry = (await post(client, ENTRY, compliance, q=answer["queryId"]))["data"]["auditEntry"]
    assert {n["jurisdiction"]: n["responseHash"] for n in entry["nodes"]} == sent


async def test_refusals_are_recorded_and_unauthenticated_calls_are_not(
    app_client: TestClient, keys: Keys, token: str, compliance: str, store: MemoryAuditStore
) -> None:
    other = mint(keys, request_id="DR-2026-0099")
    assert error_code(await post(app_client, COHORT, other)) == "REQUEST_MISMATCH"
    assert error_code(await post(app_client, COHORT, None)) == "UNAUTHENTICATED"
    body = await post(app_client, ENTRIES, compliance)
    (entry,) = body["data"]["auditEntries"]["entries"]
    # The question's data request, which no permit presented names; no permit decided it.
    assert (entry["decision"], entry["errorCode"], entry["approval"], entry["permits"]) == (
        "REFUSED",
        "REQUEST_MISMATCH",
        "DR-2026-0042",
        [],
    )
    assert len(store.rows[CHAIN]) == 1


async def test_a_denied_jurisdiction_makes_the_answer_partial(
    app_client: TestClient, keys: Keys, compliance: str
) -> None:
    narrow = mint(keys, jurisdictions=(Jurisdiction.FR,))
    answer = (await post(app_client, COHORT, narrow))["data"]["cohort"]
    entry = (await post(app_client, ENTRY, compliance, q=answer["queryId"]))["data"]["auditEntry"]
    assert entry["decision"] == "PARTIAL"
    decisions = {n["jurisdiction"]: (n["decision"], n["status"]) for n in entry["nodes"]}
    assert decisions == {
        "FR": ("ALLOWED", "OK"),
        "DK": ("DENIED", "DENIED"),
        "NO": ("DENIED", "DENIED"),
    }
    assert "APPROVAL_SCOPE" in entry["rulesFired"]


async def test_no_answer_without_its_entry(
    app_client: TestClient, token: str, store: MemoryAuditStore
) -> None:
    store.fail = True
    body = await post(app_client, COHORT, token)
    assert error_code(body) == "AUDIT_UNAVAILABLE"
    assert body["data"] == {"cohort": None}
    store.fail = False
    assert "errors" not in await post(app_client, COHORT, token)


async def test_filters_and_pages(
    app_client: TestClient, keys: Keys, compliance: str, store: MemoryAuditStore
) -> None:
    alice = mint(keys, sub="alice@example.eu")
    bob = mint(keys, sub="bob@example.eu", jurisdictions=(Jurisdiction.FR,))
    for token in (alice, bob, alice, bob, alice):
        # Alice asks DK and NO; Bob, approved for FR only, asks everyone.
        await post(app_client, COHORT, token, j=["DK", "NO"] if token == alice else None)
    first = (await post(app_client, ENTRIES, compliance, first=2))["data"]["auditEntries"]
    assert [e["seq"] for e in first["entries"]] == [5, 4]
    second = await post(app_client, ENTRIES, compliance, first=2, before=first["nextBefore"])
    assert [e["seq"] for e in second["data"]["auditEntries"]["entries"]] == [3, 2]
    last = await post(app_client, ENTRIES, compliance, first=2, before=2)
    assert last["data"]["auditEntries"]["nextBefore"] is None

    async def seqs(**filter: Any) -> list[int]:
        body = await post(app_client, ENTRIES, compliance, filter=filter)
        return [e["seq"] for e in body["data"]["auditEntries"]["entries"]]

    assert await seqs(researcher="bob@example.eu") == [4, 2]
    assert await seqs(decision="PARTIAL") == [4, 2]
    assert await seqs(jurisdiction="FR") == [4, 2]
    assert await seqs(jurisdiction="NO") == [5, 4, 3, 2, 1]
    assert await seqs(approval="DR-2026-0042", decision="ANSWERED") == [5, 3, 1]
    times = [r.time for r in store.rows[CHAIN]]
    assert await seqs(since=times[1], until=times[3]) == [3, 2]
    assert await seqs(since="2999-01-01T00:00:00") == []


async def test_researchers_cannot_read_the_trail(
    app_client: TestClient, token: str, compliance: str
) -> None:
    for query, variables in ((ENTRIES, {}), (ENTRY, {"q": "x"})):
        assert error_code(await post(app_client, query, token, **variables)) == "FORBIDDEN"
        assert error_code(await post(app_client, query, None, **variables)) == "UNAUTHENTICATED"
    body = await post(app_client, ENTRIES, compliance, first=0)
    assert error_code(body) == "INVALID_ARGUMENT"
    assert (await post(app_client, ENTRY, compliance, q="nope"))["data"]["auditEntry"] is None


async def test_the_trail_survives_a_restart_on_disk(
    settings: GatewaySettings, nodes: MockNodeClient, token: str, compliance: str
) -> None:
    for _ in range(2):
        async with TestClient(TestServer(create_app(settings, node_client=nodes))) as client:
            await post(client, COHORT, token)
    assert await asyncio.to_thread(Path(settings.audit_db).is_file)
    async with TestClient(TestServer(create_app(settings, node_client=nodes))) as client:
        body = await post(client, ENTRIES, compliance)
    assert [e["seq"] for e in body["data"]["auditEntries"]["entries"]] == [2, 1]


def test_audit_settings(federation_file: Path, tmp_path: Path) -> None:
    default = GatewaySettings.from_env({"TESSERA_GATEWAY_FEDERATION": str(federation_file)})
    assert default.audit_db == str(federation_file.parent / "audit.sqlite3")
    assert default.audit_key is None
    given = GatewaySettings.from_env(
        {
            "TESSERA_GATEWAY_FEDERATION": str(federation_file),
            "TESSERA_GATEWAY_AUDIT_DB": "postgresql://postgres@127.0.0.1/audit",
            "TESSERA_GATEWAY_AUDIT_KEY": str(tmp_path / "audit.key.pem"),
        }
    )
    assert given.audit_db == "postgresql://postgres@127.0.0.1/audit"
    assert given.audit_key == tmp_path / "audit.key.pem"
    (tmp_path / "audit.key.pem").write_text("not a key")
    with pytest.raises(SettingsError, match=r"^TESSERA_GATEWAY_AUDIT_KEY: .*audit\.key\.pem"):
        create_app(given)
