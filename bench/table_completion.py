"""GraphQL's completion of one breakdown alone, as `cells` and as `columns`:
`python -m bench.table_completion --cells 20,100,500`.

The gateway's own `Breakdown` type over a table made once (a fifth of its cells LOW, with a
reason, the rest PERTURBED with an sd), asked through a schema of one field, in blocks that
alternate the forms in one process; the figure is CPU per operation above the floor (the same
operation selecting only `by`), and Python function calls per operation (cProfile's count: it
does not depend on the machine's load). `python -m bench.gateway_cpu --compare
cohort,cohort-columns` measures the whole gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Final

import strawberry

from bench.report import table
from gateway.graphql.types import BreakdownTable
from schema import result as model
from schema.codes import Dimension, ValueStatus

NUMBER: Final = "value status sd bound contributors reasons { rule jurisdiction message }"
_CELL: Final = "cells { dimensions { name value } count { NUMBER } }"
_COLUMNS: Final = "columns { dimensions { name values } count { NUMBER } }"
OPERATIONS: Final = {
    "floor": "{ t { by } }",
    "cells": f"{{ t {{ {_CELL.replace('NUMBER', 'value status')} }} }}",
    "columns": f"{{ t {{ {_COLUMNS.replace('NUMBER', 'value status')} }} }}",
    "cells, every field": f"{{ t {{ {_CELL.replace('NUMBER', NUMBER)} }} }}",
    "columns, every field": f"{{ t {{ {_COLUMNS.replace('NUMBER', NUMBER + ' reasonIndexes')} }}}}",
}
BLOCK: Final = 20
_LOW: Final = model.Reason(rule="BELOW_MINIMUM", message="below the minimum")


def breakdown(cells: int) -> BreakdownTable:
    """A table by SEX and CALENDAR_YEAR of `cells` cells (even)."""
    made = []
    for i in range(cells):
        sex, year = ("FEMALE", "MALE")[i % 2], str(1900 + i // 2)
        low = i % 5 == 0
        made.append(
            model.Cell(
                dimensions=[
                    model.DimensionValue(name=Dimension.SEX, value=sex),
                    model.DimensionValue(name=Dimension.CALENDAR_YEAR, value=year),
                ],
                count=model.Value(
                    value=None if low else 100 + i,
                    status=ValueStatus.LOW if low else ValueStatus.PERTURBED,
                    sd=5.0,
                    reasons=[_LOW] if low else [],
                ),
            )
        )
    return BreakdownTable(
        by=[Dimension.SEX, Dimension.CALENDAR_YEAR], combined=tuple(made), found_quantiles=()
    )


@strawberry.type
class Query:
    t: BreakdownTable


SCHEMA: Final = strawberry.Schema(query=Query)


async def measure(cells: int, blocks: int) -> dict[str, tuple[float, float, float]]:
    """Each operation's (min, median) CPU ms per operation and its Python calls."""
    root = Query(t=breakdown(cells))
    for operation in OPERATIONS.values():
        result = await SCHEMA.execute(operation, root_value=root)
        if result.errors:
            raise RuntimeError(result.errors)
    found: dict[str, list[float]] = {name: [] for name in OPERATIONS}
    for _ in range(blocks):
        for name, operation in OPERATIONS.items():
            cpu = time.process_time()
            for _ in range(BLOCK):
                await SCHEMA.execute(operation, root_value=root)
            found[name].append(1000 * (time.process_time() - cpu) / BLOCK)
    calls = {}
    for name, operation in OPERATIONS.items():
        profiler = cProfile.Profile()
        profiler.enable()
        await SCHEMA.execute(operation, root_value=root)
        profiler.disable()
        calls[name] = float(pstats.Stats(profiler).total_calls)  # type: ignore[attr-defined]
    return {
        name: (min(times), statistics.median(times), calls[name]) for name, times in found.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.table_completion", description=__doc__)
    parser.add_argument("--cells", default="20,100,500", help="table sizes, comma-separated")
    parser.add_argument("--blocks", type=int, default=30)
    args = parser.parse_args(argv)
    rows = [["cells", "form", "min ms", "median ms", "over floor (min)", "Python calls"]]
    for cells in (int(c) for c in args.cells.split(",")):
        found = asyncio.run(measure(cells, args.blocks))
        floor, _, floor_calls = found["floor"]
        for name, (low, median, calls) in found.items():
            if name == "floor":
                continue
            rows.append(
                [
                    str(cells),
                    name,
                    f"{low:.3f}",
                    f"{median:.3f}",
                    f"{low - floor:.3f}",
                    f"{calls - floor_calls:.0f}",
                ]
            )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
