"""Per-node resilience: the circuit breaker, bounded in-flight requests, and retries of
connect failures only, all inside the caller's deadline."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
from typing import Any

import pytest

from gateway.federation import NodeInfo
from gateway.latency import LatencyClass
from gateway.nodes import MockNodeClient, NodeOutcome
from gateway.planner import plan_query
from gateway.resilience import (
    CircuitBreaker,
    CircuitState,
    ResilienceSettings,
    ResilientNodeClient,
    RetryPolicy,
)
from schema.codes import Jurisdiction, NodeStatus
from schema.errors import ErrorCode, TesseraError
from schema.wire import NodeRequest, NodeResponse
from tests.gateway.gateway_kit import (
    APPROVAL,
    DEFAULT_COUNTS,
    MEMBERS,
    REQUEST_ID,
    SUBJECT,
    node_response,
)

FR = Jurisdiction.FR
NODE = NodeInfo(FR, "tessera-node-fr", "http://fr")
REQUEST = plan_query(
    subject=SUBJECT,
    members=MEMBERS,
    request_id=REQUEST_ID,
    criteria={},
    jurisdictions=None,
    reference_date=dt.date(2026, 1, 1),
    tables=[],
).node_request(FR, APPROVAL)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ok(node: NodeInfo, request: NodeRequest) -> NodeResponse:
    return node_response(request, DEFAULT_COUNTS[node.jurisdiction])


async def ask(client: ResilientNodeClient, budget_s: float = 1.0) -> NodeOutcome:
    return await client.query(NODE, REQUEST, approval_token="t", timeout=budget_s)


# -- the breaker alone -------------------------------------------------------------------------


def test_the_breaker_opens_after_failures_in_a_row() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=10, clock=clock)
    for _ in range(2):
        assert breaker.admit()
        breaker.failed()
    assert breaker.admit()
    breaker.succeeded()  # a success resets the count
    for _ in range(3):
        assert breaker.admit()
        breaker.failed()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.admit()
    assert breaker.retry_in() == 10


def test_half_open_lets_one_probe_through_then_closes_or_reopens() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=5, clock=clock)
    breaker.failed()
    clock.now += 5
    assert breaker.admit()  # the probe
    assert breaker.state is CircuitState.HALF_OPEN
    assert not breaker.admit()  # only one at a time
    breaker.failed()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.admit()
    clock.now += 5
    assert breaker.admit()
    breaker.succeeded()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.admit()
    assert breaker.admit()


def test_a_probe_that_tells_nothing_frees_the_way_for_another() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=5, clock=clock)
    breaker.failed()
    clock.now += 5
    assert breaker.admit()
    breaker.released()
    assert breaker.admit()


# -- through the client ------------------------------------------------------------------------


async def test_a_failing_node_is_not_asked_once_its_circuit_is_open() -> None:
    clock = Clock()

    def down(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        raise ConnectionResetError

    inner = MockNodeClient(down)
    client = ResilientNodeClient(
        inner, ResilienceSettings(failure_threshold=2, reset_after_s=5), clock=clock
    )
    for _ in range(2):
        assert (await ask(client)).status is NodeStatus.UNAVAILABLE
    assert client.circuit(NODE.node_id) is CircuitState.OPEN
    shed = await ask(client)
    assert shed.status is NodeStatus.UNAVAILABLE
    assert shed.error_code is ErrorCode.CIRCUIT_OPEN
    assert "next try in 5.0 s" in (shed.message or "")
    assert len(inner.calls) == 2  # the third request never left
    # The node comes back: after the reset time the probe goes through and closes it.
    inner.handler = ok
    clock.now += 5
    assert (await ask(client)).status is NodeStatus.OK
    assert client.circuit(NODE.node_id) is CircuitState.CLOSED


@pytest.mark.parametrize(
    ("raised", "counts"),
    [
        (TesseraError("bad", code=ErrorCode.BAD_REQUEST), False),  # the question's fault
        (TesseraError("stays out", code=ErrorCode.POOL_REFUSED), False),  # the round's form
        (TesseraError("db down", code=ErrorCode.BACKEND_FAILED), True),
        (ConnectionResetError(), True),
    ],
)
async def test_only_the_nodes_own_failures_count(raised: Exception, counts: bool) -> None:
    def fail(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        raise raised

    client = ResilientNodeClient(MockNodeClient(fail), ResilienceSettings(failure_threshold=1))
    await ask(client)
    expected = CircuitState.OPEN if counts else CircuitState.CLOSED
    assert client.circuit(NODE.node_id) is expected


async def test_a_timeout_under_a_short_query_deadline_does_not_count() -> None:
    async def slow(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        await asyncio.sleep(5)
        return ok(node, request)

    settings = ResilienceSettings(
        failure_threshold=1, full_timeout_s={LatencyClass.INTERACTIVE: 1.0}
    )
    client = ResilientNodeClient(MockNodeClient(slow), settings)
    assert (await ask(client, budget_s=0.05)).status is NodeStatus.TIMEOUT
    assert client.circuit(NODE.node_id) is CircuitState.CLOSED  # the researcher's choice
    assert (await ask(client, budget_s=1.0)).status is NodeStatus.TIMEOUT
    assert client.circuit(NODE.node_id) is CircuitState.OPEN  # the node's slowness


async def test_a_batch_hub_times_out_against_itself_only_after_its_class_timeout() -> None:
    async def slow(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        await asyncio.sleep(5)
        return ok(node, request)

    full = {LatencyClass.INTERACTIVE: 0.05, LatencyClass.BATCH: 1.0}
    settings = ResilienceSettings(failure_threshold=1, full_timeout_s=full)
    client = ResilientNodeClient(MockNodeClient(slow), settings)
    batch = dataclasses.replace(NODE, latency=LatencyClass.BATCH)
    timed_out = await client.query(batch, REQUEST, approval_token="t", timeout=0.1)
    assert timed_out.status is NodeStatus.TIMEOUT
    # Time enough for an interactive node, not for a batch hub: says nothing about it.
    assert client.circuit(NODE.node_id) is CircuitState.CLOSED
    assert (await ask(client, budget_s=0.1)).status is NodeStatus.TIMEOUT
    assert client.circuit(NODE.node_id) is CircuitState.OPEN


async def test_a_connect_failure_is_retried_with_a_new_request() -> None:
    attempts = 0

    def flaky(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionRefusedError
        return ok(node, request)

    inner = MockNodeClient(flaky)
    retry = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.02)
    client = ResilientNodeClient(inner, ResilienceSettings(retry=retry), rng=random.Random(1))
    outcome = await ask(client)
    assert outcome.status is NodeStatus.OK
    assert len(inner.calls) == 3
    # Each attempt gets what is left of the same budget.
    budgets = [c.timeout for c in inner.calls]
    assert budgets == sorted(budgets, reverse=True)
    assert budgets[0] <= 1.0


async def test_retries_give_up_and_say_so() -> None:
    def refused(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        raise ConnectionRefusedError

    inner = MockNodeClient(refused)
    retry = RetryPolicy(attempts=3, base_delay_s=0.001, max_delay_s=0.001)
    outcome = await ask(ResilientNodeClient(inner, ResilienceSettings(retry=retry)))
    assert outcome.status is NodeStatus.UNAVAILABLE
    assert outcome.message is not None
    assert outcome.message.endswith("(3 attempts)")


@pytest.mark.parametrize(
    "raised", [ConnectionResetError(), TimeoutError(), TesseraError("x", code=ErrorCode.INTERNAL)]
)
async def test_nothing_but_a_connect_failure_is_retried(raised: Exception) -> None:
    def fail(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        raise raised

    inner = MockNodeClient(fail)
    await ask(ResilientNodeClient(inner, ResilienceSettings(retry=RetryPolicy(attempts=5))))
    assert len(inner.calls) == 1


async def test_no_retry_is_started_that_the_deadline_cannot_hold() -> None:
    def refused(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        raise ConnectionRefusedError

    inner = MockNodeClient(refused)
    # Pauses of up to 10 s cannot fit in a 0.2 s budget, whatever the draw.
    retry = RetryPolicy(attempts=5, base_delay_s=10, max_delay_s=10)
    client = ResilientNodeClient(inner, ResilienceSettings(retry=retry), rng=FixedDraw())
    outcome = await ask(client, budget_s=0.2)
    assert outcome.status is NodeStatus.UNAVAILABLE
    assert len(inner.calls) == 1


class FixedDraw(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(attempts=10, base_delay_s=0.1, max_delay_s=1.0)
    assert [policy.delay(k, FixedDraw()) for k in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    draws = {policy.delay(3, random.Random(seed)) for seed in range(20)}
    assert len(draws) > 1  # jittered
    assert all(0 <= d <= 0.8 for d in draws)


async def test_in_flight_requests_are_bounded_and_excess_is_pushed_back() -> None:
    release = asyncio.Event()
    in_flight = 0
    most = 0

    async def held(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await release.wait()
        in_flight -= 1
        return ok(node, request)

    client = ResilientNodeClient(
        MockNodeClient(held), ResilienceSettings(max_in_flight=2, max_waiting=1)
    )
    tasks = [asyncio.create_task(ask(client, budget_s=5)) for _ in range(5)]
    await asyncio.sleep(0.05)
    # 2 in flight, 1 waiting, 2 turned away at once with NODE_BUSY.
    done = [t for t in tasks if t.done()]
    assert len(done) == 2
    assert {t.result().error_code for t in done} == {ErrorCode.NODE_BUSY}
    release.set()
    outcomes = await asyncio.gather(*tasks)
    assert [o.status for o in outcomes].count(NodeStatus.OK) == 3
    assert most == 2


async def test_a_wait_for_a_slot_ends_at_the_deadline_and_counts_nothing() -> None:
    async def held(node: NodeInfo, request: NodeRequest) -> Any:
        await asyncio.sleep(5)

    client = ResilientNodeClient(
        MockNodeClient(held),
        ResilienceSettings(max_in_flight=1, max_waiting=1, failure_threshold=1),
    )
    first = asyncio.create_task(ask(client, budget_s=10))
    await asyncio.sleep(0.01)
    waiting = await ask(client, budget_s=0.1)
    assert waiting.status is NodeStatus.TIMEOUT
    assert "no free slot" in (waiting.message or "")
    assert client.circuit(NODE.node_id) is CircuitState.CLOSED
    first.cancel()


async def test_a_cancelled_request_releases_its_slot_and_its_probe() -> None:
    clock = Clock()
    started = asyncio.Event()

    async def hang(node: NodeInfo, request: NodeRequest) -> Any:
        started.set()
        await asyncio.sleep(60)

    inner = MockNodeClient(hang)
    client = ResilientNodeClient(
        inner,
        ResilienceSettings(max_in_flight=1, max_waiting=0, failure_threshold=1, reset_after_s=1),
        clock=clock,
    )
    client._guard(NODE).breaker.failed()  # open
    clock.now += 1
    probe = asyncio.create_task(ask(client, budget_s=30))
    await started.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    # Neither the slot nor the probe is lost: the next request is the new probe.
    inner.handler = ok
    assert (await ask(client)).status is NodeStatus.OK
    assert client.circuit(NODE.node_id) is CircuitState.CLOSED
