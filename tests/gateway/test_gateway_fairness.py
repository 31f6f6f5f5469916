"""Fair sharing of the nodes: a researcher's share of the questions in flight (admitted per
request, before any fan-out), the fair node bulkhead, and one audit entry per field that
matches what the researcher received."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.fairshare import FairShare
from gateway.federation import NodeInfo
from gateway.graphql.limits import cohort_fields
from gateway.nodes import MockNodeClient
from gateway.settings import GatewaySettings
from oversight.audit.store import MemoryAuditStore
from schema.errors import SettingsError, TesseraError
from schema.fair_queue import BulkheadFull, FairBulkhead
from schema.wire import NodeRequest, NodeResponse
from tests.gateway.gateway_kit import Keys, counts_handler, mint

CHAIN = "gateway:tessera-gateway"


def cohort(alias: str, sex: str = "FEMALE", extra: str = "") -> str:
    return (
        f'{alias}: cohort(request: "DR-2026-0042", {extra} criteria: {{sex: {sex}}}) '
        "{ count { value } }"
    )


def operation(aliases: int, prefix: str = "q") -> dict[str, Any]:
    return {"query": "{ " + " ".join(cohort(f"{prefix}{i}") for i in range(aliases)) + " }"}


# -- counting a request's questions ------------------------------------------------------


def test_every_cohort_field_of_the_operation_run_is_counted_once_per_response_key() -> None:
    assert cohort_fields(operation(16)["query"]) == 16
    fragments = """
    query Q { a: cohort(request: "R", criteria: {}) { queryId } ...F ... on Query { ...G } }
    fragment F on Query { b: cohort(request: "R", criteria: {}) { queryId } ...G ...G }
    fragment G on Query { c: cohort(request: "R", criteria: {}) { queryId } jurisdictions { code } }
    query Other { x: cohort(request: "R", criteria: {}) { queryId } }
    """
    assert cohort_fields(fragments, "Q") == 3
    assert cohort_fields(fragments, "Other") == 1
    # Fields with the same response key are merged into one by GraphQL: one question.
    assert (
        cohort_fields(
            '{ cohort(request: "R", criteria: {}) { queryId } '
            'cohort(request: "R", criteria: {}) { count { value } } }'
        )
        == 1
    )
    # No operation would run: nothing is asked.
    assert cohort_fields(fragments) == 0
    assert cohort_fields(fragments, "Nope") == 0
    assert cohort_fields("{ cohort(") == 0
    assert cohort_fields(None) == 0


# -- the share of questions in flight -----------------------------------------------------


def test_a_share_admits_a_request_whole_or_refuses_it_whole() -> None:
    refusals: list[str] = []
    shares = FairShare(per_researcher=4, per_application=6, on_refused=refusals.append)
    first = shares.admit("ann", ["app"], 3)
    with pytest.raises(TesseraError) as refused:
        shares.admit("ann", ["app"], 2)
    assert refused.value.extensions == {
        "code": "TOO_MANY_IN_FLIGHT",
        "asked": 2,
        "inFlight": 3,
        "share": 4,
        "retryAfter": 1,
    }
    assert shares.researchers["ann"] == 3  # nothing reserved by the refusal
    # Bob's own share is whole, but the application's is not.
    shares.admit("bob", ["app"], 3)
    with pytest.raises(TesseraError) as refused:
        shares.admit("carl", ["app"], 1)
    assert refused.value.extensions["share"] == 6
    # More than a share can ever hold: no retryAfter, waiting will not help.
    with pytest.raises(TesseraError) as refused:
        shares.admit("dora", ["other"], 5)
    assert "retryAfter" not in refused.value.extensions
    assert refusals == ["researcher", "application", "researcher"]
    first.release(1)
    first.close()
    first.close()
    assert "ann" not in shares.researchers
    assert shares.applications["app"] == 3


# -- the fair node bulkhead ---------------------------------------------------------------


async def test_a_researcher_holds_at_most_its_share_of_a_nodes_slots() -> None:
    bulkhead = FairBulkhead(max_in_flight=4, max_waiting=8, per_applicant=2)
    release = asyncio.Event()
    started: list[str] = []

    async def call(applicant: str) -> None:
        async with bulkhead.slot(applicant):
            started.append(applicant)
            await release.wait()

    heavy = [asyncio.create_task(call("heavy")) for _ in range(6)]
    await asyncio.sleep(0)
    assert started == ["heavy", "heavy"]
    assert bulkhead.waiting_for("heavy") == 4
    # A newcomer finds a free slot at once, despite the four waiting before it.
    other = asyncio.create_task(call("other"))
    await asyncio.sleep(0)
    assert started[-1] == "other"
    release.set()
    await asyncio.gather(*heavy, other)
    assert bulkhead.busy == 0
    assert bulkhead.waiting == 0


async def test_freed_slots_go_round_the_researchers_waiting() -> None:
    bulkhead = FairBulkhead(max_in_flight=1, max_waiting=16)
    gates: dict[str, list[asyncio.Event]] = {}
    order: list[str] = []

    async def call(applicant: str) -> None:
        async with bulkhead.slot(applicant):
            order.append(applicant)
            gate = asyncio.Event()
            gates.setdefault(applicant, []).append(gate)
            await gate.wait()

    tasks = [asyncio.create_task(call("heavy")) for _ in range(5)]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(call(name)) for name in ("b", "c")]
    await asyncio.sleep(0)
    while len(order) < 7:
        for gate in [g for gs in gates.values() for g in gs]:
            gate.set()
        await asyncio.sleep(0.01)
    for gate in [g for gs in gates.values() for g in gs]:
        gate.set()
    await asyncio.gather(*tasks)
    # Round the researchers waiting: not heavy's five in a row, b and c in between.
    assert order == ["heavy", "heavy", "b", "c", "heavy", "heavy", "heavy"]


async def test_a_full_waiting_room_pushes_out_the_burst_not_the_newcomer() -> None:
    bulkhead = FairBulkhead(max_in_flight=1, max_waiting=3)
    release = asyncio.Event()

    async def call(applicant: str) -> str:
        try:
            async with bulkhead.slot(applicant):
                await release.wait()
        except BulkheadFull:
            return "busy"
        return "ok"

    heavy = [asyncio.create_task(call("heavy")) for _ in range(4)]  # 1 in flight, 3 waiting
    await asyncio.sleep(0)
    # Heavy's fifth is turned away: the room is full and heavy holds it all.
    assert await call("heavy") == "busy"
    newcomer = asyncio.create_task(call("other"))
    await asyncio.sleep(0)
    assert bulkhead.waiting_for("other") == 1
    assert bulkhead.waiting_for("heavy") == 2
    release.set()
    assert await newcomer == "ok"
    # Heavy gave up its newest request, the others went through.
    assert sorted(await asyncio.gather(*heavy)) == ["busy", "ok", "ok", "ok"]


async def test_a_wait_that_ends_gives_back_its_place_or_its_slot() -> None:
    bulkhead = FairBulkhead(max_in_flight=1, max_waiting=4)
    release = asyncio.Event()

    async def hold() -> None:
        async with bulkhead.slot("a"):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01), bulkhead.slot("b"):
            pass
    assert bulkhead.waiting == 0
    # A waiter granted its slot just as it is cancelled hands the slot on.
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    release.set()
    await holder
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert bulkhead.busy == 0
    async with asyncio.timeout(1), bulkhead.slot("c"):
        pass


# -- through the gateway ------------------------------------------------------------------


@pytest.fixture
def store() -> MemoryAuditStore:
    return MemoryAuditStore()


AppWith = Callable[..., Any]


@pytest.fixture
async def app_with(
    federation_file: Path, store: MemoryAuditStore
) -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient] = []

    async def make(nodes: MockNodeClient, **settings: Any) -> TestClient:
        config = GatewaySettings.from_env(
            {}, federation=federation_file, deadline_s=5.0, **settings
        )
        client = TestClient(TestServer(create_app(config, node_client=nodes, audit_store=store)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def ask(client: TestClient, payload: Any, token: str) -> Any:
    response = await client.post(
        "/graphql", json=payload, headers={"Authorization": f"Bearer {token}"}
    )
    return await response.json()


async def decisions(store: MemoryAuditStore, researcher: str) -> list[str]:
    entries = await store.entries(CHAIN)
    return [e.decision for e in entries if e.principal == researcher]


async def test_a_batch_over_the_share_is_refused_whole_before_any_node_is_asked(
    app_with: AppWith, keys: Keys, store: MemoryAuditStore
) -> None:
    nodes = MockNodeClient(counts_handler())
    client = await app_with(nodes, max_cohorts_per_researcher=8)
    body = await ask(client, [operation(4, "a"), operation(5, "b")], mint(keys))
    assert nodes.calls == []
    for answer, fields in zip(body, (4, 5), strict=True):
        assert list(answer["data"].values()) == [None] * fields
        codes = {e["extensions"]["code"] for e in answer["errors"]}
        assert codes == {"TOO_MANY_IN_FLIGHT"}
        assert len(answer["errors"]) == fields
        assert answer["errors"][0]["extensions"]["asked"] == 9
    # One refusal entry per field refused, and nothing answered.
    assert await decisions(store, "researcher@test.tessera.eu") == ["REFUSED"] * 9
    # Operators see the refusal, by the share it would have exceeded (never by whom).
    metrics = await (await client.get("/metrics")).text()
    assert 'tessera_gateway_fair_share_refusals_total{share="researcher"} 1.0' in metrics
    # The request ended: its places are free again, and a request within the share passes.
    body = await ask(client, [operation(4, "a"), operation(4, "b")], mint(keys))
    assert all("errors" not in answer for answer in body)


async def test_a_researcher_over_its_share_does_not_take_anothers(
    app_with: AppWith, keys: Keys
) -> None:
    release = asyncio.Event()
    answer = counts_handler()

    async def held(node: NodeInfo, request: NodeRequest) -> NodeResponse:
        if request.subject == "heavy@test.tessera.eu":
            await release.wait()
        return answer(node, request)  # type: ignore[return-value]

    nodes = MockNodeClient(held)
    client = await app_with(nodes, max_cohorts_per_researcher=4, max_cohorts_per_application=64)
    heavy = mint(keys, sub="heavy@test.tessera.eu")
    first = asyncio.create_task(ask(client, operation(4), heavy))
    await asyncio.sleep(0.2)
    # Heavy's second request would exceed its share: refused at once, retry later.
    second = await ask(client, operation(1), heavy)
    assert second["data"] == {"q0": None}
    assert second["errors"][0]["extensions"] == {
        "code": "TOO_MANY_IN_FLIGHT",
        "asked": 1,
        "inFlight": 4,
        "share": 4,
        "retryAfter": 1,
    }
    # Another researcher is answered meanwhile.
    other = await ask(client, operation(2), mint(keys, sub="other@test.tessera.eu"))
    assert "errors" not in other
    assert all(field["count"]["value"] is not None for field in other["data"].values())
    release.set()
    assert "errors" not in await first


async def test_one_refused_field_takes_no_sibling_with_it_and_the_trail_matches(
    app_with: AppWith, keys: Keys, store: MemoryAuditStore
) -> None:
    """The finding: a batch's operation whose one field was refused came back `data: null`
    while its answered siblings were audited as answered."""
    client = await app_with(MockNodeClient(counts_handler()))
    refused = cohort("bad", extra="jurisdictions: [SE],")
    batch = [operation(3, "a"), {"query": "{ " + cohort("ok") + " " + refused + " }"}]
    body = await ask(client, batch, mint(keys))
    assert all(f["count"]["value"] is not None for f in body[0]["data"].values())
    assert body[1]["data"]["ok"]["count"]["value"] is not None
    assert body[1]["data"]["bad"] is None
    assert [e["path"] for e in body[1]["errors"]] == [["bad"]]
    answered = sum(1 for a in body for f in a["data"].values() if f is not None)
    errors = sum(len(a.get("errors", ())) for a in body)
    trail = await decisions(store, "researcher@test.tessera.eu")
    assert len(trail) == answered + errors == 5
    assert trail.count("REFUSED") == errors == 1


def test_fair_share_settings_are_read_and_bounded(federation_file: Path) -> None:
    settings = GatewaySettings.from_env(
        {
            "TESSERA_GATEWAY_MAX_COHORTS_PER_RESEARCHER": "12",
            "TESSERA_GATEWAY_MAX_COHORTS_PER_APPLICATION": "40",
            "TESSERA_GATEWAY_NODE_MAX_IN_FLIGHT": "10",
            "TESSERA_GATEWAY_NODE_MAX_IN_FLIGHT_PER_APPLICANT": "3",
        },
        federation=federation_file,
    )
    assert (settings.max_cohorts_per_researcher, settings.max_cohorts_per_application) == (12, 40)
    assert settings.node_share == 3
    default = GatewaySettings.from_env({}, federation=federation_file, node_max_in_flight=9)
    assert default.node_share == 4
    assert (
        GatewaySettings.from_env({}, federation=federation_file, node_max_in_flight=1).node_share
        == 1
    )
    for var, value in (
        ("MAX_COHORTS_PER_RESEARCHER", "0"),
        ("MAX_COHORTS_PER_APPLICATION", "-1"),
        ("NODE_MAX_IN_FLIGHT_PER_APPLICANT", "17"),
    ):
        with pytest.raises(SettingsError, match=var):
            GatewaySettings.from_env({f"TESSERA_GATEWAY_{var}": value}, federation=federation_file)
