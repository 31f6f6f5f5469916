"""The measures a question may ask per cell, one entry per `MeasureKind`: what a value of it is,
and how the values of several nodes make one.

Read by the wire's validation (`schema.wire.NodeCell`: a node sends only registered measures,
within their bounds), by the gateway's check of an answer (`gateway.nodes`: each cell carries
exactly the measures asked) and its pooling (`gateway.combine`, `gateway.rounds`,
`gateway.vetting`: the spec's `pool` and `maximum`), and by a node's part in a pooled round
(`connectors.pooling`: only measures that pool `secure`ly). What the node's protection does
with a measure (noise, the minimum, rounding) is the measure's release rule
(`policies.measures`); the SQL computing it is `connectors.compiler.measures`. A completeness
test holds every registry to every `MeasureKind` (see docs/adding-a-measure.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from schema.codes import Dimension, MeasureKind
from schema.dimensions import age_band_width
from schema.lexis import YEAR_DAYS, crossings, split_table, splits
from schema.query import MAX_RATE_FOLLOW_UP_DAYS, Breakdown, CohortQuery
from schema.variables import MAX_SPAN_UNITS

# More persons than live in the EU and EEA together: no count, a node's or a pooled one, can be
# larger. (It also keeps every released count within GraphQL's 32-bit Int.)
MAX_PERSONS: Final = 600_000_000


class Pool(StrEnum):
    """How one cell's values at several nodes make the cell's value across them."""

    # The values add up: each person is at one node (a count of persons, a sum over them).
    SUM = "SUM"


@dataclass(frozen=True, slots=True)
class MeasureSpec:
    """What a measure's values are. Values are whole numbers (`schema.result.Value`) between
    `minimum` and `maximum` as true values; a released one is noisy, so it may lie beyond
    `maximum` by its noise, which the gateway's checks allow for. `sensitivity`: how much
    adding or removing one person changes the values of one table of a question, in the L2
    norm, a whole number (a person is in one cell of a table, and counts once there: 1; a sum
    of clipped values, the most one value moves it: `schema.variables`). A node adds noise of
    sd `sensitivity` times the question's to the measure's values and charges each person
    counted what OpenDP's privacy map says of the discrete Gaussian at that sd and
    sensitivity: a count's cost, whatever the sensitivity. `count`: whether its values are
    counts of persons (the minimum count, rounding and the count checks apply to them).
    `secure`: whether nodes may pool it as masked shares (`schema.pooling`), which needs a
    value that adds up over persons."""

    kind: MeasureKind
    description: str
    minimum: int
    maximum: int
    sensitivity: Callable[[CohortQuery], int]
    pool: Pool
    secure: bool
    count: bool = True

    def pooled(self, parts: Sequence[int]) -> int:
        """The cell's value across nodes, from each node's (released, noisy) value."""
        if self.pool is Pool.SUM:
            return sum(parts)
        raise ValueError(f"no pooling rule {self.pool}")  # a new Pool needs one here


# The largest sum of centred units a cell can hold: every person of Europe at the widest
# bounds (`schema.variables.MAX_SPAN_UNITS`), squared.
MAX_SUM: Final = MAX_PERSONS * (MAX_SPAN_UNITS // 2) ** 2


def _one(query: CohortQuery) -> int:
    return 1


def cells_per_person(query: CohortQuery, table: Breakdown) -> int:
    """The most cells of `table` one person is counted in: one, or, where a rate's follow-up
    is split by age and year (`schema.lexis`), one more per boundary their follow-up can
    cross."""
    if query.outcome is None or not split_table(table):
        return 1
    days = query.outcome.days
    cells = 1
    if Dimension.CALENDAR_YEAR in table:
        cells += crossings(days, YEAR_DAYS)
    for dimension in table:
        width = age_band_width(dimension)
        if width is not None:
            cells += crossings(days, YEAR_DAYS * width)
    return cells


def _persons_sensitivity(query: CohortQuery) -> int:
    # A person in k cells of a table moves it by √k (L2); noise is scaled by a whole number.
    if not splits(query):
        return 1
    most = max(cells_per_person(query, table) for table in query.tables)
    return math.isqrt(most - 1) + 1  # ⌈√most⌉


def _sum_sensitivity(query: CohortQuery) -> int:
    if query.variable is None:
        raise ValueError("a sum of a variable's values needs the variable")
    return query.variable.clipping.sum_sensitivity


def _squares_sensitivity(query: CohortQuery) -> int:
    if query.variable is None:
        raise ValueError("a sum of a variable's squares needs the variable")
    return query.variable.clipping.squares_sensitivity


# The most days at risk a cell can hold: every person of Europe followed for the longest window.
MAX_PERSON_DAYS: Final = MAX_PERSONS * MAX_RATE_FOLLOW_UP_DAYS


def _days_sensitivity(query: CohortQuery) -> int:
    if query.outcome is None:
        raise ValueError("days at risk need the question's outcome")
    # A person adds at most the window's length to a table: to one cell, or, split by age and
    # year (`schema.lexis`), across several, whose squares then sum to less (L2 <= L1).
    return query.outcome.days


MEASURES: Final[dict[MeasureKind, MeasureSpec]] = {
    MeasureKind.PERSON_COUNT: MeasureSpec(
        kind=MeasureKind.PERSON_COUNT,
        description="distinct persons in the cell",
        minimum=0,
        maximum=MAX_PERSONS,
        # One, but where a rate's person-time is split by age and year (`schema.lexis`).
        sensitivity=_persons_sensitivity,
        pool=Pool.SUM,
        secure=True,
    ),
    MeasureKind.VALUE_N: MeasureSpec(
        kind=MeasureKind.VALUE_N,
        description="distinct persons in the cell with a value of the question's variable",
        minimum=0,
        maximum=MAX_PERSONS,
        sensitivity=_one,
        pool=Pool.SUM,
        secure=False,
    ),
    MeasureKind.VALUE_SUM: MeasureSpec(
        kind=MeasureKind.VALUE_SUM,
        description="the sum of the cell's values, clipped, in centred units",
        minimum=-MAX_SUM,
        maximum=MAX_SUM,
        sensitivity=_sum_sensitivity,
        pool=Pool.SUM,
        secure=False,
        count=False,
    ),
    MeasureKind.VALUE_SUM_SQUARES: MeasureSpec(
        kind=MeasureKind.VALUE_SUM_SQUARES,
        description="the sum of the squares of the cell's centred units, less their offset",
        minimum=-MAX_SUM,
        maximum=MAX_SUM,
        sensitivity=_squares_sensitivity,
        pool=Pool.SUM,
        secure=False,
        count=False,
    ),
    MeasureKind.OUTCOME_EVENTS: MeasureSpec(
        kind=MeasureKind.OUTCOME_EVENTS,
        description="distinct persons in the cell whose first outcome falls in their follow-up",
        minimum=0,
        maximum=MAX_PERSONS,
        sensitivity=_one,
        pool=Pool.SUM,
        secure=False,
    ),
    MeasureKind.PERSON_DAYS: MeasureSpec(
        kind=MeasureKind.PERSON_DAYS,
        description="the days the cell's persons were at risk, each clipped to the follow-up",
        # A noisy sum of days may be negative; its truth never is.
        minimum=-MAX_PERSON_DAYS,
        maximum=MAX_PERSON_DAYS,
        sensitivity=_days_sensitivity,
        pool=Pool.SUM,
        secure=False,
        count=False,
    ),
}


def asked(query: CohortQuery) -> tuple[MeasureKind, ...]:
    """The measures a question asks, each once, in the order first asked."""
    return tuple(dict.fromkeys(m.kind for m in query.measures))


def pooled_measure(query: CohortQuery) -> MeasureKind | None:
    """The measure a pooled round of this question pools: its one measure, if that pools
    securely (only PERSON_COUNT does); None otherwise, and the question is not pooled (a round
    carries one measure's shares). A survival question's exits are counts of persons: they
    pool like any count (the gateway asks it only of a question without each country's
    curves, which are made of national tables: `gateway.survival`)."""
    measures = asked(query)
    if len(measures) == 1 and MEASURES[measures[0]].secure:
        return measures[0]
    return None
