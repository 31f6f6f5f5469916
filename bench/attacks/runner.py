"""Starts the federation, checks the simulator's truth against it, runs the attack classes
and reports each as it finishes."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

from bench.attacks import (
    approvals,
    averaging,
    cells,
    complements,
    deaths,
    dropouts,
    equality,
    isolation,
    ladders,
    margins,
    means,
    node_sets,
    pooled_others,
    pooled_survival,
    rates,
    refresh,
    regressions,
    survival,
    trackers,
    windows,
    zeros,
)
from bench.attacks.client import Applicant, features
from bench.attacks.context import Context, Plan
from bench.attacks.federation import Simulation
from bench.attacks.report import render, summary
from bench.attacks.verdict import ClassResult
from bench.attacks.where import Death, Event, Index, Relative, Where

# Class 12 stops and restarts connectors, class 7 changes the data (registers, rebuilds):
# they run last, after the classes numbered after them.
CLASSES: Final[tuple[ModuleType, ...]] = (
    trackers,
    cells,
    margins,
    zeros,
    averaging,
    approvals,
    equality,
    isolation,
    pooled_others,
    node_sets,
    complements,
    ladders,
    deaths,
    means,
    windows,
    regressions,
    rates,
    survival,
    pooled_survival,
    dropouts,
    refresh,
)


class TruthMismatch(RuntimeError):
    """The simulator's own truth disagrees with what a node released: no verdict can be
    trusted until it is fixed."""


# Large counts of every kind of criterion the attacks write: diabetics, twice diagnosed,
# persons without the diagnosis, deaths since 2020, and hypertension within ten years of a
# first diabetes record.
CHECKED: Final = (
    Where(conditions=(Event("E11"),)),
    Where(conditions=(Event("E11", at_least=2),)),
    Where(age_min=0, conditions=(Event("E11", exclude=True),)),
    Where(death=Death(start=dt.date(2020, 1, 1))),
    Where(index=Index("E11"), relative=(Relative("I10", -3650, 3650),)),
)


def check_truth(ctx: Context) -> None:
    """Large counts per node, asked and compared with the truth (within their noise)."""
    applicant: Applicant = ctx.applicant("truth-check")
    for where in CHECKED:
        answer = applicant.ask(where)
        for j in ctx.jurisdictions:
            released = answer.node(j)
            truth = ctx.simulation.truth[j].count(where)
            if released is None or released.value is None:
                raise TruthMismatch(
                    f"{j.value} released no count of {where.label()} ({answer.nodes[j]})"
                )
            slack = 6 * released.variance**0.5 + (released.bound or 0)
            if abs(released.value - truth) > slack:
                raise TruthMismatch(
                    f"{j.value}: {where.label()}: released {released.value}, the truth is {truth}"
                )


def protection_seen(ctx: Context) -> list[str]:
    statuses: set[str] = set()
    nodes: dict[str, int] = {}
    for applicant in ctx.applicants:
        statuses |= applicant.statuses
        for status, n in applicant.node_statuses.items():
            nodes[status] = nodes.get(status, 0) + n
    f = features()
    return [
        f"protection seen: statuses {', '.join(sorted(statuses))}; node answers "
        + ", ".join(f"{s} {n}" for s, n in sorted(nodes.items()))
        + f"; schema: sd {'yes' if f.has_sd else 'no'}, LOW {'yes' if f.has_low else 'no'}, "
        f"privacy {', '.join(f.privacy_fields) if f.privacy_fields else 'no'}"
    ]


@dataclass(frozen=True)
class Outcome:
    results: list[ClassResult]
    protection: list[str]
    seconds: float


def run(
    plan: Plan,
    *,
    persons: int | None = None,
    postgres: bool = False,
    only: Sequence[int] = (),
    directory: Path | None = None,
    seed: int = 1,
    echo: Callable[[str], None] = print,
    every_target: bool = False,
) -> Outcome:
    started = time.perf_counter()
    work = directory or Path(tempfile.mkdtemp(prefix="tessera-attacks-"))
    size = persons or plan.persons
    echo(
        f"attack simulator ({plan.name}): {size:,} persons per node, "
        f"{'PostgreSQL' if postgres else 'DuckDB'} nodes; work files in {work}"
    )
    simulation = Simulation.start(
        work, persons=size, postgres=postgres, jurisdictions=plan.jurisdictions
    )
    ctx = Context(simulation, plan, seed=seed)
    results = []
    try:
        echo(
            "nodes and minimums: "
            + ", ".join(f"{j.value} {ctx.minimums[j]}" for j in ctx.jurisdictions)
            + f" (setting up took {time.perf_counter() - started:.0f} s)"
        )
        check_truth(ctx)
        for module in CLASSES:
            if only and module.NUMBER not in only:
                continue
            begun = time.perf_counter()
            result: ClassResult = module.run(ctx)
            result.seconds = time.perf_counter() - begun
            results.append(result)
            echo("")
            echo(render(result, every_target=every_target))
        protection = protection_seen(ctx)
        echo(summary(results, protection))
    finally:
        ctx.close()
        simulation.stop()
    return Outcome(results, protection, time.perf_counter() - started)
