"""Fan-out: in parallel, under one deadline, one failure costing one node."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

from gateway.access import decide_access
from gateway.fanout import fan_out
from gateway.federation import NodeInfo
from gateway.nodes import MockNodeClient, NodeOutcome
from gateway.permits import Permit, Presented
from gateway.planner import Plan, plan_query
from schema.approval import Approval
from schema.codes import Jurisdiction, NodeStatus
from schema.wire import NodeRequest, NodeResponse
from tests.gateway.gateway_kit import (
    DEFAULT_COUNTS,
    MEMBERS,
    POLICIES,
    REQUEST_ID,
    SUBJECT,
    node_response,
)

NODES = {j: NodeInfo(j, f"tessera-node-{j.value.lower()}", f"http://{j.value}") for j in MEMBERS}


def make_plan() -> Plan:
    return plan_query(
        subject=SUBJECT,
        members=MEMBERS,
        request_id=REQUEST_ID,
        criteria={},
        jurisdictions=None,
        reference_date=dt.date(2026, 1, 1),
        tables=[],
    )


async def run(
    client: MockNodeClient,
    *,
    approved: tuple[Jurisdiction, ...] = MEMBERS,
    deadline_s: float = 1.0,
    node_timeout_s: float = 1.0,
) -> dict[Jurisdiction, NodeOutcome]:
    approval = Approval(
        request_id=REQUEST_ID, purpose="scientific_research", jurisdictions=approved
    )
    plan = make_plan()
    presented = Presented((Permit("iss", SUBJECT, approval, "token"),))
    access = decide_access(plan, presented, POLICIES, allowed=lambda issuer, j: True)
    outcomes = await fan_out(
        client,
        NODES,
        plan,
        access.decisions,
        permits=access.permits,
        deadline_s=deadline_s,
        node_timeout_s=node_timeout_s,
    )
    assert [o.jurisdiction for o in outcomes] == list(plan.jurisdictions)
    return {o.jurisdiction: o for o in outcomes}


async def test_nodes_are_asked_in_parallel() -> None:
    async def slow(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        await asyncio.sleep(0.3)
        return node_response(request, DEFAULT_COUNTS[node.jurisdiction])

    started = time.perf_counter()
    outcomes = await run(MockNodeClient(slow))
    assert time.perf_counter() - started < 0.6  # not 3 × 0.3 s
    assert {o.status for o in outcomes.values()} == {NodeStatus.OK}


async def test_node_timeout_and_deadline() -> None:
    async def handler(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        if node.jurisdiction is Jurisdiction.FR:
            await asyncio.sleep(10)
        return node_response(request, DEFAULT_COUNTS[node.jurisdiction])

    client = MockNodeClient(handler)
    started = time.perf_counter()
    outcomes = await run(client, deadline_s=5.0, node_timeout_s=0.2)
    assert time.perf_counter() - started < 1.0
    assert outcomes[Jurisdiction.FR].status is NodeStatus.TIMEOUT
    assert outcomes[Jurisdiction.DK].status is NodeStatus.OK
    assert {c.timeout for c in client.calls} == {0.2}
    outcomes = await run(client, deadline_s=0.2, node_timeout_s=5.0)
    assert outcomes[Jurisdiction.FR].status is NodeStatus.TIMEOUT
    assert {c.timeout for c in client.calls[3:]} == {0.2}


async def test_a_failing_client_costs_one_node() -> None:
    def handler(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        if node.jurisdiction is Jurisdiction.NO:
            raise KeyError("bug")
        return node_response(request, DEFAULT_COUNTS[node.jurisdiction])

    outcomes = await run(MockNodeClient(handler))
    assert outcomes[Jurisdiction.NO].status is NodeStatus.ERROR
    assert outcomes[Jurisdiction.FR].status is NodeStatus.OK


async def test_denied_jurisdictions_are_not_asked() -> None:
    client = MockNodeClient(
        lambda node, request: node_response(request, DEFAULT_COUNTS[node.jurisdiction])
    )
    outcomes = await run(client, approved=(Jurisdiction.FR,))
    assert [c.node.jurisdiction for c in client.calls] == [Jurisdiction.FR]
    denied = outcomes[Jurisdiction.DK]
    assert denied.status is NodeStatus.DENIED
    assert [r.rule for r in denied.reasons] == ["APPROVAL_SCOPE"]
