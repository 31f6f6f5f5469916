"""The benchmark harness measures the real thing: a real gateway app (its own HTTP node client,
policies, combining) accepts the controlled-delay nodes' answers as `tessera/1`; the baseline
makes the same calls; overheads and percentiles are computed as documented. No timing is
asserted: these check what the benchmarks count, not how fast anything is."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bench.baseline import create_app as create_baseline
from bench.cluster import ALL_JURISDICTIONS, Gateway, NodePool
from bench.combine import answers, combined
from bench.connector import federation_for, synthesise
from bench.fakenode import TIMINGS_PATH, Delay, Recorder, count, node_app
from bench.fanout import overheads
from bench.gateway_cpu import measure
from bench.load import Sample, Summary, percentile
from bench.policies import RATE_LIMIT, write_policies
from bench.profile import top
from bench.protect import SITUATIONS, summarise
from bench.protect import measure as measure_protection
from bench.queries import COHORT
from bench.query_memory import OTHER, PARTS
from bench.query_memory import measure as measure_held
from bench.throughput import RATES, climb
from gateway.app import create_app
from gateway.settings import GatewaySettings
from policies.loader import load_policy_set
from schema.codes import Jurisdiction, NodeStatus, ValueStatus
from schema.wire import QUERY_PATH
from tessera.credentials import Credentials

NODES = ALL_JURISDICTIONS[:3]


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[NodePool, Recorder]]:
    """Fake nodes served in this process on the pool's ports (no delay)."""
    pool = NodePool(tmp_path / "nodes", NODES, Delay(0, 0))
    recorder = Recorder()
    runners = []
    for jurisdiction in NODES:
        runner = web.AppRunner(node_app(jurisdiction, Delay(0, 0), recorder))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", pool.ports[jurisdiction]).start()
        runners.append(runner)
    yield pool, recorder
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def gateway(
    tmp_path: Path, nodes: tuple[NodePool, Recorder]
) -> AsyncIterator[tuple[TestClient, Credentials]]:
    pool, _ = nodes
    bench_gateway = Gateway(tmp_path / "gateway", pool, NODES)
    settings = GatewaySettings.from_env(
        {"TESSERA_GATEWAY_POLICIES": str(tmp_path / "gateway" / "policies")},
        federation=bench_gateway.federation.federation_file,
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client, bench_gateway.token


async def test_the_gateway_accepts_the_fake_nodes_answers(
    gateway: tuple[TestClient, Credentials], nodes: tuple[NodePool, Recorder]
) -> None:
    client, token = gateway
    _, recorder = nodes
    response = await client.post("/graphql", json={"query": COHORT}, headers=token.headers())
    answer = await response.json()
    assert "errors" not in answer, answer
    cohort = answer["data"]["cohort"]
    assert [n["status"] for n in cohort["byJurisdiction"]] == ["OK"] * len(NODES)
    # The pooled count is the sum of what each fake node released for the total table.
    assert cohort["count"]["value"] == sum(count(j.value, ()) for j in NODES)
    cells = cohort["breakdown"]["cells"]
    # Every cell of the public domain: the criteria's sex × its three 10-year bands.
    assert len(cells) == 3
    # Every node recorded its own time under the query id the gateway answered with.
    assert set(recorder.timings[cohort["queryId"]]) == {j.value for j in NODES}


def test_every_members_totals_pool_into_a_graphql_int() -> None:
    # The largest pooled count the fan-out benchmark asks for: every member's total. Past
    # 2^31 - 1 GraphQL cannot return it, and every 30-node query would fail.
    largest = sum(count(j.value, ()) for j in ALL_JURISDICTIONS)
    assert largest < 2**31


async def test_the_baseline_makes_one_call_per_node_and_sums_the_totals(
    nodes: tuple[NodePool, Recorder],
) -> None:
    pool, recorder = nodes
    app = create_baseline([(j.value, pool.url(j)) for j in NODES])
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/fanout", data=b"{}")
        answer = await response.json()
    assert answer["count"] == sum(count(j.value, ()) for j in NODES)
    assert set(recorder.timings[answer["queryId"]]) == {j.value for j in NODES}


async def test_a_fake_node_refuses_what_a_connector_would_refuse(
    nodes: tuple[NodePool, Recorder],
) -> None:
    pool, recorder = nodes
    url = pool.url(NODES[0]) + QUERY_PATH
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=b"{}") as unsigned:
            assert unsigned.status == 401
        headers = {"Authorization": "Bearer x", "X-Tessera-Approval": "y"}
        async with session.post(url, data=b"not json", headers=headers) as malformed:
            assert malformed.status == 400
            assert (await malformed.json())["code"] == "BAD_REQUEST"
        async with session.get(pool.url(NODES[0]) + TIMINGS_PATH) as timings:
            assert orjson.loads(await timings.read()) == {}
    assert recorder.answered == 0


def test_bench_policies_cover_every_member_with_rate_limits_raised(tmp_path: Path) -> None:
    directory = write_policies(tmp_path, ALL_JURISDICTIONS)
    policies = load_policy_set(directory)
    assert set(policies.jurisdictions) == set(Jurisdiction)
    for jurisdiction in (Jurisdiction.FR, Jurisdiction.PL):  # shipped, and a copy
        effective = policies.effective(jurisdiction)
        assert effective.per_researcher_per_minute == RATE_LIMIT
        assert effective.per_approval_per_day == RATE_LIMIT
    # A shipped layer keeps its own disclosure rules.
    assert policies.profile(Jurisdiction.FR) == load_policy_set().profile(Jurisdiction.FR)


