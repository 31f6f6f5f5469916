"""Figures with their goals, printed as they are measured and saved for the plot and README."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure. `met` is None when the figure has no goal of its own."""

    name: str
    value: float
    unit: str
    goal: str = ""
    met: bool | None = None
    detail: str = ""

    def line(self) -> str:
        shown = "n/a" if math.isnan(self.value) else f"{self.value:,.2f}"
        verdict = {True: "MET", False: "MISSED", None: ""}[self.met]
        goal = f"goal {self.goal}" if self.goal else ""
        text = f"  {self.name:<52} {shown:>10} {self.unit:<6} {goal:<16} {verdict}"
        return text + (f"\n      {self.detail}" if self.detail else "")


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def add(self, *figures: Figure) -> None:
        for figure in figures:
            self.figures.append(figure)
            print(figure.line(), flush=True)

    def section(self, title: str) -> None:
        print(f"\n{title}", flush=True)

    def summary(self) -> str:
        met = [f for f in self.figures if f.met is True]
        missed = [f for f in self.figures if f.met is False]
        lines = [f"\n{len(met)} goals met, {len(missed)} missed"]
        lines += [f"  missed: {f.name} = {f.value:,.2f} {f.unit} (goal {f.goal})" for f in missed]
        return "\n".join(lines)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "machine": machine(),
            "figures": [asdict(f) for f in self.figures],
            "data": self.data,
        }
        path.write_text(json.dumps(payload, indent=2, default=_nan_safe) + "\n")


def _nan_safe(value: object) -> object:
    return str(value)


def machine() -> dict[str, Any]:
    """What the numbers were measured on, including how busy the machine was."""
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "load_average_1_5_15": [round(x, 2) for x in load],
    }


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def goal_at_most(value: float, limit: float) -> bool:
    return not math.isnan(value) and value <= limit


def goal_at_least(value: float, limit: float) -> bool:
    return not math.isnan(value) and value >= limit


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  " + "  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
    )


def markdown(results: dict[str, Any]) -> str:
    """The figures of a results file as a Markdown table, for bench/README.md."""
    verdicts = {True: "met", False: "**missed**", None: ""}
    lines = ["| figure | value | goal | |", "|---|---:|---|---|"]
    for f in results["figures"]:
        value = f["value"]
        shown = "n/a" if isinstance(value, str) or math.isnan(value) else f"{value:,.2f}"
        name = f["name"].strip()
        indent = "↳ " if f["name"].startswith(" ") else ""
        lines.append(
            f"| {indent}{name} | {shown} {f['unit']} | {f['goal']} | {verdicts[f['met']]} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
