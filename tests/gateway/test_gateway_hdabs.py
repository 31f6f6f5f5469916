"""A federation of HDABs, one per member, through the real HTTP endpoint: the researcher's
bearer token says who they are, one permit per jurisdiction says what each HDAB approved, and
each node gets its own HDAB's permit and no other."""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.app import POLICIES, create_app
from gateway.nodes import MockNodeClient
from gateway.settings import GatewaySettings
from schema.codes import Jurisdiction
from schema.wire import MAX_PERMITS, PERMIT_HEADER
from tests.gateway.gateway_kit import (
    MEMBERS,
    REQUEST_ID,
    SUBJECT,
    Keys,
    assert_clean_error,
    counts_handler,
    error_code,
    hdab,
    identity_token,
    permit,
    revoking,
    write_hdab_federation,
)

FR, DK, NO = Jurisdiction.FR, Jurisdiction.DK, Jurisdiction.NO
COHORT = f"""{{ cohort(request: "{REQUEST_ID}", criteria: {{ sex: MALE }}) {{
  queryId
  count {{ value status }}
  byJurisdiction {{ jurisdiction status reasons {{ rule jurisdiction message article }} }}
}} }}"""
ENTRY = """query($q: ID!) { auditEntry(queryId: $q) {
  researcher issuer organisation approval purpose datasets
  permits { jurisdiction issuer request application organisation }
} }"""


@pytest.fixture
def nodes() -> MockNodeClient:
    return MockNodeClient(counts_handler())


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    return revoking(tmp_path / "policies", FR)  # a writable copy, nothing revoked yet


@pytest.fixture
async def client(
    tmp_path: Path, keys: Keys, nodes: MockNodeClient, policies: Path
) -> AsyncIterator[TestClient]:
    settings = GatewaySettings.from_env(
        {},
        federation=write_hdab_federation(tmp_path, keys),
        policies=policies,
        rate_per_researcher_per_minute=3,
        audit_db=str(tmp_path / "audit.sqlite3"),
    )
    async with TestClient(TestServer(create_app(settings, node_client=nodes))) as test_client:
        yield test_client


def permits(*jurisdictions: Jurisdiction) -> list[str]:
    return [permit(j) for j in jurisdictions or MEMBERS]