def test_overhead_is_latency_minus_the_slowest_nodes_own_time() -> None:
    samples = [
        Sample(50.0, "q1"),
        Sample(40.0, "q2"),
        Sample(99.0, None, "RuntimeError: HTTP 500"),
        Sample(30.0, "q3"),  # one node never reported: not a valid sample
    ]
    timings = {"q1": {"FR": 20.0, "DE": 45.0}, "q2": {"FR": 38.0, "DE": 10.0}, "q3": {"FR": 1.0}}
    result = overheads(samples, timings, nodes=2)
    assert result.overhead.n == 2
    assert result.overhead.errors == 2
    assert sorted([result.overhead.p50, result.overhead.p99]) == [2.0, 5.0]
    assert result.slowest.p99 == 45.0


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    summary = Summary.of([3.0, 1.0, 2.0], errors=1)
    assert (summary.n, summary.errors, summary.p50, summary.mean) == (3, 1, 2.0, 2.0)


def test_delay_parses_a_range() -> None:
    assert Delay.parse("20:50") == Delay(20.0, 50.0)
    assert Delay.parse("5") == Delay(5.0, 5.0)
    with pytest.raises(ValueError, match="LOW:HIGH"):
        Delay.parse("50:20")


def test_profile_top_counts_own_and_total_samples(tmp_path: Path) -> None:
    collapsed = tmp_path / "stacks.txt"
    collapsed.write_text("main;handle;parse 3\nmain;handle;combine 5\nmain;idle 2\n")
    lines: list[Any] = top(collapsed).splitlines()
    assert lines[0] == "10 samples"
    assert " 50.0    50.0  combine" in lines
    assert "  0.0    80.0  handle" in lines


async def test_the_cpu_benchmark_runs_real_queries_through_the_real_app() -> None:
    # `measure` raises when any query comes back with an error; here every query of the
    # cohort shape (policy, signing, vetting, combining, audit) has to succeed.
    cpu_ms, wall_ms = await measure(2, 20, COHORT, None, tracing=True)
    assert cpu_ms > 0
    assert wall_ms > 0


@pytest.mark.parametrize(
    ("limit", "held", "tried"),
    [
        (73, 62, [10, 25, 50, 100, 75, 62]),  # the gap 50..100 halved twice
        (5, 5, [10, 5, 7]),  # below the first rate: the gap 0..10
        (5000, 2000, list(RATES)),  # the whole ladder held: nothing to refine
    ],
)
async def test_the_throughput_climb_refines_the_first_failure(
    limit: int, held: int, tried: list[int]
) -> None:
    seen: list[int] = []

    async def holds(rate: int) -> bool:
        seen.append(rate)
        return rate <= limit

    assert await climb(RATES, holds) == held
    assert seen == tried


def test_protection_is_ledger_plus_protect_over_the_question_s_unprotected_sql() -> None:
    def steps(ledger: float, protect: float, sql: float, unprotected: float) -> dict[str, float]:
        return {
            "population": 50.0,
            "ledger": ledger,
            "protect": protect,
            "sql": sql,
            "unprotected": unprotected,
        }

    rows = summarise(
        {
            "cohort": {
                "fresh": [steps(2, 8, 100, 200), steps(1, 4, 200, 200), steps(3, 7, 50, 50)],
                "again": [steps(1, 1, 0, 100), steps(1, 2, 0, 100), steps(2, 2, 0, 100)],
            }
        }
    )
    fresh, again = rows
    # Medians of 0.05, 0.025 and 0.2.
    assert (fresh.situation, fresh.ratio) == ("fresh", 0.05)
    # Every step beyond the unprotected statement: 160/200, 255/200 and 110/50, less one.
    assert fresh.added == pytest.approx(255 / 200 - 1)
    assert fresh.steps == {
        "population": 50.0,
        "ledger": 2.0,
        "protect": 7.0,
        "sql": 100.0,
        "unprotected": 200.0,
    }
    assert again.ratio == pytest.approx(3 / 100)
    # No sql when the answer store serves the question: against the fresh question's sql.
    assert fresh.of_sql == 0.1
    assert again.of_sql == pytest.approx(3 / 100)


async def test_the_protection_benchmark_asks_a_real_connector_in_each_situation(
    tmp_path: Path,
) -> None:
    fed = federation_for(tmp_path / "cache", 2000)
    synthesise(fed)
    times = await measure_protection(fed, tmp_path / "work", reps=1, cohorts=["E11 2015-2025"])
    situations = times["E11 2015-2025"]
    assert set(situations) == set(SITUATIONS)
    for situation, (steps,) in situations.items():
        assert steps["population"] > 0
        assert steps["protect"] > 0
        assert steps["unprotected"] > 0
        # Only a stored answer skips the database's tables.
        assert (steps["sql"] == 0) == (situation == "again")


def test_the_combining_benchmark_combines_honest_full_domain_answers_with_low_cells() -> None:
    policies = load_policy_set()
    answered = answers(3, policies)
    assert [o.status for o in answered.outcomes] == [NodeStatus.OK] * 3
    values = [
        v
        for o in answered.outcomes
        for tables in o.measures.values()
        for cells in tables.values()
        for v in cells.values()
    ]
    assert answered.cells == len(values) == 3 * 370
    assert {v.status for v in values} == {ValueStatus.LOW, ValueStatus.PERTURBED}
    combined(answered, policies)  # raises if vetting rejected an answer


async def test_the_memory_probe_parks_every_question_and_splits_what_they_hold() -> None:
    # Raises unless every question reaches its last node; the answers already in are parsed
    # models, the open spans opentelemetry's.
    held = await measure_held(6, 3, 1000)
    assert held.queries == 6
    assert held.parts["pydantic (node answers, request models)"] > 0
    assert held.parts["spans (opentelemetry)"] > 0
    assert set(held.parts) <= {part for part, _ in PARTS} | {OTHER}
    assert held.objects["coroutine"] >= 6
