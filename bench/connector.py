"""Connector: a real connector's answer time against DuckDB running the same SQL, raw.

End to end is what the gateway waits for: a signed `tessera/1` request sent with the gateway's
own node client (`gateway.nodes.HttpNodeClient`) to a `tessera connector serve` process, which
verifies it, decides, compiles, resolves codes, runs the query, protects and answers. Raw is
the connector's compiled statement (same SQL, same bound parameters) executed on a DuckDB
connection of the benchmark's own, read-only, with codes resolved beforehand. The two
alternate query by query, after a warm-up of each.

Synthetic databases are generated once under `.tessera/bench/` and reused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import duckdb

from bench.report import Figure, Report, goal_at_most, table
from connectors.compiler import (
    DUCKDB,
    CompiledQuery,
    ConceptResolver,
    Row,
    Statement,
    compile_query,
)
from gateway.federation import load_federation
from gateway.nodes import HttpNodeClient, create_session
from schema.codes import Dimension, Jurisdiction, NodeStatus
from schema.query import CohortQuery
from schema.wire import NodeRequest
from tessera.local import LocalFederation
from tessera.processes import free_port
from trust.request_token import RequestSigner

JURISDICTION: Final = Jurisdiction.FR
RATIO_GOAL: Final = 1.25
GOAL_PERSONS: Final = 10_000_000
REFERENCE: Final = dt.date(2026, 1, 1)
SEED: Final = 42

QUERIES: Final[dict[str, dict[str, Any]]] = {
    "count": {
        "criteria": {"conditions": [{"vocabulary": "ICD10", "code": "E11", "descendants": False}]},
        "tables": [()],
    },
    "2-dimension breakdown": {
        "criteria": {"age": {"min": 18}},
        "tables": [(), (Dimension.SEX, Dimension.AGE_BAND_10)],
    },
    "breakdown, code descendants": {
        "criteria": {"conditions": [{"vocabulary": "ICD10", "code": "E11", "descendants": True}]},
        "tables": [(), (Dimension.SEX, Dimension.AGE_BAND_10)],
    },
}


def cohort(shape: dict[str, Any]) -> CohortQuery:
    return CohortQuery.model_validate({**shape, "reference_date": REFERENCE})


@dataclass
class SynthTiming:
    persons: int
    seconds: float
    fresh: bool  # generated in this run (else the time recorded when it was)


def synthesise(federation: LocalFederation) -> SynthTiming:
    """The node's database, generated unless present; the time its generation took."""
    timing = federation.database(JURISDICTION).with_suffix(".seconds.json")
    database = federation.database(JURISDICTION)
    fresh = not (database.exists() and timing.exists())
    started = time.perf_counter()
    federation.synthesise(JURISDICTION, progress=True)
    if fresh or not timing.exists():
        seconds = time.perf_counter() - started
        timing.write_text(json.dumps({"persons": federation.persons, "seconds": seconds}))
        return SynthTiming(federation.persons, seconds, True)
    recorded = json.loads(timing.read_text())
    return SynthTiming(federation.persons, float(recorded["seconds"]), False)


class RawDuckDB:
    """The benchmark's own read-only connection, and the connector's compiler and resolver."""

    def __init__(self, path: Path) -> None:
        self.con = duckdb.connect(str(path), read_only=True)
        self.resolver = ConceptResolver(self._execute, dialect=DUCKDB)

    async def _execute(self, statement: Statement) -> list[Row]:
        rows: list[Row] = self.con.execute(statement.sql, list(statement.params)).fetchall()
        return rows

    async def bound(self, query: CohortQuery) -> CompiledQuery:
        return await self.resolver.bind(compile_query(query, dialect=DUCKDB))

    def run(self, statement: CompiledQuery) -> float:
        started = time.perf_counter()
        self.con.execute(statement.sql, list(statement.params)).fetchall()
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self.con.close()


