"""Fan-out: in parallel, each node under its latency class's timeout within one deadline,
one failure costing one node."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from gateway.access import decide_access
from gateway.fanout import fan_out
from gateway.federation import NodeInfo
from gateway.latency import LatencyClass, NodeTimeouts
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
ONE_SECOND = NodeTimeouts(interactive=1.0)


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
    timeouts: NodeTimeouts = ONE_SECOND,
    nodes: Mapping[Jurisdiction, NodeInfo] = NODES,
) -> dict[Jurisdiction, NodeOutcome]:
    approval = Approval(
        request_id=REQUEST_ID, purpose="scientific_research", jurisdictions=approved
    )
    plan = make_plan()
    presented = Presented((Permit("iss", SUBJECT, approval, "token"),))
    access = decide_access(plan, presented, POLICIES, allowed=lambda issuer, j: True)
    outcomes = await fan_out(
        client,
        nodes,
        plan,
        access.decisions,
        permits=access.permits,
        deadline_s=deadline_s,
        timeouts=timeouts,
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
    outcomes = await run(client, deadline_s=5.0, timeouts=NodeTimeouts(interactive=0.2))
    assert time.perf_counter() - started < 1.0
    assert outcomes[Jurisdiction.FR].status is NodeStatus.TIMEOUT
    assert outcomes[Jurisdiction.DK].status is NodeStatus.OK
    assert {c.timeout for c in client.calls} == {0.2}
    outcomes = await run(client, deadline_s=0.2, timeouts=NodeTimeouts(interactive=5.0))
    assert outcomes[Jurisdiction.FR].status is NodeStatus.TIMEOUT
    assert {c.timeout for c in client.calls[3:]} == {0.2}


FR = Jurisdiction.FR
# FR is a hub on a batch engine; DK and NO answer interactively.
WITH_A_BATCH_HUB = {**NODES, FR: dataclasses.replace(NODES[FR], latency=LatencyClass.BATCH)}
CLASSES = NodeTimeouts(interactive=0.2, batch=3.0)


def sleeping(seconds: Mapping[Jurisdiction, float]) -> MockNodeClient:
    async def handler(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        await asyncio.sleep(seconds.get(node.jurisdiction, 0.0))
        return node_response(request, DEFAULT_COUNTS[node.jurisdiction])

    return MockNodeClient(handler)


async def test_each_node_is_waited_for_up_to_its_class_timeout() -> None:
    client = sleeping({FR: 0.5})
    outcomes = await run(client, deadline_s=5.0, timeouts=CLASSES, nodes=WITH_A_BATCH_HUB)
    # The batch hub's 0.5 s is within its class's 3 s, though beyond the interactive 0.2 s.
    assert {o.status for o in outcomes.values()} == {NodeStatus.OK}
    assert {c.node.jurisdiction: c.timeout for c in client.calls} == {
        FR: 3.0,
        Jurisdiction.DK: 0.2,
        Jurisdiction.NO: 0.2,
    }


async def test_a_hung_interactive_node_is_not_waited_for_as_long_as_a_batch_hub() -> None:
    # The batch hub answers quickly this time; DK hangs. DK is given up after the
    # interactive 0.2 s, not after the batch class's 3 s.
    started = time.perf_counter()
    outcomes = await run(
        sleeping({Jurisdiction.DK: 10.0, FR: 0.05}),
        deadline_s=5.0,
        timeouts=CLASSES,
        nodes=WITH_A_BATCH_HUB,
    )
    assert time.perf_counter() - started < 1.0
    assert outcomes[Jurisdiction.DK].status is NodeStatus.TIMEOUT
    assert outcomes[FR].status is outcomes[Jurisdiction.NO].status is NodeStatus.OK


async def test_a_batch_hub_past_its_class_timeout_times_out_alone() -> None:
    client = sleeping({FR: 10.0})
    started = time.perf_counter()
    outcomes = await run(
        client,
        deadline_s=5.0,
        timeouts=NodeTimeouts(interactive=0.1, batch=0.4),
        nodes=WITH_A_BATCH_HUB,
    )
    assert 0.35 < time.perf_counter() - started < 1.5  # the batch timeout, not the deadline
    assert outcomes[FR].status is NodeStatus.TIMEOUT
    assert outcomes[Jurisdiction.DK].status is outcomes[Jurisdiction.NO].status is NodeStatus.OK


async def test_a_deadline_shorter_than_the_batch_timeout_bounds_the_batch_hub() -> None:
    # A researcher's deadlineMs (here 0.3 s) bounds every class: the batch hub gets 0.3 s.
    client = sleeping({FR: 10.0})
    started = time.perf_counter()
    outcomes = await run(client, deadline_s=0.3, timeouts=CLASSES, nodes=WITH_A_BATCH_HUB)
    assert time.perf_counter() - started < 1.0
    assert outcomes[FR].status is NodeStatus.TIMEOUT
    assert {c.node.jurisdiction: c.timeout for c in client.calls}[FR] == 0.3


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


async def test_a_request_that_cannot_be_made_costs_its_node_only() -> None:
    plan = make_plan()

    class Broken(Plan):
        def node_request(self, jurisdiction: Jurisdiction, *args: Any, **kw: Any) -> NodeRequest:
            if jurisdiction is Jurisdiction.FR:
                raise ValueError("no request for FR")
            return super().node_request(jurisdiction, *args, **kw)

    broken = Broken(**{f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)})
    approval = Approval(request_id=REQUEST_ID, purpose="scientific_research", jurisdictions=MEMBERS)
    presented = Presented((Permit("iss", SUBJECT, approval, "token"),))
    access = decide_access(broken, presented, POLICIES, allowed=lambda issuer, j: True)

    async def answer(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        return node_response(request, DEFAULT_COUNTS[node.jurisdiction])

    client = MockNodeClient(answer)
    outcomes = await fan_out(
        client, NODES, broken, access.decisions, permits=access.permits, deadline_s=1.0
    )
    statuses = {o.jurisdiction: o.status for o in outcomes}
    assert statuses.pop(Jurisdiction.FR) is NodeStatus.ERROR
    assert set(statuses.values()) == {NodeStatus.OK}
    assert Jurisdiction.FR not in {c.node.jurisdiction for c in client.calls}
