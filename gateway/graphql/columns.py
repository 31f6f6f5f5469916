"""A breakdown as columns: each dimension's values and each number's value, status, sd, bound
and reasons as lists of scalars, row i of every list being the table's i-th cell (in the order
`cells` lists them).

GraphQL completes a list of scalars item by item without resolving fields, where `cells`
makes an object per cell and per number and resolves each of their fields: the same answer for
a fraction of the gateway's CPU (bench/README.md). Every number still carries its status and
its reasons: the reasons of a column are listed once (`reasons`) and each row names its own
by index (`reasonIndexes`), as a dictionary-encoded column does. A withheld number (LOW,
SUPPRESSED) is null in `value`, exactly as in its cell: the lists are read from the very
values the cells are made of, so nothing a cell withholds appears here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import strawberry

from gateway.graphql.enums import Dimension, Jurisdiction, ValueStatus
from gateway.graphql.types import Reason
from schema import result as model

NO_NUMBER = "null where the row has no such number (a cell without a summary or a rate)"


@strawberry.type(description="One dimension of a breakdown as a column.")
class DimensionColumn:
    name: Dimension
    values: list[str] = strawberry.field(description="The dimension's value in each row.")


def _reason_fields(
    numbers: Sequence[model.Value | model.Estimate | None],
) -> tuple[list[Reason], list[list[int]]]:
    index: dict[model.Reason, int] = {}
    rows: list[list[int]] = []
    for number in numbers:
        if number is None or not number.reasons:
            rows.append([])
            continue
        row = []
        for reason in number.reasons:
            at = index.get(reason)
            if at is None:
                at = index[reason] = len(index)
            row.append(at)
        rows.append(row)
    return [Reason.of(r) for r in index], rows


REASONS = "The distinct reasons of this column, each listed once (rows name theirs by index)."
REASON_INDEXES = "Each row's reasons, as indexes into `reasons`, in the order its cell lists them."


@strawberry.type(
    description="A released count in each row of a breakdown (as `Count` in each cell): "
    "`value` null exactly where withheld (LOW or SUPPRESSED)."
)
class CountColumn:
    value: list[int | None]
    status: list[ValueStatus | None] = strawberry.field(description=f"The status; {NO_NUMBER}.")
    sd: list[float | None] = strawberry.field(description="The noise's standard deviation.")
    bound: list[float | None] = strawberry.field(
        description="Largest distance from the truth that rounding may add."
    )
    contributors: list[list[Jurisdiction] | None] = strawberry.field(
        description="For a count pooled securely: the jurisdictions in it; null otherwise."
    )
    reasons: list[Reason] = strawberry.field(description=REASONS)
    reason_indexes: list[list[int]] = strawberry.field(description=REASON_INDEXES)

    @classmethod
    def of(cls, counts: Sequence[model.Value | None]) -> CountColumn:
        reasons, indexes = _reason_fields(counts)
        return cls(
            value=[None if c is None else c.value for c in counts],
            status=[None if c is None else c.status for c in counts],
            sd=[None if c is None else c.sd for c in counts],
            bound=[None if c is None else c.bound for c in counts],
            contributors=[None if c is None else c.contributors for c in counts],
            reasons=reasons,
            reason_indexes=indexes,
        )


@strawberry.type(
    description="A derived number in each row of a breakdown (as `Estimate` in each cell): "
    "`value` null exactly where withheld."
)
class EstimateColumn:
    value: list[float | None]
    status: list[ValueStatus | None] = strawberry.field(description=f"The status; {NO_NUMBER}.")
    sd: list[float | None]
    bound: list[float | None]
    reasons: list[Reason] = strawberry.field(description=REASONS)
    reason_indexes: list[list[int]] = strawberry.field(description=REASON_INDEXES)

    @classmethod
    def of(cls, estimates: Sequence[model.Estimate | None]) -> EstimateColumn:
        reasons, indexes = _reason_fields(estimates)
        return cls(
            value=[None if e is None else e.value for e in estimates],
            status=[None if e is None else e.status for e in estimates],
            sd=[None if e is None else e.sd for e in estimates],
            bound=[None if e is None else e.bound for e in estimates],
            reasons=reasons,
            reason_indexes=indexes,
        )


Part = TypeVar("Part")
Whole = TypeVar("Whole", model.Summary, model.Rate)


def _each(wholes: Sequence[Whole | None], part: Callable[[Whole], Part]) -> list[Part | None]:
    return [None if w is None else part(w) for w in wholes]


@strawberry.type(
    description="The question's variable in each row (as `Summary` in each cell); a row "
    "without one has no status in any of its columns."
)
class SummaryColumns:
    cells: strawberry.Private[Sequence[model.Summary | None]]

    @strawberry.field
    def n(self) -> CountColumn:
        return CountColumn.of(_each(self.cells, lambda s: s.n))

    @strawberry.field
    def mean(self) -> EstimateColumn:
        return EstimateColumn.of(_each(self.cells, lambda s: s.mean))

    @strawberry.field
    def variance(self) -> EstimateColumn:
        return EstimateColumn.of(_each(self.cells, lambda s: s.variance))

    @strawberry.field
    def sd(self) -> EstimateColumn:
        return EstimateColumn.of(_each(self.cells, lambda s: s.sd))

    @strawberry.field
    def ci_low(self) -> EstimateColumn:
        return EstimateColumn.of(_each(self.cells, lambda s: s.ci_low))

    @strawberry.field
    def ci_high(self) -> EstimateColumn:
        return EstimateColumn.of(_each(self.cells, lambda s: s.ci_high))


def _per(root: strawberry.Parent[RateColumns]) -> list[int | None]:
    return _each(root.cells, lambda r: r.per)


@strawberry.type(
    description="The question's incidence rate in each row (as `Rate` in each cell); a row "
    "without one has no status in any of its columns."
)
class RateColumns:
    cells: strawberry.Private[Sequence[model.Rate | None]]

    @strawberry.field
    def events(self) -> CountColumn:
        return CountColumn.of(_each(self.cells, lambda r: r.events))

    @strawberry.field
    def person_years(self) -> EstimateColumn:
        return EstimateColumn.of(_each(self.cells, lambda r: r.person_years))

    @strawberry.field
    def rate(self) -> EstimateColumn:
        return EstimateColumn.of(_each(self.cells, lambda r: r.rate))

    @strawberry.field
    def ci_low(self) -> EstimateColumn:
        return EstimateColumn.of(_each(self.cells, lambda r: r.ci_low))

    @strawberry.field
    def ci_high(self) -> EstimateColumn:
        return EstimateColumn.of(_each(self.cells, lambda r: r.ci_high))

    per: list[int | None] = strawberry.field(
        resolver=_per, description="The person-years each row's rate is given per."
    )


def _rows(root: strawberry.Parent[BreakdownColumns]) -> int:
    return len(root.cells)


def _dimensions(root: strawberry.Parent[BreakdownColumns]) -> list[DimensionColumn]:
    # A cell lists its dimensions in the table's order (`gateway.combine`).
    return [
        DimensionColumn(name=name, values=[c.dimensions[i].value for c in root.cells])
        for i, name in enumerate(root.by)
    ]


def _count(root: strawberry.Parent[BreakdownColumns]) -> CountColumn:
    return CountColumn.of([c.count for c in root.cells])


def _summary(root: strawberry.Parent[BreakdownColumns]) -> SummaryColumns | None:
    summaries = [c.summary for c in root.cells]
    if all(s is None for s in summaries):
        return None
    return SummaryColumns(cells=summaries)


def _rate(root: strawberry.Parent[BreakdownColumns]) -> RateColumns | None:
    rates = [c.rate for c in root.cells]
    if all(r is None for r in rates):
        return None
    return RateColumns(cells=rates)


@strawberry.type(
    description="A breakdown as columns: row i of every list is the table's i-th cell, in "
    "the order `cells` lists them. The same numbers, statuses and reasons as the cells, "
    "completed without an object per cell: the fast way to read a table."
)
class BreakdownColumns:
    rows: int = strawberry.field(resolver=_rows, description="The number of rows (cells).")
    dimensions: list[DimensionColumn] = strawberry.field(
        resolver=_dimensions, description="One column per dimension of the table, in `by`'s order."
    )
    count: CountColumn = strawberry.field(resolver=_count)
    summary: SummaryColumns | None = strawberry.field(
        resolver=_summary,
        description="The question's variable (argument `variable`) in each row; null without one.",
    )
    rate: RateColumns | None = strawberry.field(
        resolver=_rate,
        description="The question's incidence rate (argument `outcome`) in each row; null "
        "without one.",
    )
    by: strawberry.Private[Sequence[Dimension]]
    cells: strawberry.Private[Sequence[model.Cell]]