async def measure(federation: LocalFederation, *, reps: int) -> dict[str, dict[str, list[float]]]:
    fed = federation
    fed.write_federation()
    # The gateway's own view of the node and its own signing key, as a gateway loads them.
    gateway = load_federation(fed.federation_file)
    node = gateway.nodes[JURISDICTION]
    signer = RequestSigner(
        issuer=gateway.gateway_id, kid=gateway.signing_kid, key=gateway.signing_key
    )
    # The node's own HDAB's permit, as the gateway forwards it.
    approval = fed.permit_approval(JURISDICTION)
    token = fed.permit(JURISDICTION, approval)
    raw = RawDuckDB(fed.database(JURISDICTION))
    times: dict[str, dict[str, list[float]]] = {}
    service = fed.connector_service(JURISDICTION)
    fed.supervisor.add(service)
    try:
        await fed.supervisor.start_all(timeout_s=120)
        async with create_session() as session:
            client = HttpNodeClient(session, signer)

            async def end_to_end(query: CohortQuery) -> tuple[float, float]:
                """The time the gateway waited, and the connector's own time (its answer's
                `elapsed_ms`: from its handler's start to the answer's construction)."""
                request = NodeRequest(
                    query_id=f"bench-{time.perf_counter_ns()}",
                    request_id=approval.request_id,
                    jurisdiction=JURISDICTION,
                    query=query,
                    approval=approval,
                    subject="researcher@bench.tessera.eu",
                )
                started = time.perf_counter()
                outcome = await client.query(node, request, approval_token=token, timeout=600)
                elapsed = (time.perf_counter() - started) * 1000
                if outcome.status is not NodeStatus.OK or outcome.response is None:
                    raise RuntimeError(f"connector answered {outcome.status}: {outcome.message}")
                return elapsed, outcome.response.elapsed_ms

            for name, shape in QUERIES.items():
                query = cohort(shape)
                statement = await raw.bound(query)
                for _ in range(2):  # warm-up: caches, buffer pools, connections
                    raw.run(statement)
                    await end_to_end(query)
                both: dict[str, list[float]] = {"raw": [], "end_to_end": [], "connector": []}
                for _ in range(reps):
                    both["raw"].append(await asyncio.to_thread(raw.run, statement))
                    waited, own = await end_to_end(query)
                    both["end_to_end"].append(waited)
                    both["connector"].append(own)
                times[name] = both
    finally:
        raw.close()
        fed.supervisor.stop_all()
    return times


def federation_for(cache: Path, persons: int) -> LocalFederation:
    fed = LocalFederation(
        directory=cache / f"connector-{persons}",
        jurisdictions=[JURISDICTION],
        persons=persons,
        seed=SEED,
        gateway_port=free_port(),
        node_ports=[free_port()],
        console=False,
    )
    fed.prepare_keys()
    return fed


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


async def run(
    report: Report, cache: Path, *, sizes: Sequence[int] = (1_000_000,), reps: int = 9
) -> dict[int, SynthTiming]:
    report.section(
        "3. Connector: end-to-end answer against raw DuckDB on the same SQL "
        f"({JURISDICTION.value} synthetic persons; {reps} alternating runs: medians, and the "
        "median ratio of each end-to-end run to the raw run before it)"
    )
    rows = [["persons", "query", "raw ms", "connector ms", "end-to-end ms", "paired ratio"]]
    synth: dict[int, SynthTiming] = {}
    results: list[dict[str, Any]] = []
    for persons in sizes:
        fed = federation_for(cache, persons)
        synth[persons] = await asyncio.to_thread(synthesise, fed)
        times = await measure(fed, reps=reps)
        for name, both in times.items():
            raw, e2e, own = (median(both[k]) for k in ("raw", "end_to_end", "connector"))
            # Each end-to-end run against the raw run just before it: neighbours in time share
            # the machine's load, so their ratio is steadier than a ratio of medians.
            paired = median([e / r for e, r in zip(both["end_to_end"], both["raw"], strict=True)])
            rows.append(
                [f"{persons:,}", name, f"{raw:.1f}", f"{own:.1f}", f"{e2e:.1f}", f"{paired:.2f}"]
            )
            results.append({"persons": persons, "query": name, **both})
            at_goal_size = persons >= GOAL_PERSONS
            report.add(
                Figure(
                    f"connector / raw, {name}, {persons / 1e6:g}M",
                    paired,
                    "×",
                    f"≤ {RATIO_GOAL:g}×" if at_goal_size else "",
                    goal_at_most(paired, RATIO_GOAL) if at_goal_size else None,
                    f"raw {raw:.1f} ms, connector's own {own:.1f} ms, end to end {e2e:.1f} ms",
                )
            )
    print(table(rows))
    report.data["connector"] = results
    return synth
