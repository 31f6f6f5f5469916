"""The table of "Performance, second round": a run's figures beside an earlier run's, each
with its goal. `python -m bench` prints it at the end of a run that measured them;
`python -m bench.against NEW.json [--before OLD.json]` prints it for two results files.

The earlier run is `bench/baselines/before-second-round.json` unless said otherwise: `make
bench` on main before this round (826b30e), on a quiet machine (load 0.5), with tracing and
the audit trail on. A figure a run did not measure shows as "–".
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

BASELINE: Final = Path(__file__).parent / "baselines" / "before-second-round.json"

Check = Callable[[Sequence[float]], bool]


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: the figures it shows (by name in a results file), how to
    show them and what meets its goal."""

    label: str
    figures: tuple[str, ...]
    unit: str
    goal: str
    check: Check


def _each(limit: float, *, at_most: bool = True) -> Check:
    def check(values: Sequence[float]) -> bool:
        return all(v <= limit if at_most else v >= limit for v in values)

    return check


def _overheads(values: Sequence[float]) -> bool:
    # ≤ 3 ms at 5 nodes, ≤ 8 ms at 30 (the second and the last of 1 / 5 / 10 / 30).
    return values[1] <= 3.0 and values[3] <= 8.0


def _c1(what: str) -> tuple[str, ...]:
    return tuple(f"{what}, {n} node{'s' if n > 1 else ''}, c=1" for n in (1, 5, 10, 30))


ROWS: Final = (
    Row(
        "gateway CPU per query in one process, 5 nodes: cohort as filed (3 cells a node) / "
        "21 cells / 21 cells as columns",
        (
            "gateway CPU, cohort, 5 nodes",
            "gateway CPU, cohort-21, 5 nodes",
            "gateway CPU, cohort-21-columns, 5 nodes",
        ),
        "ms",
        "≤ 3.5 ms",
        _each(3.5),
    ),
    Row(
        "↳ the floor, `{ __typename }`",
        ("gateway CPU, typename, 1 node",),
        "ms",
        "",
        _each(math.inf),
    ),
    Row(
        "fan-out overhead over the slowest node, median, c=1, 1 / 5 / 10 / 30 nodes",
        _c1("overhead median"),
        "ms",
        "≤ 3 (5), ≤ 8 (30)",
        _overheads,
    ),
    Row(
        "ratio to the bare fan-out, c=1, 1 / 5 / 10 / 30 nodes",
        _c1("ratio to bare baseline"),
        "×",
        "≤ 1.5×",
        _each(1.5),
    ),
    Row(
        "p99 / median under load, 10 (50/s) and 30 nodes (25/s)",
        ("p99 / median, 10 nodes, 50/s", "p99 / median, 30 nodes, 25/s"),
        "×",
        "≤ 3×",
        _each(3.0),
    ),
    Row(
        "highest rate held, cohort with breakdown / count only, one gateway process",
        ("highest rate held, cohort with a 20-cell breakdown", "highest rate held, cohort count"),
        "q/s",
        "≥ 400 q/s",
        _each(400.0, at_most=False),
    ),
    Row(
        "↳ the same, two gateway processes behind one port",
        (
            "highest rate held, cohort with a 20-cell breakdown, 2 gateway processes",
            "highest rate held, cohort count, 2 gateway processes",
        ),
        "q/s",
        "≥ 400 q/s",
        _each(400.0, at_most=False),
    ),
    Row(
        "gateway peak RSS with 1,000 queries in flight",
        ("gateway peak RSS, 1,000 queries in flight",),
        "MB",
        "≤ 300 MB",
        _each(300.0),
    ),
)


def figures(results: Mapping[str, Any]) -> dict[str, float]:
    """A results file's figures by name (names are unique once stripped of their indent;
    where one is not, the first stands)."""
    found: dict[str, float] = {}
    for f in results.get("figures", ()):
        value = f["value"]
        if isinstance(value, int | float):
            found.setdefault(f["name"].strip(), float(value))
    return found


def _shown(values: Sequence[float | None]) -> str:
    return " / ".join("–" if v is None else f"{v:,.2f}".rstrip("0").rstrip(".") for v in values)


def render(before: Mapping[str, float], now: Mapping[str, float]) -> str:
    rows = [["figure", "before", "now", "goal", ""]]
    for row in ROWS:
        old = [before.get(name) for name in row.figures]
        new = [now.get(name) for name in row.figures]
        measured = [v for v in new if v is not None]
        verdict = ""
        if row.goal and len(measured) == len(new):
            verdict = "MET" if row.check(measured) else "MISSED"
        rows.append([row.label, _shown(old), _shown(new), row.goal, verdict])
    widths = [max(len(r[i]) for r in rows) for i in range(1, 5)]
    lines = []
    for r in rows:
        lines.append(r[0])
        lines.append("    " + "  ".join(c.rjust(w) for c, w in zip(r[1:], widths, strict=True)))
    return "\n".join(lines)


def load(path: Path) -> dict[str, float]:
    return figures(json.loads(path.read_text()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.against", description=__doc__)
    parser.add_argument(
        "results", type=Path, help="the run to show (e.g. bench/results/latest.json)"
    )
    parser.add_argument("--before", type=Path, default=BASELINE)
    args = parser.parse_args(argv)
    print(render(load(args.before), load(args.results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
