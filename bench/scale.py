"""Scale: the gateway's memory with 1,000 queries in flight at once, and how fast synthetic
data is generated.

Memory: 1,000 queries are sent together to a gateway whose 5 nodes answer slowly, so that all
of them are inside the gateway at the same time (fanning out, or waiting for a turn to); the
figure is the peak resident set size (VmHWM) of the gateway process, next to the bare
baseline's under the same burst.

Generation: a fresh database of `persons` persons is generated into a temporary directory
and the rate extrapolated to 10M; the full set also reports the time the cached 10M database
took when it was generated.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from bench.cluster import (
    ALL_JURISDICTIONS,
    Baseline,
    Cluster,
    Gateway,
    NodePool,
    rss_mb,
)
from bench.fakenode import Delay
from bench.load import (
    Summary,
    baseline_sender,
    client_session,
    closed_loop,
    graphql_sender,
    one_burst,
)
from bench.queries import COHORT
from bench.report import Figure, Report, goal_at_most, ratio
from schema.codes import Jurisdiction
from synth import generate

IN_FLIGHT: Final = 1000
MEMORY_GOAL_MB: Final = 300.0
SYNTH_GOAL_S: Final = 60.0
SYNTH_GOAL_PERSONS: Final = 10_000_000
NODES: Final = 5
SLOW: Final = Delay(200, 300)


async def memory(
    report: Report,
    workdir: Path,
    *,
    queries: int = IN_FLIGHT,
    tracing: bool = True,
    gateway_env: dict[str, str] | None = None,
) -> None:
    report.section(
        f"4a. Gateway memory with {queries:,} queries in flight ({NODES} nodes answering in "
        f"{SLOW.low_ms:g}–{SLOW.high_ms:g} ms)"
    )
    jurisdictions = ALL_JURISDICTIONS[:NODES]
    pool = NodePool(workdir / "nodes", jurisdictions, SLOW)
    gateway = Gateway(
        workdir / "gateway",
        pool,
        jurisdictions,
        tracing=tracing,
        # The node bulkheads (16 in flight, 32 waiting per node by default) push most of a
        # burst of 1,000 back as NODE_BUSY, by design: raised here so that all of them are in
        # flight at once, which is what this figure is about. The gateway's own turns for the
        # fan-out (`TESSERA_GATEWAY_MAX_ACTIVE_COHORTS`, `gateway.admission`) stay at their
        # default: all 1,000 are inside the gateway, the rest of them waiting for a turn.
        env={
            "TESSERA_GATEWAY_NODE_MAX_IN_FLIGHT": "1024",
            "TESSERA_GATEWAY_NODE_MAX_WAITING": str(queries),
            **(gateway_env or {}),
        },
        deadline_s=60.0,
    )
    baseline = Baseline(workdir / "baseline", pool, jurisdictions)
    cluster = Cluster()
    cluster.add(*pool.services, gateway.service, baseline.service)
    data: dict[str, Any] = {}
    async with cluster, client_session(connections=queries + 50) as session:
        for name, send, pid in (
            ("gateway", graphql_sender(gateway.url, gateway.token, COHORT), gateway.pid),
            ("baseline", baseline_sender(baseline.url), baseline.pid),
        ):
            await closed_loop(session, send, queries=20)
            idle, _ = rss_mb(pid)
            await pool.forget(session)
            started = time.perf_counter()
            samples = await one_burst(session, send, queries=queries)
            seconds = time.perf_counter() - started
            _, peak = rss_mb(pid)
            summary = Summary.of(
                [s.latency_ms for s in samples if s.ok], sum(not s.ok for s in samples)
            )
            data[name] = {
                "idle_mb": idle,
                "peak_mb": peak,
                "seconds": seconds,
                "peak_node_requests_in_flight": await pool.peak_in_flight(session),
                "errors": summary.errors,
                "latency": summary.as_dict(),
            }
    gw, bl = data["gateway"], data["baseline"]
    report.add(
        Figure(
            f"gateway peak RSS, {queries:,} queries in flight",
            gw["peak_mb"],
            "MB",
            f"≤ {MEMORY_GOAL_MB:g} MB",
            goal_at_most(gw["peak_mb"], MEMORY_GOAL_MB) and gw["errors"] == 0,
            f"idle {gw['idle_mb']:.0f} MB; all answered in {gw['seconds']:.1f} s with "
            f"{gw['errors']} errors; node requests in flight at most "
            f"{gw['peak_node_requests_in_flight']}; baseline peak {bl['peak_mb']:.0f} MB "
            f"(idle {bl['idle_mb']:.0f} MB)",
        ),
        Figure(
            "  growth over idle, gateway / baseline",
            ratio(gw["peak_mb"] - gw["idle_mb"], bl["peak_mb"] - bl["idle_mb"]),
            "×",
        ),
    )
    report.data["memory"] = {"queries": queries, **data}


def _generate(persons: int) -> float:
    directory = Path(tempfile.mkdtemp(prefix="tessera-synth-"))
    try:
        started = time.perf_counter()
        generate(
            directory / "fr.duckdb",
            jurisdiction=Jurisdiction.FR,
            persons=persons,
            seed=1,
            state=directory / "state",
        )
        return time.perf_counter() - started
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def synthesis(report: Report, *, persons: int, cached_10m: tuple[float, bool] | None) -> None:
    """Two fresh sizes, `persons` and a quarter of it: the straight line through both
    separates the fixed cost (vocabulary, opt-outs, checkpoint) from the cost per person."""
    small = persons // 4
    report.section(f"4b. Synthetic generation (fresh, one node: {small:,} and {persons:,} persons)")
    t_small, t_large = _generate(small), _generate(persons)
    per_person = max(t_large - t_small, 1e-9) / (persons - small)
    fixed = max(t_large - per_person * persons, 0.0)
    projected = fixed + per_person * SYNTH_GOAL_PERSONS
    report.add(
        Figure(
            "generation rate",
            1 / per_person / 1000,
            "k/s",
            detail=f"{small:,} persons in {t_small:.1f} s, {persons:,} in {t_large:.1f} s: "
            f"{fixed:.1f} s fixed",
        ),
        Figure(
            "  10M persons, projected",
            projected,
            "s",
            f"≤ {SYNTH_GOAL_S:g} s",
            goal_at_most(projected, SYNTH_GOAL_S),
        ),
    )
    data: dict[str, Any] = {
        "persons": [small, persons],
        "seconds": [t_small, t_large],
        "projected_10m_s": projected,
    }
    if cached_10m is not None:
        seconds_10m, fresh = cached_10m
        report.add(
            Figure(
                "  10M persons, measured",
                seconds_10m,
                "s",
                f"≤ {SYNTH_GOAL_S:g} s",
                goal_at_most(seconds_10m, SYNTH_GOAL_S),
                "generated in this run" if fresh else "recorded when the cached database was made",
            )
        )
        data["measured_10m_s"] = seconds_10m
    report.data["synthesis"] = data
