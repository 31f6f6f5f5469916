"""Fan-out overhead: what the gateway adds on top of its slowest node.

For each node count, a real gateway and the bare baseline (`bench.baseline`) ask the same
controlled-delay nodes (`bench.fakenode`, 20–50 ms by default). Per query, the overhead is the
end-to-end latency the client saw minus the slowest node's own time for that query (each node
reports it by query id). Both are measured in the same run, in alternating blocks, at
concurrency 1 and under an open-loop load.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.cluster import ALL_JURISDICTIONS, Baseline, Cluster, Gateway, NodePool, cpu_seconds
from bench.fakenode import Delay
from bench.load import (
    Sample,
    Send,
    Summary,
    baseline_sender,
    client_session,
    closed_loop,
    graphql_sender,
    open_loop,
)
from bench.queries import COHORT
from bench.report import Figure, Report, goal_at_most, ratio, table

# Median overhead goals by node count (ms); between them, the goal of the next larger count.
MEDIAN_GOALS_MS = {5: 3.0, 30: 8.0}
BASELINE_RATIO_GOAL = 1.5
DELAY = Delay(20, 50)
# "Under load": queries arrive at this fixed rate (a few in flight at once), fewer per second
# when the node requests would pass NODE_BUDGET per second: the fake nodes, the load generator
# and the gateway share the machine's 2 cores (and other people's work).
LOAD_RATE = 50.0
NODE_BUDGET = 750.0
TAIL_RATIO_GOAL = 3.0


@dataclass(frozen=True, slots=True)
class Overheads:
    """Per-query overheads (ms) of one target in one phase, and the slowest nodes' own times."""

    overhead: Summary
    slowest: Summary
    latency: Summary

    def as_dict(self) -> dict[str, Any]:
        return {
            "overhead": self.overhead.as_dict(),
            "slowest": self.slowest.as_dict(),
            "latency": self.latency.as_dict(),
        }


def overheads(
    samples: Sequence[Sample], timings: dict[str, dict[str, float]], nodes: int
) -> Overheads:
    over, slowest, latency = [], [], []
    errors = 0
    for sample in samples:
        own = timings.get(sample.query_id or "", {})
        if not sample.ok or len(own) != nodes:
            errors += 1
            continue
        worst = max(own.values())
        over.append(sample.latency_ms - worst)
        slowest.append(worst)
        latency.append(sample.latency_ms)
    return Overheads(Summary.of(over, errors), Summary.of(slowest), Summary.of(latency, errors))


def load_rate(nodes: int, rate: float, node_budget: float) -> float:
    """The open-loop rate for `nodes`: `rate` queries/s, fewer when the node requests it
    makes would exceed `node_budget` per second (the fake nodes share the same 2 cores)."""
    return min(rate, node_budget / nodes)


