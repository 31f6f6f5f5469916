"""Worker processes of one gateway (`gateway.workers`): each writes its own audit chain in the
one store, the compliance API of any worker reads every chain, and the caps kept in memory
are split so that the workers together hold no more than each cap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import STATE, create_app
from gateway.metrics import GatewayMetrics
from gateway.nodes import MockNodeClient
from gateway.settings import GatewaySettings
from gateway.worker_metrics import WorkerMetrics
from gateway.workers import audit_chain, gateway_chains, worker_of, worker_share
from oversight.audit.store import MemoryAuditStore
from schema.approval import ROLES_CLAIM, Role
from schema.audit.chain import verify_chain
from schema.errors import SettingsError
from tests.gateway.gateway_kit import Keys, mint

GATEWAY = "tessera-gateway"
COHORT = """{ cohort(request: "DR-2026-0042", criteria: {sex: FEMALE}) {
  queryId count { value } } }"""
ENTRY = "query($q: ID!) { auditEntry(queryId: $q) { chain seq queryId decision } }"
ENTRIES = """query($worker: Int!) { auditEntries(worker: $worker) {
  entries { chain seq queryId } nextBefore } }"""
CHAINS = "{ auditChains { chain worker } }"


def test_worker_0_writes_the_chain_of_one_process_and_each_other_worker_its_own() -> None:
    assert audit_chain(GATEWAY) == audit_chain(GATEWAY, 0) == f"gateway:{GATEWAY}"
    assert audit_chain(GATEWAY, 3) == f"gateway:{GATEWAY}/worker-3"
    with pytest.raises(ValueError, match="negative"):
        audit_chain(GATEWAY, -1)
    stored = [
        f"gateway:{GATEWAY}/worker-10",
        "node:tessera-node-fr",
        f"gateway:{GATEWAY}/worker-2",
        f"gateway:{GATEWAY}",
        f"gateway:{GATEWAY}/worker-02",  # not a worker's name
        f"gateway:{GATEWAY}/worker-0",  # worker 0 writes the plain chain
        f"gateway:{GATEWAY}-2/worker-1",  # another gateway's
        "5",
    ]
    assert gateway_chains(GATEWAY, stored) == [
        f"gateway:{GATEWAY}",
        f"gateway:{GATEWAY}/worker-2",
        f"gateway:{GATEWAY}/worker-10",
    ]
    assert [worker_of(c) for c in gateway_chains(GATEWAY, stored)] == [0, 2, 10]


@pytest.mark.parametrize(
    ("cap", "processes", "share"), [(32, 1, 32), (32, 2, 16), (33, 2, 16), (3, 4, 1), (64, 3, 21)]
)
def test_the_workers_together_hold_no_more_than_a_cap(cap: int, processes: int, share: int) -> None:
    assert worker_share(cap, processes) == share
    assert share * processes <= max(cap, processes)


@pytest.mark.parametrize("processes", [0, 65])
def test_processes_lie_between_1_and_64(settings: GatewaySettings, processes: int) -> None:
    with pytest.raises(SettingsError, match="TESSERA_GATEWAY_PROCESSES"):
        GatewaySettings.from_env(
            {"TESSERA_GATEWAY_PROCESSES": str(processes)}, federation=settings.federation
        )


@pytest.fixture
def store() -> MemoryAuditStore:
    return MemoryAuditStore()


@pytest.fixture
async def workers(
    settings: GatewaySettings, nodes: MockNodeClient, store: MemoryAuditStore
) -> AsyncIterator[list[TestClient]]:
    two = GatewaySettings.from_env(
        {"TESSERA_GATEWAY_PROCESSES": "2", "TESSERA_GATEWAY_MAX_COHORTS_PER_RESEARCHER": "5"},
        federation=settings.federation,
        deadline_s=2.0,
    )
    apps = [create_app(two, node_client=nodes, audit_store=store, worker=n) for n in range(2)]
    async with TestClient(TestServer(apps[0])) as first, TestClient(TestServer(apps[1])) as second:
        yield [first, second]


async def post(client: TestClient, query: str, token: str, **variables: Any) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def test_each_worker_writes_its_chain_and_any_worker_reads_every_chain(
    workers: list[TestClient], store: MemoryAuditStore, token: str, keys: Keys
) -> None:
    compliance = mint(keys, **{ROLES_CLAIM: [Role.COMPLIANCE.value], "approval": None})
    asked = [(await post(client, COHORT, token))["data"]["cohort"]["queryId"] for client in workers]
    asked.append((await post(workers[1], COHORT, token))["data"]["cohort"]["queryId"])
    chains = [audit_chain(GATEWAY, n) for n in range(2)]
    assert sorted(store.rows) == chains
    assert [len(store.rows[c]) for c in chains] == [1, 2]
    assert all(verify_chain(c, store.rows[c]).ok for c in chains)
    for client in workers:
        for query_id, chain in zip(asked, [chains[0], chains[1], chains[1]], strict=True):
            entry = (await post(client, ENTRY, compliance, q=query_id))["data"]["auditEntry"]
            assert (entry["chain"], entry["queryId"], entry["decision"]) == (
                chain,
                query_id,
                "ANSWERED",
            )
        listed = (await post(client, CHAINS, compliance))["data"]["auditChains"]
        assert listed == [{"chain": chains[0], "worker": 0}, {"chain": chains[1], "worker": 1}]
        page = (await post(client, ENTRIES, compliance, worker=1))["data"]["auditEntries"]
        assert [(e["chain"], e["seq"]) for e in page["entries"]] == [(chains[1], 2), (chains[1], 1)]
    refused = await post(workers[0], ENTRIES, compliance, worker=64)
    assert refused["errors"][0]["extensions"]["code"] == "INVALID_ARGUMENT"
    # A researcher reads none of it.
    denied = await post(workers[0], CHAINS, token)
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_each_worker_holds_its_share_of_the_questions_in_flight(
    workers: list[TestClient],
) -> None:
    for client in workers:
        services = client.app[STATE].services
        assert services is not None
        assert services.fair_share.per_researcher == 2  # 5 // 2


def test_a_scrape_of_any_worker_shows_every_workers_series(tmp_path: Path) -> None:
    metrics = [GatewayMetrics(), GatewayMetrics()]
    shared = [WorkerMetrics(m, tmp_path, worker=n) for n, m in enumerate(metrics)]
    metrics[0].rate_limit_refusals.add(2, {"outcome": "limited"})
    metrics[1].rate_limit_refusals.add(3, {"outcome": "limited"})
    metrics[1].audit_write.record(0.002, {"outcome": "ok"})
    shared[1].snapshot()
    metrics[0].rate_limit_refusals.add(1, {"outcome": "limited"})  # fresh in its own scrape
    text = shared[0].render().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    refusals = {
        s.labels["worker"]: s.value
        for s in families["tessera_gateway_rate_limit_refusals"].samples
        if s.name.endswith("_total")
    }
    assert refusals == {"0": 3.0, "1": 3.0}
    writes = [s for s in families["tessera_gateway_audit_write_seconds"].samples]
    assert {s.labels["worker"] for s in writes} == {"1"}
    # One HELP and one TYPE per family, however many workers report it.
    assert text.count("# TYPE tessera_gateway_rate_limit_refusals_total counter") == 1
    # A worker that has not written its series yet is not there, until it does.
    assert 'worker="0"' not in shared[1].render().decode()
    shared[0].snapshot()
    assert 'refusals_total{outcome="limited",worker="0"} 3.0' in shared[1].render().decode()
