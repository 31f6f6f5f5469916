"""Latency classes through the GraphQL endpoint, with fake nodes: DK is a batch hub (its
federation entry says `latency = "batch"`), FR and NO answer interactively."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.federation import NodeInfo
from gateway.nodes import MockNodeClient
from gateway.settings import GatewaySettings
from schema.codes import Jurisdiction
from schema.wire import NodeRequest, NodeResponse
from tests.gateway.gateway_kit import DEFAULT_COUNTS, Keys, node_response, write_federation

FR, DK, NO = Jurisdiction.FR, Jurisdiction.DK, Jurisdiction.NO
INTERACTIVE_S, BATCH_S = 0.2, 2.0

QUESTION = """query($deadline: Int) {
  cohort(request: "DR-2026-0042", criteria: {}, deadlineMs: $deadline) {
    count { value status reasons { rule message } }
    byJurisdiction { jurisdiction status error count { value } }
  }
}"""


@pytest.fixture
def federation_file(tmp_path: Path, keys: Keys) -> Path:
    path = write_federation(tmp_path, keys)
    dk = 'url = "http://127.0.0.1:9/dk"\n'
    path.write_text(path.read_text().replace(dk, dk + 'latency = "batch"\n'))
    return path


@pytest.fixture
def settings(federation_file: Path) -> GatewaySettings:
    return GatewaySettings.from_env(
        {},
        federation=federation_file,
        deadline_s=3.0,
        node_timeout_s=INTERACTIVE_S,
        batch_node_timeout_s=BATCH_S,
    )


def sleeping(nodes: MockNodeClient, seconds: Mapping[Jurisdiction, float]) -> None:
    async def handler(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        await asyncio.sleep(seconds.get(node.jurisdiction, 0.0))
        return node_response(request, DEFAULT_COUNTS[node.jurisdiction])

    nodes.handler = handler


def statuses(body: dict[str, Any]) -> dict[str, str]:
    assert "errors" not in body, body
    return {n["jurisdiction"]: n["status"] for n in body["data"]["cohort"]["byJurisdiction"]}


def partial(body: dict[str, Any]) -> list[str]:
    reasons = body["data"]["cohort"]["count"]["reasons"]
    return [r["message"] for r in reasons if r["rule"] == "PARTIAL"]


async def test_the_class_of_each_node_is_listed(graphql: Any) -> None:
    body = await graphql("{ jurisdictions { code latency } }", auth=None)
    assert body["data"]["jurisdictions"] == [
        {"code": "FR", "latency": "INTERACTIVE"},
        {"code": "DK", "latency": "BATCH"},
        {"code": "NO", "latency": "INTERACTIVE"},
    ]


async def test_a_batch_hub_is_waited_for_longer_than_an_interactive_node(
    graphql: Any, nodes: MockNodeClient
) -> None:
    # DK takes 0.6 s: past the interactive timeout, well within the batch one.
    sleeping(nodes, {DK: 0.6})
    body = await graphql(QUESTION)
    assert statuses(body) == {"FR": "OK", "DK": "OK", "NO": "OK"}
    assert not partial(body)
    # What the transport is given (the time left of each node's class timeout).
    assert {c.node.jurisdiction: c.timeout for c in nodes.calls} == pytest.approx(
        {FR: INTERACTIVE_S, DK: BATCH_S, NO: INTERACTIVE_S}, abs=0.05
    )
    # The same slowness at an interactive node is a time-out.
    nodes.calls.clear()
    sleeping(nodes, {NO: 0.6})
    started = time.perf_counter()
    body = await graphql(QUESTION)
    assert time.perf_counter() - started < 1.5  # not held for the batch class's 2 s
    assert statuses(body) == {"FR": "OK", "DK": "OK", "NO": "TIMEOUT"}
    assert "NO" in partial(body)[0]


async def test_a_batch_hub_past_its_timeout_leaves_a_partial_answer(
    graphql: Any, nodes: MockNodeClient
) -> None:
    sleeping(nodes, {DK: 30.0})
    started = time.perf_counter()
    body = await graphql(QUESTION)
    assert BATCH_S <= time.perf_counter() - started < BATCH_S + 1.0  # not the 3 s deadline
    assert statuses(body) == {"FR": "OK", "DK": "TIMEOUT", "NO": "OK"}
    result = body["data"]["cohort"]
    assert result["count"]["value"] is not None
    assert "DK" in partial(body)[0]


async def test_a_researchers_short_deadline_bounds_the_batch_class_too(
    graphql: Any, nodes: MockNodeClient
) -> None:
    sleeping(nodes, {DK: 0.6})
    body = await graphql(QUESTION, {"deadline": 400})
    assert statuses(body) == {"FR": "OK", "DK": "TIMEOUT", "NO": "OK"}
    assert {c.node.jurisdiction: c.timeout for c in nodes.calls}[DK] == pytest.approx(0.4, abs=0.05)
