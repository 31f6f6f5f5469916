"""Throughput: the highest fixed arrival rate the gateway holds against 5 fast nodes with p99
under 100 ms and no error, load generator included on the same machine.

Open loop (`bench.load.open_loop`): queries leave at the rate whatever the answers do, and
each is timed from when it was due, so a stall cannot hide in a slower sender. Rates go up
step by step until one fails, then twice halve the gap between the last rate held and the one
that failed; the bare baseline climbs the same ladder in the same run. The
gateway's CPU time per query (from /proc) is reported too: it depends far less than latency
on what else the machine is doing.

The gateway runs as one process and as `PROCESSES` worker processes behind one port
(TESSERA_GATEWAY_PROCESSES, `serving.prefork`), both in the same run, their climbs alternating
(one process, then several, for each question); a worker gateway's CPU time is its parent's
and its workers'.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

from bench.cluster import (
    ALL_JURISDICTIONS,
    Baseline,
    Cluster,
    Gateway,
    NodePool,
    tree_cpu_seconds,
)
from bench.fakenode import Delay
from bench.load import (
    Send,
    Summary,
    baseline_sender,
    client_session,
    closed_loop,
    graphql_sender,
    open_loop,
)
from bench.queries import COHORT, COUNT
from bench.report import Figure, Report, goal_at_least, ratio, table

RATES: Final = (10, 25, 50, 100, 150, 200, 250, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000)
P99_LIMIT_MS: Final = 100.0
RATE_GOAL: Final = 400.0
NODES: Final = 5
FAST: Final = Delay(1, 3)
# Gateway worker processes of the second gateway: one per core of the 2-core machine.
PROCESSES: Final = 2


async def climb(
    ladder: Sequence[int], holds: Callable[[int], Awaitable[bool]], *, refinements: int = 2
) -> int:
    """The highest rate held: up `ladder` until a rate fails, then `refinements` halvings of
    the gap between the last rate held and the one that failed (the ladder doubles its steps,
    so the first failure alone could under-report by up to half)."""
    held, failed = 0, None
    for rate in ladder:
        if not await holds(rate):
            failed = rate
            break
        held = rate
    for _ in range(refinements if failed is not None else 0):
        assert failed is not None
        mid = (held + failed) // 2
        if not held < mid < failed:
            break
        if await holds(mid):
            held = mid
        else:
            failed = mid
    return held


async def _climb(
    session: Any, send: Send, pid: int, *, step_s: float, rates: Sequence[int]
) -> tuple[int, list[dict[str, Any]]]:
    steps: list[dict[str, Any]] = []

    async def holds(rate: int) -> bool:
        # A rate fails when two tries in a row fail: on a shared machine one stall of someone
        # else's process can take a short step's p99 on its own.
        for _ in range(2):
            before = tree_cpu_seconds(pid)
            samples = await open_loop(session, send, rate=rate, duration_s=step_s)
            cpu_ms = (tree_cpu_seconds(pid) - before) * 1000 / len(samples)
            summary = Summary.of(
                [s.latency_ms for s in samples if s.ok], sum(not s.ok for s in samples)
            )
            ok = summary.errors == 0 and summary.p99 < P99_LIMIT_MS
            steps.append({"rate": rate, "cpu_ms_per_query": cpu_ms, "ok": ok, **summary.as_dict()})
            if ok:
                return True
        return False

    return await climb(rates, holds), steps


async def run(
    report: Report,
    workdir: Path,
    *,
    step_s: float = 4.0,
    rates: Sequence[int] = RATES,
    tracing: bool = True,
    gateway_env: dict[str, str] | None = None,
) -> None:
    report.section(
        f"2. Throughput: open loop against {NODES} fast nodes ({FAST.low_ms:g}–{FAST.high_ms:g} "
        f"ms), p99 < {P99_LIMIT_MS:g} ms and no error; tracing {'on' if tracing else 'off'}"
    )
    jurisdictions = ALL_JURISDICTIONS[:NODES]
    pool = NodePool(workdir / "nodes", jurisdictions, FAST)
    gateway = Gateway(
        workdir / "gateway", pool, jurisdictions, tracing=tracing, env=gateway_env or {}
    )
    workers = Gateway(
        workdir / "workers",
        pool,
        jurisdictions,
        tracing=tracing,
        env={**(gateway_env or {}), "TESSERA_GATEWAY_PROCESSES": str(PROCESSES)},
    )
    baseline = Baseline(workdir / "baseline", pool, jurisdictions)
    cluster = Cluster()
    cluster.add(*pool.services, gateway.service, workers.service, baseline.service)
    results: dict[str, Any] = {}
    many = f", {PROCESSES} processes"
    async with cluster, client_session() as session:
        targets = {
            "gateway": (graphql_sender(gateway.url, gateway.token, COHORT), gateway.pid),
            f"gateway{many}": (graphql_sender(workers.url, workers.token, COHORT), workers.pid),
            "gateway, count only": (
                graphql_sender(gateway.url, gateway.token, COUNT),
                gateway.pid,
            ),
            f"gateway, count only{many}": (
                graphql_sender(workers.url, workers.token, COUNT),
                workers.pid,
            ),
            "baseline": (baseline_sender(baseline.url), baseline.pid),
        }
        for name, (send, pid) in targets.items():
            await closed_loop(session, send, queries=50)  # warm-up
            held, steps = await _climb(session, send, pid, step_s=step_s, rates=rates)
            results[name] = {"held": held, "steps": steps}
    rows = [["target", "rate/s", "p50 ms", "p99 ms", "errors", "CPU ms/query", ""]]
    for name, result in results.items():
        for step in result["steps"]:
            rows.append(
                [
                    name,
                    str(step["rate"]),
                    f"{step['p50']:.1f}",
                    f"{step['p99']:.1f}",
                    str(step["errors"]),
                    f"{step['cpu_ms_per_query']:.2f}",
                    "held" if step["ok"] else "failed",
                ]
            )
    print(table(rows))
    bl = results["baseline"]
    for name in ("gateway", "gateway, count only"):
        gw = results[name]
        what = "cohort with a 20-cell breakdown" if name == "gateway" else "cohort count"
        report.add(
            Figure(
                f"highest rate held, {what}",
                gw["held"],
                "q/s",
                f"≥ {RATE_GOAL:g} q/s",
                goal_at_least(gw["held"], RATE_GOAL),
                f"bare baseline held {bl['held']} q/s; gateway CPU "
                f"{_cpu_at_held(gw['steps']):.2f} ms per query (baseline "
                f"{_cpu_at_held(bl['steps']):.2f})",
            ),
            Figure("  gateway / baseline rate held", ratio(gw["held"], bl["held"]), "×"),
            Figure(
                "  CPU-bound ceiling: 1 s / gateway CPU per query",
                1000 / _cpu_at_held(gw["steps"]),
                "q/s",
                detail="what one core given to the gateway alone would hold",
            ),
        )
        wk = results[f"{name}{many}"]
        report.add(
            Figure(
                f"highest rate held, {what}, {PROCESSES} gateway processes",
                wk["held"],
                "q/s",
                f"≥ {RATE_GOAL:g} q/s",
                goal_at_least(wk["held"], RATE_GOAL),
                f"TESSERA_GATEWAY_PROCESSES={PROCESSES}; CPU {_cpu_at_held(wk['steps']):.2f} ms "
                "per query, parent and workers",
            ),
            Figure(
                f"  {PROCESSES} processes / 1 process, rate held",
                ratio(wk["held"], gw["held"]),
                "×",
            ),
        )
    report.data["throughput"] = {
        "nodes": NODES,
        "delay_ms": [FAST.low_ms, FAST.high_ms],
        "processes": PROCESSES,
        **results,
    }


def _cpu_at_held(steps: Sequence[dict[str, Any]]) -> float:
    held = [s for s in steps if s["ok"]] or list(steps[:1])
    return float(held[-1]["cpu_ms_per_query"]) if held else float("nan")
