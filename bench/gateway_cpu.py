"""The gateway's own CPU per query, in one process: `python -m bench.gateway_cpu --nodes 5`.

The real gateway app (`gateway.app.create_app`: GraphQL, authentication, policy, signing,
disclosure control, vetting, audit trail, tracing with a batch span processor) on a loopback
test server, with a node client that answers at once with what the controlled-delay nodes
answer (`bench.fakenode.tables`), so no other process shares the machine's cores and
what is measured is the gateway's work alone. Queries run one after another; the figure is
process CPU time per query. `--profile FILE` writes a cProfile of the measured queries
(`python -m pstats FILE`, or `--top N` prints the N costliest functions).

The node client is the only stand-in: the HTTP client's own cost per node call is measured by
the fan-out and throughput benchmarks, which use real nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import math
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench import combine
from bench.cluster import ALL_JURISDICTIONS, python_env
from bench.fakenode import tables
from bench.policies import write_policies
from bench.queries import (
    COHORT,
    COHORT_21,
    COHORT_21_COLUMNS,
    COHORT_COLUMNS,
    COHORT_FULL,
    COHORT_FULL_COLUMNS,
    COUNT,
    WIDE,
    WIDE_COLUMNS,
)
from bench.report import Figure, Report, goal_at_most, table
from bench.traced import install
from gateway.app import create_app
from gateway.federation import NodeInfo
from gateway.nodes import NodeClient, NodeOutcome, encode_request, interpret
from gateway.question_token import take_signed
from gateway.settings import GatewaySettings
from schema.codes import NodeStatus
from schema.wire import NodeRequest
from serving.run import freeze_heap
from tessera.local import LocalFederation
from tessera.processes import free_port
from trust.request_token import RequestSigner

BLOCKS: Final = 10
QUERIES: Final = {
    "cohort": COHORT,
    # The same table as columns, and both with every field of each number (what the client
    # reads).
    "cohort-columns": COHORT_COLUMNS,
    # A table of 21 cells per node (`cohort`'s has 3).
    "cohort-21": COHORT_21,
    "cohort-21-columns": COHORT_21_COLUMNS,
    "cohort-full": COHORT_FULL,
    "cohort-full-columns": COHORT_FULL_COLUMNS,
    # The client's shape: two tables of their whole domains (42 and 14 per node).
    "wide": WIDE,
    "wide-columns": WIDE_COLUMNS,
    "count": COUNT,
    # The floor: HTTP both ways and a GraphQL operation that does nothing.
    "typename": "{ __typename }",
}


class InstantNodes:
    """A `NodeClient` that does what `HttpNodeClient` does but the socket: encodes and signs
    each request and checks the answer's bytes with `gateway.nodes.interpret`. Answers are
    what `bench.fakenode` would send, encoded once per shape (only the query id changes)."""

    def __init__(self, signer: RequestSigner) -> None:
        self._signer = signer
        self._answers: dict[tuple[str, bytes], bytes] = {}

    async def query(
        self,
        node: NodeInfo,
        request: NodeRequest,
        *,
        approval_token: str,
        timeout: float,  # noqa: ASYNC109 - the protocol's signature
    ) -> NodeOutcome:
        signed = take_signed(self._signer, node.node_id, request, encode_request)
        if signed is None:
            self._signer.sign(encode_request(request), audience=node.node_id)
        j = node.jurisdiction.value
        shape = request.query.model_dump_json().encode()
        template = self._answers.get((j, shape))
        if template is None:
            template = self._answers[(j, shape)] = orjson.dumps(
                {
                    "query_id": QUERY_ID_SLOT,
                    "jurisdiction": j,
                    "status": NodeStatus.OK.value,
                    "elapsed_ms": 0.1,
                    "tables": tables(j, request.query),
                }
            )
        answer = template.replace(QUERY_ID_SLOT.encode(), request.query_id.encode(), 1)
        return interpret(node, request, 200, answer, 0.1)


QUERY_ID_SLOT = "00000000-0000-0000-0000-000000000000"


@contextlib.asynccontextmanager
async def gateway(
    nodes: int,
    tracing: bool,
    *,
    node_client: Callable[[RequestSigner], NodeClient] = InstantNodes,
    overrides: Mapping[str, Any] | None = None,
) -> AsyncIterator[Callable[[str], Awaitable[dict[str, Any]]]]:
    """The real gateway app over `nodes` instant nodes (or `node_client`'s), with the settings
    `overrides` over the defaults, on a loopback test server: yields a function that asks it
    one query and returns the response's body (raising on an error)."""
    workdir = Path(tempfile.mkdtemp(prefix="tessera-gateway-cpu-"))
    try:
        jurisdictions = ALL_JURISDICTIONS[:nodes]
        fed = LocalFederation(
            directory=workdir,
            jurisdictions=jurisdictions,
            persons=0,
            gateway_port=free_port(),
            node_ports=[free_port() for _ in jurisdictions],
            console=False,
            pooling=False,  # fake nodes: no pooling keys
        )
        fed.prepare_keys()
        fed.write_federation()
        credentials = fed.credentials()
        settings = GatewaySettings.from_env(
            {},
            federation=fed.federation_file,
            policies=write_policies(workdir / "policies", jurisdictions),
            audit_db=str(workdir / "audit.sqlite3"),
            **(overrides or {}),
        )
        provider = install() if tracing else None
        app = create_app(
            settings,
            node_client=node_client(
                RequestSigner(issuer="bench", kid="bench", key=Ed25519PrivateKey.generate())
            ),
            tracer_provider=provider,
        )
        headers = credentials.headers()
        async with TestClient(TestServer(app)) as client:
            freeze_heap()  # as `serving.run.serve_app` does once the app is built

            async def ask(query: str) -> dict[str, Any]:
                response = await client.post("/graphql", json={"query": query}, headers=headers)
                body: dict[str, Any] = await response.json()
                if response.status != 200 or body.get("errors"):
                    raise RuntimeError(f"query failed: {body}")
                return body

            yield ask
        if provider is not None:
            provider.shutdown()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def measure(
    nodes: int, queries: int, query: str, profile: Path | None, tracing: bool
) -> tuple[float, float]:
    """(CPU ms per query, wall ms per query) of the quietest of `BLOCKS` blocks of
    sequential queries, `queries` in all."""
    async with gateway(nodes, tracing) as ask:
        for _ in range(20):  # warm caches, connections, the audit store
            await ask(query)
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        blocks: list[tuple[float, float]] = []
        per_block = max(1, queries // BLOCKS)
        for _ in range(BLOCKS):
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(per_block):
                await ask(query)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            blocks.append((1000 * cpu / per_block, 1000 * wall / per_block))
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)  # type: ignore[arg-type]
    # The quietest block: on a shared machine, others' work only ever adds.
    return min(blocks)


async def side_by_side(
    names: Sequence[str], nodes: int, queries: int, tracing: bool
) -> dict[str, list[float]]:
    """CPU ms per query of each query in blocks of `SIDE_BY_SIDE_BLOCK`, interleaved in one
    gateway process (cells, columns, cells, ...): a shared machine's load weighs on all of
    them alike. `queries` of each in all."""
    found: dict[str, list[float]] = {n: [] for n in names}
    async with gateway(nodes, tracing) as ask:
        for name in names:
            for _ in range(20):
                await ask(QUERIES[name])
        for _ in range(max(1, queries // SIDE_BY_SIDE_BLOCK)):
            for name in names:
                cpu = time.process_time()
                for _ in range(SIDE_BY_SIDE_BLOCK):
                    await ask(QUERIES[name])
                found[name].append(1000 * (time.process_time() - cpu) / SIDE_BY_SIDE_BLOCK)
    return found


SIDE_BY_SIDE_BLOCK: Final = 20


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_cpu", description=__doc__)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--query", choices=sorted(QUERIES), default="cohort")
    parser.add_argument("--no-tracing", action="store_true")
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--top", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.add_argument(
        "--compare",
        help="queries to measure side by side (comma-separated, e.g. cohort,cohort-columns): "
        f"in one process, in blocks of {SIDE_BY_SIDE_BLOCK} alternating, --queries of each",
    )
    args = parser.parse_args(argv)
    if args.compare:
        names = [n.strip() for n in args.compare.split(",")]
        unknown = [n for n in names if n not in QUERIES]
        if unknown:
            parser.error(f"unknown queries {unknown} (known: {sorted(QUERIES)})")
        compare(names, args.nodes, args.queries, tracing=not args.no_tracing)
        return 0
    cpu, wall = asyncio.run(
        measure(args.nodes, args.queries, QUERIES[args.query], args.profile, not args.no_tracing)
    )
    if args.json:
        print(orjson.dumps({"cpu_ms": cpu, "wall_ms": wall}).decode())
        return 0
    print(
        f"{args.query}, {args.nodes} nodes: gateway CPU {cpu:.2f} ms/query, "
        f"wall {wall:.2f} ms/query (client included)"
    )
    if args.profile and args.top:
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(args.top)
    return 0


def compare(names: Sequence[str], nodes: int, queries: int, *, tracing: bool) -> None:
    """Prints each query's CPU per query, side by side in one process: the minimum, the
    lower quartile and the median of its blocks."""
    found = asyncio.run(side_by_side(names, nodes, queries, tracing))
    first = min(found[names[0]])
    rows = [["query", "nodes", "min ms", "q1 ms", "median ms", "min × first"]]
    for name in names:
        q1, median, _ = statistics.quantiles(found[name], n=4)
        rows.append(
            [
                name,
                str(nodes),
                f"{min(found[name]):.2f}",
                f"{q1:.2f}",
                f"{median:.2f}",
                f"{min(found[name]) / first:.2f}",
            ]
        )
    print(table(rows))
    print(f"load average {os.getloadavg()[0]:.1f}; {len(found[names[0]])} blocks each")


if __name__ == "__main__":
    sys.exit(main())


# (query, nodes) measured by `python -m bench` (section 0), the floor first.
SHAPES: Final = (
    ("typename", 1),
    ("count", 1),
    ("cohort", 1),
    ("count", 5),
    ("cohort", 5),
    ("cohort-columns", 5),
    ("cohort-21", 5),
    ("cohort-21-columns", 5),
    ("cohort", 30),
)


async def run(report: Report, *, queries: int, tracing: bool) -> None:
    """Each shape in a fresh process of its own, one after another."""
    report.section(
        "0. Gateway CPU per query, in one process (real app, nodes answer at once in-process; "
        f"quietest of {BLOCKS} blocks; tracing {'on' if tracing else 'off'})"
    )
    rows = [["query", "nodes", "CPU ms/query", "× floor"]]
    results: list[dict[str, object]] = []
    floor = math.nan
    for query, nodes in SHAPES:
        args = ["--nodes", str(nodes), "--query", query, "--queries", str(queries), "--json"]
        if not tracing:
            args.append("--no-tracing")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.gateway_cpu",
            *args,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, **python_env()},
        )
        out, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"bench.gateway_cpu {' '.join(args)} failed")
        cpu = float(orjson.loads(out)["cpu_ms"])
        if query == "typename":
            floor = cpu
        rows.append([query, str(nodes), f"{cpu:.2f}", f"{cpu / floor:.1f}"])
        results.append({"query": query, "nodes": nodes, "cpu_ms": cpu})
        report.add(
            Figure(
                f"gateway CPU, {query}, {nodes} node{'s' if nodes > 1 else ''}",
                cpu,
                "ms",
                detail=f"{cpu / floor:.1f}× the floor ({{ __typename }}: {floor:.2f} ms)",
            )
        )
    print(table(rows))
    report.data["gateway_cpu"] = results
    cpu, cells = await asyncio.to_thread(combine.measure, 5, queries)
    report.add(
        Figure(
            "gateway vet + combine + guard, 5 nodes × 5 tables",
            cpu,
            "ms",
            f"≤ {combine.GOAL_MS:g} ms",
            goal_at_most(cpu, combine.GOAL_MS),
            f"CPU per query, {cells:,} node cells over full domains (bench/combine.py)",
        )
    )
    report.data["gateway_combine"] = {"nodes": 5, "cells": cells, "cpu_ms": cpu}
