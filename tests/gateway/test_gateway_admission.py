"""The gateway's turns for the fan-out and combining (`gateway.admission`): at most so many
questions at once, the next ones waiting in arrival order within their deadline, the rest
refused at once with GATEWAY_BUSY before any node is asked; every question answered or
clearly refused, and audited either way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.admission import Admission
from gateway.app import create_app
from gateway.federation import NodeInfo
from gateway.nodes import MockNodeClient
from gateway.settings import GatewaySettings
from oversight.audit.store import MemoryAuditStore
from schema.errors import ErrorCode, SettingsError, TesseraError
from schema.wire import NodeRequest, NodeResponse
from tests.gateway.gateway_kit import Keys, counts_handler, mint

# -- the turns alone ----------------------------------------------------------------------


async def test_turns_are_given_in_arrival_order_and_the_overflow_refused_at_once() -> None:
    refusals: list[str] = []
    admission = Admission(active=2, waiting=2, on_refused=refusals.append)
    release = asyncio.Event()
    order: list[int] = []

    async def question(n: int) -> str:
        try:
            async with admission.turn(within_s=5):
                order.append(n)
                await release.wait()
        except TesseraError as refused:
            return str(refused.extensions)
        return "answered"

    tasks = [asyncio.create_task(question(n)) for n in range(5)]
    await asyncio.sleep(0.01)
    assert order == [0, 1]
    assert (admission.in_phase, len(admission.queue)) == (2, 2)
    release.set()
    busy = str({"code": "GATEWAY_BUSY", "retryAfter": 1})
    assert await asyncio.gather(*tasks) == ["answered"] * 4 + [busy]
    assert order == [0, 1, 2, 3]
    assert refusals == ["full"]
    assert (admission.in_phase, len(admission.queue)) == (0, 0)


async def test_a_wait_past_its_deadline_is_refused_and_a_cancelled_one_hands_its_turn_on() -> None:
    refusals: list[str] = []
    admission = Admission(active=1, waiting=4, on_refused=refusals.append)
    release = asyncio.Event()

    async def hold() -> None:
        async with admission.turn(within_s=5):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    with pytest.raises(TesseraError) as refused:
        async with admission.turn(within_s=0.05):
            pass
    assert refused.value.extensions == {"code": "GATEWAY_BUSY", "retryAfter": 1}
    assert refusals == ["waited"]
    assert len(admission.queue) == 0
    # A waiter handed its turn just as it is cancelled passes the turn on, not loses it.
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    release.set()
    await holder
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert admission.in_phase == 0
    async with asyncio.timeout(1), admission.turn(within_s=1) as waited:
        assert waited == 0.0


# -- through the gateway ------------------------------------------------------------------


@pytest.fixture
def store() -> MemoryAuditStore:
    return MemoryAuditStore()


@pytest.fixture
async def gateway(
    federation_file: Path, store: MemoryAuditStore
) -> AsyncIterator[tuple[TestClient, MockNodeClient, asyncio.Event, set[str], list[int]]]:
    """A gateway taking 2 questions at a time and holding 3 more waiting, whose nodes answer
    once `release` is set; `asking` holds the query ids the nodes are working on, `peak` the
    most at once."""
    release = asyncio.Event()
    answer = counts_handler()
    asking: set[str] = set()
    peak = [0]

    async def held(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        asking.add(request.query_id)
        peak[0] = max(peak[0], len(asking))
        try:
            await release.wait()
            return answer(node, request)  # type: ignore[return-value]
        finally:
            asking.discard(request.query_id)

    nodes = MockNodeClient(held)
    settings = GatewaySettings.from_env(
        {}, federation=federation_file, deadline_s=5.0, max_active_cohorts=2, max_waiting_cohorts=3
    )
    client = TestClient(TestServer(create_app(settings, node_client=nodes, audit_store=store)))
    await client.start_server()
    yield client, nodes, release, asking, peak
    await client.close()


QUESTION = '{ cohort(request: "DR-2026-0042", %s criteria: {sex: FEMALE}) { count { value } } }'


async def ask(client: TestClient, token: str, extra: str = "") -> tuple[int, str | None, Any]:
    response = await client.post(
        "/graphql",
        json={"query": QUESTION % extra},
        headers={"Authorization": f"Bearer {token}"},
    )
    return response.status, response.headers.get("Retry-After"), await response.json()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


async def test_a_burst_beyond_the_turns_waits_or_is_refused_and_nothing_is_lost(
    gateway: tuple[TestClient, MockNodeClient, asyncio.Event, set[str], list[int]],
    keys: Keys,
    store: MemoryAuditStore,
) -> None:
    client, nodes, release, asking, peak = gateway
    token = mint(keys)
    burst = [asyncio.create_task(ask(client, token)) for _ in range(8)]
    await until(lambda: sum(task.done() for task in burst) == 3 and len(asking) == 2)
    # Two questions at the nodes, three waiting, and the other three refused at once, before
    # any node was asked for them.
    await asyncio.sleep(0.1)
    assert len(asking) == 2
    assert sum(task.done() for task in burst) == 3
    refused = [task.result() for task in burst if task.done()]
    for status, retry_after, body in refused:
        assert status == 200
        assert retry_after == "1"
        assert body["data"] == {"cohort": None}
        assert body["errors"][0]["extensions"] == {"code": "GATEWAY_BUSY", "retryAfter": 1}
    asked = {call.request.query_id for call in nodes.calls}
    assert len(asked) == 2
    release.set()
    results = await asyncio.gather(*burst)
    answered = [body for _, _, body in results if "errors" not in body]
    assert len(answered) == 5
    assert all(body["data"]["cohort"]["count"]["value"] is not None for body in answered)
    # Never more than two questions at the nodes; every question asked them once.
    assert peak[0] == 2
    assert len({call.request.query_id for call in nodes.calls}) == 5
    # Every question has its audit entry: five answered, three refused.
    entries = await store.entries("gateway:tessera-gateway")
    assert sorted(e.decision for e in entries) == ["ANSWERED"] * 5 + ["REFUSED"] * 3
    refusals = [e for e in entries if e.decision == "REFUSED"]
    assert {e.record().error_code for e in refusals} == {ErrorCode.GATEWAY_BUSY}
    # Operators see the refusals, by reason (never by whom).
    metrics = await (await client.get("/metrics")).text()
    assert 'tessera_gateway_admission_refusals_total{reason="full"} 3.0' in metrics


async def test_a_question_whose_deadline_passes_waiting_is_refused_without_asking(
    gateway: tuple[TestClient, MockNodeClient, asyncio.Event, set[str], list[int]],
    keys: Keys,
) -> None:
    client, nodes, release, asking, _ = gateway
    token = mint(keys)
    holding = [asyncio.create_task(ask(client, token)) for _ in range(2)]
    await until(lambda: len(asking) == 2)
    _, retry_after, body = await ask(client, token, "deadlineMs: 300,")
    assert body["errors"][0]["extensions"]["code"] == "GATEWAY_BUSY"
    assert retry_after == "1"
    assert len({call.request.query_id for call in nodes.calls}) == 2
    release.set()
    assert all("errors" not in body for _, _, body in await asyncio.gather(*holding))


def test_admission_settings_are_read_and_bounded(federation_file: Path) -> None:
    settings = GatewaySettings.from_env(
        {
            "TESSERA_GATEWAY_MAX_ACTIVE_COHORTS": "16",
            "TESSERA_GATEWAY_MAX_WAITING_COHORTS": "0",
        },
        federation=federation_file,
    )
    assert (settings.max_active_cohorts, settings.max_waiting_cohorts) == (16, 0)
    with pytest.raises(SettingsError, match="TESSERA_GATEWAY_MAX_ACTIVE_COHORTS"):
        GatewaySettings.from_env(
            {"TESSERA_GATEWAY_MAX_ACTIVE_COHORTS": "0"}, federation=federation_file
        )