async def ask(
    client: TestClient,
    permits: list[str],
    *,
    bearer: str | None = None,
    query: str = COHORT,
    **variables: Any,
) -> dict[str, Any]:
    headers = [("Authorization", f"Bearer {bearer or identity_token()}")]
    headers += [(PERMIT_HEADER, p) for p in permits]
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def by_jurisdiction(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert "errors" not in body, body
    return {n["jurisdiction"]: n for n in body["data"]["cohort"]["byJurisdiction"]}


async def test_each_node_gets_its_own_hdabs_permit_and_no_other(
    client: TestClient, nodes: MockNodeClient
) -> None:
    sent = {j: permit(j) for j in MEMBERS}
    answers = by_jurisdiction(await ask(client, list(sent.values())))
    assert {j: a["status"] for j, a in answers.items()} == {"FR": "OK", "DK": "OK", "NO": "OK"}
    assert {c.node.jurisdiction: c.approval_token for c in nodes.calls} == sent
    for call in nodes.calls:
        j = call.node.jurisdiction
        # The node's request is under its own permit's data request, not the application.
        assert call.request.request_id == f"DR-{j.value}"
        assert call.request.approval.jurisdictions == [j]
        assert call.request.subject == SUBJECT


async def test_a_jurisdiction_without_a_permit_is_denied_and_the_others_answer(
    client: TestClient, nodes: MockNodeClient
) -> None:
    answers = by_jurisdiction(await ask(client, permits(FR, DK)))
    assert answers["NO"]["status"] == "DENIED"
    assert answers["NO"]["reasons"] == [
        {
            "rule": "PERMIT_MISSING",
            "jurisdiction": "NO",
            "message": "no permit from an HDAB that decides for NO was presented",
            "article": "EHDS Art. 69",
        }
    ]
    assert (answers["FR"]["status"], answers["DK"]["status"]) == ("OK", "OK")
    assert sorted(c.node.jurisdiction for c in nodes.calls) == [DK, FR]


@pytest.mark.parametrize(
    ("wrong", "rule"),
    [
        (lambda: permit(FR, now=time.time() - 3600), "APPROVAL_EXPIRED"),
        (lambda: permit(FR, valid_until="2020-01-01T00:00:00Z"), "APPROVAL_EXPIRED"),
        (lambda: permit(FR, key=Ed25519PrivateKey.generate()), "PERMIT_INVALID"),
        (lambda: permit(FR, sub="someone-else@test.eu"), "PERMIT_INVALID"),
        (lambda: permit(FR, by=DK, jurisdictions=["FR"]), "PERMIT_MISSING"),
        (lambda: permit(FR, jurisdictions=["DK"]), "APPROVAL_SCOPE"),
        (lambda: permit(FR, purpose="advertising_marketing"), "PURPOSE_PROHIBITED"),
        (lambda: permit(FR, request_id="DR-FR", application_id="APP-OTHER"), "REQUEST_MISMATCH"),
    ],
    ids=[
        "expired-token",
        "expired-approval",
        "forged",
        "another-researcher",
        "another-hdab",
        "wrong-jurisdiction",
        "prohibited",
        "another-request",
    ],
)
async def test_a_wrong_permit_refuses_exactly_its_own_jurisdiction(
    client: TestClient, nodes: MockNodeClient, wrong: Any, rule: str
) -> None:
    answers = by_jurisdiction(await ask(client, [wrong(), *permits(DK, NO)]))
    assert answers["FR"]["status"] == "DENIED"
    assert [r["rule"] for r in answers["FR"]["reasons"]] == [rule]
    assert {j: answers[j]["status"] for j in ("DK", "NO")} == {"DK": "OK", "NO": "OK"}
    assert FR not in {c.node.jurisdiction for c in nodes.calls}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        (
            [permit(FR, key=Ed25519PrivateKey.generate(), iss="https://x.test")],
            "TOKEN_UNTRUSTED_ISSUER",
        ),
        (["not-a-jwt"], "TOKEN_MALFORMED"),
        (["eyJhbGciOiJFZERTQSJ9.bm90IGpzb24.c2ln"], "TOKEN_MALFORMED"),
        ([permit(FR)] * (MAX_PERMITS + 1), "TOO_MANY_PERMITS"),
    ],
    ids=["untrusted-issuer", "not-a-jwt", "garbage-jwt", "too-many"],
)
async def test_a_permit_no_trusted_issuer_vouches_for_fails_the_request(
    client: TestClient, nodes: MockNodeClient, headers: list[str], code: str
) -> None:
    body = await ask(client, [*permits(DK), *headers])
    parts = [part for token in headers for part in token.split(".") if len(part) > 8]
    assert_clean_error(body, code, *parts)
    assert nodes.calls == []


async def test_without_any_permit_nothing_is_asked(
    client: TestClient, nodes: MockNodeClient
) -> None:
    assert error_code(await ask(client, [])) == "FORBIDDEN"
    # Permits, none of them for the question's data request or application.
    body = await ask(client, [permit(FR, application_id=None), permit(DK, application_id=None)])
    assert error_code(body) == "REQUEST_MISMATCH"
    assert nodes.calls == []


async def test_one_data_request_id_across_hdabs_works_too(client: TestClient) -> None:
    same = [permit(j, request_id="DR-2026-7777", application_id=None) for j in MEMBERS]
    query = COHORT.replace(REQUEST_ID, "DR-2026-7777")
    answers = by_jurisdiction(await ask(client, same, query=query))
    assert {a["status"] for a in answers.values()} == {"OK"}


async def test_the_audit_trail_names_each_jurisdictions_permit(client: TestClient) -> None:
    body = await ask(client, [permit(FR), permit(DK, applicant="Another Institute")])
    query_id = body["data"]["cohort"]["queryId"]
    compliance = identity_token(sub="dpo@test.eu", roles=["compliance"])
    entry = (await ask(client, [], bearer=compliance, query=ENTRY, q=query_id))["data"]
    entry = entry["auditEntry"]
    assert (entry["researcher"], entry["approval"], entry["purpose"]) == (
        SUBJECT,
        REQUEST_ID,
        "scientific_research",
    )
    # The permits name two organisations: each permit's own is in its record.
    assert entry["organisation"] is None
    assert entry["permits"] == [  # in the plan's order; NO had none
        {
            "jurisdiction": "DK",
            "issuer": hdab(DK),
            "request": "DR-DK",
            "application": REQUEST_ID,
            "organisation": "Another Institute",
        },
        {
            "jurisdiction": "FR",
            "issuer": hdab(FR),
            "request": "DR-FR",
            "application": REQUEST_ID,
            "organisation": "Example Research Hospital",
        },
    ]
    assert entry["datasets"] == ["tessera-node-dk", "tessera-node-fr"]


