"""Two gateway processes and two replicas of a node sharing Redis (127.0.0.1:6379): rate
limits hold across the gateways, and a node request seen by one replica is refused by the
other. Real processes on loopback, through their HTTP endpoints."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest
import redis as redis_sync

from gateway.federation import load_federation
from gateway.nodes import encode_request
from schema.codes import Jurisdiction
from schema.query import CohortQuery, Criteria
from schema.wire import APPROVAL_HEADER, QUERY_PATH, NodeRequest
from tessera.local import LocalFederation
from tessera.processes import free_port
from tests.integration.federation_kit import http_post
from trust.request_token import RequestSigner

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/0"
QUERY = """{ cohort(request: "DR-2026-0042",
  criteria: { conditions: [{ vocabulary: ICD10, code: "I10" }] }) { count { value status } } }"""
LIMIT = 3


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    prefix = f"tessera-test-{uuid.uuid4().hex}:"
    federation = LocalFederation(
        directory=tmp_path_factory.mktemp("shared"),
        jurisdictions=(Jurisdiction.FR, Jurisdiction.DK),
        persons=2_000,
        seed=11,
        gateway_port=free_port(),
        node_ports=[free_port(), free_port()],
        console=False,
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        gateway_env={"TESSERA_GATEWAY_RATE_PER_RESEARCHER_PER_MINUTE": str(LIMIT)},
    )
    federation.prepare()
    for jurisdiction in federation.jurisdictions:
        federation.supervisor.add(federation.connector_service(jurisdiction))
    federation.supervisor.add(
        federation.connector_service(Jurisdiction.FR, port=free_port(), name="connector FR 2")
    )
    federation.supervisor.add(federation.gateway_service())
    federation.supervisor.add(federation.gateway_service(port=free_port(), name="gateway 2"))
    try:
        asyncio.run(federation.supervisor.start_all(60))
        yield federation
    finally:
        federation.stop()
        client = redis_sync.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_two_gateways_share_the_rate_limits(shared: LocalFederation) -> None:
    gateways = [shared.service(name).base_url + "/graphql" for name in ("gateway", "gateway 2")]
    body = json.dumps({"query": QUERY}).encode()
    auth = shared.researcher().headers()
    answers = [http_post(gateways[i % 2], body, auth) for i in range(LIMIT + 1)]
    for status, _, answer in answers[:LIMIT]:
        assert status == 200
        assert answer["data"]["cohort"]["count"]["status"] in {"PERTURBED", "LOW", "SUPPRESSED"}
    # The last query goes to the gateway that has itself answered only once: it refuses
    # because the other gateway's queries count too.
    status, headers, answer = answers[LIMIT]
    assert LIMIT % 2 == 1
    assert status == 200
    assert answer["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert int(headers["Retry-After"]) == answer["errors"][0]["extensions"]["retryAfter"] >= 1


def test_two_replicas_of_a_node_share_the_replay_cache(shared: LocalFederation) -> None:
    federation = load_federation(shared.federation_file)
    signer = RequestSigner(
        issuer=federation.gateway_id, kid=federation.signing_kid, key=federation.signing_key
    )
    approval = shared.permit_approval(Jurisdiction.FR)
    request = NodeRequest(
        query_id=str(uuid.uuid4()),
        request_id=approval.request_id,
        jurisdiction=Jurisdiction.FR,
        query=CohortQuery(criteria=Criteria(), reference_date="2025-01-01", tables=[()]),
        approval=approval,
        subject="researcher@demo.tessera.eu",
    )
    body = encode_request(request)
    headers = [
        ("Authorization", f"Bearer {signer.sign(body, audience=shared.node_id(Jurisdiction.FR))}"),
        (APPROVAL_HEADER, shared.permit_file(Jurisdiction.FR).read_text().strip()),
    ]
    replicas = [shared.service(n).base_url + QUERY_PATH for n in ("connector FR", "connector FR 2")]
    first, _, answer = http_post(replicas[0], body, headers)
    assert first == 200, answer
    assert answer["status"] == "OK"
    for replica in (replicas[1], replicas[0]):
        status, _, refused = http_post(replica, body, headers)
        assert (status, refused["code"]) == (401, "REPLAYED_REQUEST")
        assert set(refused) == {"code", "message"}
