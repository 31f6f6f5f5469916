"""What operators see: failing and refusing nodes logged at WARNING (node, code, query id),
each node's last known state in `/readyz`, and `/metrics` in the Prometheus text format."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.federation import NodeInfo
from gateway.node_watch import NodeState, NodeWatch, classify
from gateway.nodes import MockNodeClient, NodeOutcome
from gateway.resilience import CircuitState
from gateway.settings import GatewaySettings
from schema.codes import Jurisdiction, NodeStatus
from schema.errors import ErrorCode
from schema.wire import NodeError, NodeRequest, NodeResponse
from tests.gateway.gateway_kit import counts_handler

FR, DK, NO = Jurisdiction.FR, Jurisdiction.DK, Jurisdiction.NO
QUERY = """{ cohort(request: "DR-2026-0042", criteria: { sex: FEMALE }) {
  queryId byJurisdiction { jurisdiction status } } }"""
# A node's message is logged bounded and escaped: it cannot forge a log line.
FORGED = "another node\n2026-01-01 CRITICAL forged line"


class Federation:
    """Nodes whose behaviour a test changes: FR answers, DK is unreachable, NO refuses."""

    def __init__(self) -> None:
        self.down: set[Jurisdiction] = {DK}
        self.refusing: set[Jurisdiction] = {NO}
        self.answer = counts_handler()

    def __call__(self, node: NodeInfo, request: NodeRequest) -> NodeResponse | NodeError:
        if node.jurisdiction in self.down:
            raise ConnectionRefusedError
        if node.jurisdiction in self.refusing:
            return NodeError(code=ErrorCode.WRONG_NODE, message=FORGED)
        response = self.answer(node, request)
        assert isinstance(response, NodeResponse)
        return response


@pytest.fixture
def fed() -> Federation:
    return Federation()


@pytest.fixture
async def client(settings: GatewaySettings, fed: Federation) -> AsyncIterator[TestClient]:
    quick = GatewaySettings.from_env(
        {},
        federation=settings.federation,
        circuit_failures=2,
        circuit_reset_s=60,
        node_retry_attempts=1,
        rate_per_researcher_per_minute=5,
    )
    app = create_app(quick, node_client=MockNodeClient(fed))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def ask(client: TestClient, token: str) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": QUERY}, headers={"Authorization": f"Bearer {token}"}
    )
    body: dict[str, Any] = await response.json()
    return body


async def readyz(client: TestClient) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_failures_are_logged_with_node_code_and_query_id(
    client: TestClient, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        body = await ask(client, token)
    query_id = body["data"]["cohort"]["queryId"]
    statuses = {n["jurisdiction"]: n["status"] for n in body["data"]["cohort"]["byJurisdiction"]}
    assert statuses == {"FR": "OK", "DK": "UNAVAILABLE", "NO": "ERROR"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("tessera-node-dk" in w and "UNAVAILABLE" in w and query_id in w for w in warnings)
    assert any("tessera-node-no" in w and "WRONG_NODE" in w and query_id in w for w in warnings)
    assert not any("tessera-node-fr" in w for w in warnings)
    assert all(token not in w and "\n" not in w for w in warnings)

    # Two failures in a row open DK's circuit: the opening is a warning, the queries that do
    # not ask DK while it is open say so at INFO.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        await ask(client, token)
        await ask(client, token)
    levels = {
        (r.levelname, "CIRCUIT_OPEN" in r.getMessage())
        for r in caplog.records
        if "tessera-node-dk" in r.getMessage()
    }
    assert levels == {("WARNING", False), ("INFO", True)}


async def test_readyz_names_the_nodes_that_do_not_answer_and_stays_ready_while_one_does(
    client: TestClient, token: str, fed: Federation
) -> None:
    status, body = await readyz(client)
    assert status == 200
    assert set(body["details"]["nodes"].values()) == {
        "unknown (not asked since the gateway started); circuit closed; latency interactive"
    }
    await ask(client, token)
    status, body = await readyz(client)
    assert status == 200
    nodes = body["details"]["nodes"]
    assert re.fullmatch(
        r"answering \(OK \d+ s ago\); circuit closed; latency interactive", nodes["tessera-node-fr"]
    )
    assert nodes["tessera-node-dk"].startswith("not answering (UNAVAILABLE ")
    assert nodes["tessera-node-no"].startswith("refusing (ERROR WRONG_NODE ")
    assert body["details"]["quorum"] == {
        "answering or not asked yet": "tessera-node-fr",
        "not answering": "tessera-node-dk, tessera-node-no",
    }

    # With no node answering, no quorum is possible: not ready, saying why.
    fed.down.add(FR)
    await ask(client, token)
    status, body = await readyz(client)
    assert status == 503
    assert body["problems"]["nodes"].startswith("no node answers: tessera-node-fr not answering")
    fed.down.clear()
    await ask(client, token)
    status, body = await readyz(client)
    assert status == 200


async def test_metrics_count_node_outcomes_circuits_and_refusals(
    client: TestClient, token: str
) -> None:
    for _ in range(6):  # the sixth is over the researcher's 5 per minute
        await ask(client, token)
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()

    def value(name: str, **labels: str) -> float:
        for line in text.splitlines():
            metric, _, number = line.rpartition(" ")
            if metric.startswith(name + "{") and all(
                f'{k}="{v}"' in metric for k, v in labels.items()
            ):
                return float(number)
        raise AssertionError(f"no {name} {labels} in\n{text}")

    requests = "tessera_gateway_node_requests_total"
    assert value(requests, node="tessera-node-fr", status="OK", code="") == 5
    assert value(requests, node="tessera-node-no", status="ERROR", code="WRONG_NODE") >= 2
    # After two failures in a row the circuit opens: later queries do not ask the node.
    assert value(requests, node="tessera-node-dk", code="CIRCUIT_OPEN") >= 1
    assert value("tessera_gateway_circuit_changes_total", node="tessera-node-dk", state="open")
    assert value("tessera_gateway_circuit_state", node="tessera-node-fr") == 0
    assert value("tessera_gateway_node_latency_seconds_count", node="tessera-node-fr") == 5
    assert value("tessera_gateway_rate_limit_refusals_total", outcome="limited") == 1
    assert value("tessera_gateway_audit_write_seconds_count", outcome="ok") >= 1
    assert "researcher@" not in text
    assert "DR-2026" not in text


def node(j: Jurisdiction) -> NodeInfo:
    return NodeInfo(jurisdiction=j, node_id=f"tessera-node-{j.value.lower()}", url="http://x")


@pytest.mark.parametrize(
    ("status", "code", "full", "state"),
    [
        (NodeStatus.OK, None, True, NodeState.ANSWERING),
        (NodeStatus.DENIED, None, True, NodeState.ANSWERING),
        (NodeStatus.ERROR, ErrorCode.APPROVAL_INVALID, True, NodeState.ANSWERING),
        (NodeStatus.ERROR, ErrorCode.UNKNOWN_KEY, True, NodeState.REFUSING),
        (NodeStatus.ERROR, None, True, NodeState.REFUSING),
        (NodeStatus.UNAVAILABLE, None, True, NodeState.NOT_ANSWERING),
        (NodeStatus.UNAVAILABLE, ErrorCode.CIRCUIT_OPEN, True, None),
        (NodeStatus.UNAVAILABLE, ErrorCode.NODE_BUSY, True, None),
        (NodeStatus.TIMEOUT, None, True, NodeState.NOT_ANSWERING),
        (NodeStatus.TIMEOUT, None, False, None),  # the researcher's short deadline
        (NodeStatus.REJECTED, None, True, NodeState.REJECTED),
    ],
)
def test_what_an_outcome_says_of_a_node(
    status: NodeStatus, code: ErrorCode | None, full: bool, state: NodeState | None
) -> None:
    outcome = NodeOutcome.failed(FR, status, "x", code=code)
    assert classify(outcome, full_timeout=full) is state


def test_an_open_circuit_counts_as_not_answering() -> None:
    now = [100.0]
    circuits = {"tessera-node-fr": CircuitState.OPEN}
    watch = NodeWatch(
        [node(FR), node(DK)],
        circuit=lambda n: circuits.get(n, CircuitState.CLOSED),
        clock=lambda: now[0],
    )
    watch.record(node(DK), NodeOutcome.failed(DK, NodeStatus.TIMEOUT, "x"), full_timeout=True)
    now[0] = 112.4
    assert watch.describe()["tessera-node-dk"] == (
        "not answering (TIMEOUT 12 s ago); circuit closed; latency interactive"
    )
    assert (
        watch.readiness()
        == "no node answers: tessera-node-fr unknown, tessera-node-dk not answering"
    )
    circuits.clear()
    assert watch.readiness() is None


async def test_a_gateway_no_node_answers_finds_one_back_by_probing() -> None:
    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"ready": True, "problems": {}})

    node_app = web.Application()
    node_app.router.add_get("/readyz", ready)
    async with TestServer(node_app) as server, aiohttp.ClientSession() as session:
        back = NodeInfo(jurisdiction=FR, node_id="tessera-node-fr", url=str(server.make_url("")))
        gone = NodeInfo(jurisdiction=DK, node_id="tessera-node-dk", url="http://127.0.0.1:9")
        watch = NodeWatch([back, gone])
        for n in (back, gone):
            failed = NodeOutcome.failed(n.jurisdiction, NodeStatus.UNAVAILABLE, "x")
            watch.record(n, failed, full_timeout=True)
        assert watch.readiness() is not None
        await watch.probe(session)
        assert watch.readiness() is None
        assert watch.describe()["tessera-node-fr"].startswith("answering (ready when probed ")
        assert watch.state("tessera-node-dk") is NodeState.NOT_ANSWERING