async def test_the_researchers_allowance_is_one_across_issuers(client: TestClient) -> None:
    # Three a minute (the settings above): whichever token authenticates the researcher.
    assert "errors" not in await ask(client, permits())
    assert "errors" not in await ask(client, permits(), bearer=permit(FR))
    assert "errors" not in await ask(client, permits(), bearer=permit(DK))
    assert error_code(await ask(client, permits())) == "RATE_LIMITED"


async def test_a_revocation_applies_without_a_restart_and_a_broken_file_changes_nothing(
    client: TestClient, nodes: MockNodeClient, policies: Path
) -> None:
    live = client.app[POLICIES]
    assert by_jurisdiction(await ask(client, permits()))["FR"]["status"] == "OK"
    revoking(policies, FR, "DR-FR")
    assert await live.refresh()
    answers = by_jurisdiction(await ask(client, permits()))
    assert [r["rule"] for r in answers["FR"]["reasons"]] == ["APPROVAL_REVOKED"]
    assert answers["DK"]["status"] == "OK"
    # A file that does not validate is not applied; the gateway stays ready and says why.
    fr = policies / "jurisdictions" / "fr.toml"
    fr.write_text(fr.read_text().replace("value = 11", "value = -1", 1))
    assert not await live.refresh()
    ready = await client.get("/readyz")
    assert ready.status == 200
    detail = (await ready.json())["details"]["policy"]
    assert detail["last_reload"].startswith("failed at ")
    assert "jurisdictions/fr.toml:" in detail["last_reload"]
    answers = by_jurisdiction(await ask(client, permits()))
    assert [r["rule"] for r in answers["FR"]["reasons"]] == ["APPROVAL_REVOKED"]


async def test_operators_see_whose_permits_each_issuer_decides(client: TestClient) -> None:
    operator = identity_token(sub="ops@test.eu", roles=["operator"])
    query = "{ issuers { iss permitsFor keysLoaded } }"
    body = await ask(client, [], bearer=operator, query=query)
    issuers = {i["iss"]: i["permitsFor"] for i in body["data"]["issuers"]}
    assert issuers == {
        "https://id.test.tessera.eu": [],
        hdab(FR): ["FR"],
        hdab(DK): ["DK"],
        hdab(NO): ["NO"],
    }


async def test_a_question_every_jurisdiction_denies_is_refused_and_not_an_access(
    client: TestClient, nodes: MockNodeClient, tmp_path: Path
) -> None:
    prohibited = [permit(j, purpose="advertising_marketing") for j in MEMBERS]
    denied = await ask(client, prohibited)
    assert {a["status"] for a in by_jurisdiction(denied).values()} == {"DENIED"}
    assert nodes.calls == []
    answered = await ask(client, permits())
    compliance = identity_token(sub="dpo@test.eu", roles=["compliance"])
    query = "query($q: ID!) { auditEntry(queryId: $q) { decision errorCode rulesFired } }"
    entry = await ask(client, [], bearer=compliance, query=query, q=query_id(denied))
    assert entry["data"]["auditEntry"] == {
        "decision": "REFUSED",
        "errorCode": "FORBIDDEN",
        "rulesFired": ["NO_NODE_ANSWERED", "PURPOSE_PROHIBITED"],
    }
    # The register, as the compliance team exports it, lists the answered question only.
    export = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "tessera",
            "audit",
            "export",
            "--db",
            str(tmp_path / "audit.sqlite3"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert export.returncode == 0, export.stderr
    rows = list(csv.DictReader(io.StringIO(export.stdout)))
    assert [r["query_id"] for r in rows] == [query_id(answered)]
    assert "advertising_marketing" not in export.stdout


def query_id(body: dict[str, Any]) -> str:
    value: str = body["data"]["cohort"]["queryId"]
    return value