async def _alternate(
    session: aiohttp.ClientSession,
    senders: dict[str, tuple[Send, int]],
    *,
    blocks: int,
    queries: int | None = None,
    rate: float | None = None,
    duration_s: float | None = None,
) -> tuple[dict[str, list[Sample]], dict[str, float]]:
    """Each sender in turn, `blocks` times: `queries` at concurrency 1, or open loop. Also
    the CPU time each target's process (by pid) used per query."""
    out: dict[str, list[Sample]] = {name: [] for name in senders}
    cpu: dict[str, float] = dict.fromkeys(senders, 0.0)
    for _ in range(blocks):
        for name, (send, pid) in senders.items():
            before = cpu_seconds(pid)
            if rate is not None and duration_s is not None:
                out[name] += await open_loop(
                    session, send, rate=rate, duration_s=duration_s / blocks
                )
            else:
                assert queries is not None
                out[name] += await closed_loop(session, send, queries=max(1, queries // blocks))
            cpu[name] += cpu_seconds(pid) - before
    return out, {name: 1000 * cpu[name] / max(1, len(out[name])) for name in senders}


async def run(
    report: Report,
    workdir: Path,
    *,
    node_counts: Sequence[int] = (1, 5, 10, 30),
    queries: int = 150,
    rate: float = LOAD_RATE,
    node_budget: float = NODE_BUDGET,
    duration_s: float = 8.0,
    delay: Delay = DELAY,
    tracing: bool = True,
    gateway_env: dict[str, str] | None = None,
) -> None:
    report.section(
        f"1. Fan-out overhead over the slowest node (nodes answer in {delay.low_ms:g}–"
        f"{delay.high_ms:g} ms; tracing {'on' if tracing else 'off'})"
    )
    jurisdictions = ALL_JURISDICTIONS[: max(node_counts)]
    pool = NodePool(workdir / "nodes", jurisdictions, delay)
    gateways = {
        n: Gateway(
            workdir / f"gateway-{n}",
            pool,
            jurisdictions[:n],
            tracing=tracing,
            env=gateway_env or {},
        )
        for n in node_counts
    }
    baselines = {
        n: Baseline(workdir / f"baseline-{n}", pool, jurisdictions[:n]) for n in node_counts
    }
    cluster = Cluster()
    cluster.add(*pool.services, *(g.service for g in gateways.values()))
    cluster.add(*(b.service for b in baselines.values()))
    rows = [
        [
            "nodes",
            "load",
            "gateway p50",
            "p99",
            "baseline p50",
            "p99",
            "slowest p50",
            "ratio",
            "CPU ms/query gateway",
            "baseline",
        ]
    ]
    results: list[dict[str, Any]] = []
    async with cluster, client_session() as session:
        for n in node_counts:
            senders = {
                "gateway": (
                    graphql_sender(gateways[n].url, gateways[n].token, COHORT),
                    gateways[n].pid,
                ),
                "baseline": (baseline_sender(baselines[n].url), baselines[n].pid),
            }
            await _alternate(session, senders, blocks=1, queries=20)  # warm-up
            phases: list[tuple[str, dict[str, Any]]] = [
                ("c=1", {"queries": queries}),
                (
                    f"{load_rate(n, rate, node_budget):g}/s",
                    {"rate": load_rate(n, rate, node_budget), "duration_s": duration_s},
                ),
            ]
            for label, how in phases:
                await pool.forget(session)
                samples, cpu_ms = await _alternate(session, senders, blocks=4, **how)
                timings = await pool.timings(session)
                gw = overheads(samples["gateway"], timings, n)
                bl = overheads(samples["baseline"], timings, n)
                results.append(
                    {
                        "nodes": n,
                        "load": label,
                        "gateway": {**gw.as_dict(), "cpu_ms_per_query": cpu_ms["gateway"]},
                        "baseline": {**bl.as_dict(), "cpu_ms_per_query": cpu_ms["baseline"]},
                    }
                )
                rows.append(
                    [
                        str(n),
                        label,
                        f"{gw.overhead.p50:.2f}",
                        f"{gw.overhead.p99:.2f}",
                        f"{bl.overhead.p50:.2f}",
                        f"{bl.overhead.p99:.2f}",
                        f"{gw.slowest.p50:.1f}",
                        f"{ratio(gw.overhead.p50, bl.overhead.p50):.2f}",
                        f"{cpu_ms['gateway']:.2f}",
                        f"{cpu_ms['baseline']:.2f}",
                    ]
                )
                _figures(report, n, label, gw, bl, cpu_ms)
    print(table(rows))
    report.data["fanout"] = {
        "delay_ms": [delay.low_ms, delay.high_ms],
        "tracing": tracing,
        "gateway_env": sorted(gateway_env or {}),
        "results": results,
    }


def _median_goal(nodes: int) -> float | None:
    larger = [n for n in MEDIAN_GOALS_MS if n >= nodes]
    return MEDIAN_GOALS_MS[min(larger)] if larger else None


def _figures(
    report: Report, n: int, label: str, gw: Overheads, bl: Overheads, cpu_ms: dict[str, float]
) -> None:
    where = f"{n} node{'s' if n > 1 else ''}, {label}"
    errors = gw.overhead.errors + bl.overhead.errors
    detail = (
        f"baseline {bl.overhead.p50:.2f} ms; slowest node {gw.slowest.p50:.1f} ms median; CPU "
        f"per query {cpu_ms['gateway']:.2f} ms (baseline {cpu_ms['baseline']:.2f})"
    )
    if errors:
        detail += f"; {gw.overhead.errors} gateway and {bl.overhead.errors} baseline errors"
    goal = _median_goal(n)
    report.add(
        Figure(
            f"overhead median, {where}",
            gw.overhead.p50,
            "ms",
            f"≤ {goal:g} ms" if goal is not None else "",
            goal_at_most(gw.overhead.p50, goal) and not errors if goal is not None else None,
            detail,
        ),
        Figure(
            f"  ratio to bare baseline, {where}",
            ratio(gw.overhead.p50, bl.overhead.p50),
            "×",
            f"≤ {BASELINE_RATIO_GOAL:g}×",
            goal_at_most(ratio(gw.overhead.p50, bl.overhead.p50), BASELINE_RATIO_GOAL),
        ),
        Figure(
            f"  p99 / median, {where}",
            ratio(gw.overhead.p99, gw.overhead.p50) if gw.overhead.p50 > 0 else math.nan,
            "×",
            f"≤ {TAIL_RATIO_GOAL:g}×",
            goal_at_most(ratio(gw.overhead.p99, gw.overhead.p50), TAIL_RATIO_GOAL),
            f"p99 {gw.overhead.p99:.2f} ms (baseline p99 {bl.overhead.p99:.2f} ms)",
        ),
    )
