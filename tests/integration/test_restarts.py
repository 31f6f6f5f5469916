"""What survives a restart, and what an operator sees when nodes fail; real processes.

- A request token a connector has answered is refused after the connector was killed with
  SIGKILL and restarted: its trail keeps one ANSWERED entry for the query.
- An approval's daily allowance spent before the gateway was killed with SIGKILL stays spent
  after its restart, without Redis.
- With one node unreachable and another refusing every request (WRONG_NODE: its URL leads
  to another country's connector), the gateway logs a WARNING per node naming the node, the
  code and the query id, the connector logs its refusal, `/readyz` stays ready and names the
  nodes that do not answer, and `/metrics` counts their requests by status.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.federation import load_federation
from gateway.nodes import encode_request
from oversight.audit.store import ENTRIES_TABLE
from schema.codes import Jurisdiction
from schema.query import CohortQuery, Criteria
from schema.wire import APPROVAL_HEADER, QUERY_PATH, NodeRequest
from tessera.local import LocalFederation, policies_with_rate_limits
from tessera.processes import Service, free_port
from tests.integration.federation_kit import http_post, post
from trust.request_token import RequestSigner

pytestmark = pytest.mark.integration

FR, DK, SE, FI = Jurisdiction.FR, Jurisdiction.DK, Jurisdiction.SE, Jurisdiction.FI
PER_DAY = 3
QUERY = """query($j: [Jurisdiction!]) {
  cohort(request: "DR-2026-0042", jurisdictions: $j,
         criteria: { conditions: [{ vocabulary: ICD10, code: "I10" }] }) {
    queryId count { value }
    byJurisdiction { jurisdiction status error }
  }
}"""


@pytest.fixture(scope="module")
def restarting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    directory = tmp_path_factory.mktemp("restarts")
    fr_port = free_port()
    federation = LocalFederation(
        directory=directory,
        policies=policies_with_rate_limits(
            directory / "policies", per_minute=100_000, per_day=1_000_000
        ),
        jurisdictions=(FR, DK),
        persons=2_000,
        seed=17,
        gateway_port=free_port(),
        node_ports=[fr_port, free_port()],
        console=False,
        extra_nodes={
            # SE's requests reach the FR connector, which refuses them: not for this node.
            SE: f"http://127.0.0.1:{fr_port}",
            # Nothing listens there.
            FI: f"http://127.0.0.1:{free_port()}",
        },
        # The daily allowance of an approval, tightened by the gateway's own setting.
        gateway_env={"TESSERA_GATEWAY_RATE_PER_APPROVAL_PER_DAY": str(PER_DAY)},
    )
    federation.prepare()
    try:
        asyncio.run(federation.start())
    except BaseException:
        federation.stop()
        raise
    yield federation
    federation.stop()


def restart(service: Service) -> None:
    """SIGKILL, then the same command on the same port and files."""
    service.kill()
    service.start()
    asyncio.run(service.wait_ready(60))


def ask(federation: LocalFederation, jurisdictions: list[Jurisdiction]) -> dict[str, Any]:
    status, body = post(
        federation.gateway_url,
        {"query": QUERY, "variables": {"j": [j.value for j in jurisdictions]}},
        federation.researcher(),
    )
    assert status == 200, body
    return body


def test_a_replayed_request_is_refused_after_the_node_restarts(
    restarting: LocalFederation,
) -> None:
    federation = load_federation(restarting.federation_file)
    signer = RequestSigner(
        issuer=federation.gateway_id, kid=federation.signing_kid, key=federation.signing_key
    )
    approval = restarting.permit_approval(FR)
    query_id = str(uuid.uuid4())
    request = NodeRequest(
        query_id=query_id,
        request_id=approval.request_id,
        jurisdiction=FR,
        query=CohortQuery(criteria=Criteria(), reference_date="2025-01-01", tables=[()]),
        approval=approval,
        subject="researcher@demo.tessera.eu",
    )
    body = encode_request(request)
    headers = [
        ("Authorization", f"Bearer {signer.sign(body, audience=restarting.node_id(FR))}"),
        (APPROVAL_HEADER, restarting.permit_file(FR).read_text().strip()),
    ]
    node = restarting.service("connector FR")
    url = node.base_url + QUERY_PATH
    status, _, answer = http_post(url, body, headers)
    assert (status, answer["status"]) == (200, "OK"), answer

    restart(node)  # well within the token's 60 s
    status, _, refused = http_post(url, body, headers)
    assert (status, refused.get("code")) == (401, "REPLAYED_REQUEST"), refused
    assert set(refused) == {"code", "message"}

    with sqlite3.connect(restarting.audit_db(FR)) as trail:
        decisions = [
            row[0]
            for row in trail.execute(
                f"SELECT decision FROM {ENTRIES_TABLE} WHERE query_id = ?",  # noqa: S608
                (query_id,),
            )
        ]
    assert decisions.count("ANSWERED") == 1


def test_a_spent_daily_allowance_stays_spent_after_the_gateway_restarts(
    restarting: LocalFederation,
) -> None:
    def code(body: dict[str, Any]) -> str | None:
        errors = body.get("errors") or [{}]
        return errors[0].get("extensions", {}).get("code")

    answers = [ask(restarting, [DK]) for _ in range(PER_DAY + 1)]
    assert [code(a) for a in answers] == [None] * PER_DAY + ["RATE_LIMITED"]

    restart(restarting.service("gateway"))
    again = ask(restarting, [DK])
    assert code(again) == "RATE_LIMITED", again
    assert again["errors"][0]["extensions"]["retryAfter"] > 3600  # a day's token, not a minute's


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_operators_see_which_nodes_fail_and_why(restarting: LocalFederation) -> None:
    answer = ask(restarting, [FR, SE, FI])
    cohort = answer["data"]["cohort"]
    query_id = cohort["queryId"]
    statuses = {n["jurisdiction"]: n["status"] for n in cohort["byJurisdiction"]}
    assert statuses == {"FR": "OK", "SE": "ERROR", "FI": "UNAVAILABLE"}

    gateway_log = restarting.service("gateway").log_path.read_text()
    warnings = [line for line in gateway_log.splitlines() if " WARNING " in line]
    for node, code in (("tessera-node-se", "WRONG_NODE"), ("tessera-node-fi", "UNAVAILABLE")):
        assert any(node in w and code in w and query_id in w for w in warnings), warnings
    connector_log = restarting.service("connector FR").log_path.read_text()
    assert any(
        " WARNING " in line and "WRONG_NODE" in line and query_id in line
        for line in connector_log.splitlines()
    ), connector_log[-2000:]
    # Neither log holds token material.
    for log in (gateway_log, connector_log):
        assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}", log)

    base = restarting.service("gateway").base_url
    status, raw = get(base + "/readyz")
    ready = json.loads(raw)
    assert status == 200, ready  # FR answers: a query can still be answered
    nodes = ready["details"]["nodes"]
    assert nodes["tessera-node-fr"].startswith("answering")
    assert nodes["tessera-node-se"].startswith("refusing")
    assert "WRONG_NODE" in nodes["tessera-node-se"]
    assert nodes["tessera-node-fi"].startswith("not answering")
    assert "tessera-node-se" in ready["details"]["quorum"]["not answering"]
    assert "tessera-node-fi" in ready["details"]["quorum"]["not answering"]

    status, raw = get(base + "/metrics")
    assert status == 200
    metrics = raw.decode()
    requests = {
        (m["node"], m["status"]): float(m["n"])
        for m in re.finditer(
            r'^tessera_gateway_node_requests_total\{[^}]*node="(?P<node>[^"]+)"[^}]*'
            r'status="(?P<status>[^"]+)"[^}]*\} (?P<n>\S+)$',
            metrics,
            re.MULTILINE,
        )
    }
    assert requests[("tessera-node-se", "ERROR")] >= 1
    assert requests[("tessera-node-fi", "UNAVAILABLE")] >= 1
    assert requests[("tessera-node-fr", "OK")] >= 1
    assert "tessera_gateway_node_latency_seconds_bucket" in metrics
    assert "tessera_gateway_circuit_state" in metrics
    assert "tessera_gateway_audit_write_seconds_count" in metrics
    # Nothing in it names a researcher, a query or an approval.
    assert "researcher@" not in metrics
    assert query_id not in metrics
    assert "DR-2026" not in metrics
