"""`python -m bench [--full] [--only NAMES]`: run the benchmarks, print each figure with its
goal, save the results (`bench/results/latest.json`) and the fan-out plot.

The quick set (`make bench`, a few minutes) and the full set (`make bench-full`: more
samples, the 10M-person connector database) measure the same things. Processes run on free
loopback ports; work files go to a temporary directory, synthetic databases to
`.tessera/bench/` (kept and reused).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench import (
    against,
    connector,
    disclosure_utility,
    fanout,
    gateway_cpu,
    protect,
    scale,
    throughput,
)
from bench.cluster import REPO, gateway_env_from_environment
from bench.report import Report, machine

NAMES: Final = ("cpu", "fanout", "throughput", "connector", "scale", "utility", "protect")
CACHE: Final = REPO / ".tessera" / "bench"
RESULTS: Final = REPO / "bench" / "results" / "latest.json"
# Committed with bench/README.md: a run of the fan-out benchmark refreshes it.
PLOT: Final = REPO / "bench" / "fanout-overhead.png"


@dataclass(frozen=True)
class Plan:
    cpu_queries: int
    fanout_queries: int
    fanout_duration_s: float
    throughput_step_s: float
    connector_sizes: tuple[int, ...]
    connector_reps: int
    protect_reps: int
    synth_persons: int
    burst: int


QUICK: Final = Plan(
    cpu_queries=300,
    fanout_queries=120,
    fanout_duration_s=6.0,
    throughput_step_s=3.0,
    connector_sizes=(1_000_000,),
    connector_reps=7,
    protect_reps=3,
    # Two and eight chunks: a single chunk has nothing to overlap its simulation with.
    synth_persons=2_000_000,
    burst=1000,
)
FULL: Final = Plan(
    cpu_queries=1000,
    fanout_queries=400,
    fanout_duration_s=20.0,
    throughput_step_s=6.0,
    connector_sizes=(1_000_000, 10_000_000),
    connector_reps=11,
    protect_reps=5,
    synth_persons=2_000_000,
    burst=1000,
)


async def run(
    plan: Plan, only: Sequence[str], *, tracing: bool, work: Path, load_rate: float
) -> Report:
    report = Report()
    env = gateway_env_from_environment()
    info = machine()
    report.data["machine_at_start"] = info
    print(
        f"machine: {info['cpus']} CPUs, Python {info['python']}, load average "
        f"{' / '.join(str(x) for x in info['load_average_1_5_15'])} (1/5/15 min); gateway "
        f"tracing {'on' if tracing else 'off'}"
        + (f"; gateway environment {', '.join(sorted(env))}" if env else ""),
        flush=True,
    )
    if "cpu" in only:
        await gateway_cpu.run(report, queries=plan.cpu_queries, tracing=tracing)
    if "fanout" in only:
        await fanout.run(
            report,
            work / "fanout",
            queries=plan.fanout_queries,
            duration_s=plan.fanout_duration_s,
            rate=load_rate,
            tracing=tracing,
            gateway_env=env,
        )
    if "throughput" in only:
        await throughput.run(
            report,
            work / "throughput",
            step_s=plan.throughput_step_s,
            tracing=tracing,
            gateway_env=env,
        )
    synth = {}
    if "connector" in only:
        synth = await connector.run(
            report, CACHE, sizes=plan.connector_sizes, reps=plan.connector_reps
        )
    if "scale" in only:
        await scale.memory(
            report, work / "memory", queries=plan.burst, tracing=tracing, gateway_env=env
        )
        big = synth.get(scale.SYNTH_GOAL_PERSONS)
        await asyncio.to_thread(
            scale.synthesis,
            report,
            persons=plan.synth_persons,
            cached_10m=(big.seconds, big.fresh) if big else None,
        )
    if "utility" in only:
        await disclosure_utility.bench(report, CACHE)
    if "protect" in only:
        await protect.run(report, CACHE, persons=plan.connector_sizes[0], reps=plan.protect_reps)
    report.data["load_average_after"] = list(os.getloadavg())
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the full set (bench-full)")
    parser.add_argument("--only", default=",".join(NAMES), help=f"some of {','.join(NAMES)}")
    parser.add_argument("--no-tracing", action="store_true", help="gateway without tracing")
    parser.add_argument(
        "--load-rate",
        type=float,
        default=fanout.LOAD_RATE,
        help="fan-out under load: queries per second (default %(default)s)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--before",
        type=Path,
        default=against.BASELINE,
        help="the earlier run the second round's table compares with (default %(default)s)",
    )
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(only) - set(NAMES)
    if unknown:
        parser.error(f"unknown benchmark: {', '.join(sorted(unknown))}")
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    try:
        report = asyncio.run(
            run(
                FULL if args.full else QUICK,
                only,
                tracing=not args.no_tracing,
                work=work,
                load_rate=args.load_rate,
            )
        )
    finally:
        if args.keep:
            print(f"work files and logs: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report.data["set"] = "full" if args.full else "quick"
    report.save(args.results)
    print(report.summary())
    if args.before.exists() and set(only) & {"cpu", "fanout", "throughput", "scale"}:
        print(f"\nPerformance, second round: before ({args.before.name}) and now")
        print(against.render(against.load(args.before), against.load(args.results)))
    print(f"results: {args.results}")
    if "fanout" in only:
        if importlib.util.find_spec("matplotlib") is None:
            print("no plot: matplotlib is missing (pip install -e '.[bench]', or make bench)")
        else:
            from bench.plot import plot

            plot(json.loads(args.results.read_text()), args.plot)
            print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
