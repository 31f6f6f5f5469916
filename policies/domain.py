"""The public domain of a table: every cell it has, known before any data is read.

A breakdown lists every cell of its domain, each with its own noisy count, whether anybody is
in it or not: which cells exist must never depend on the data (an absent cell would say
"nobody", a present one "somebody"). The domain follows from the question alone: the
dimension's published values, narrowed by the criteria (a sex asked for, an age range, the
index event's date window) and by rules that hold for every database. Persons whose value
falls outside the domain (an age above the query model's 130, an index event after the
reference date) are in the total but in no cell of that table.

Each dimension's domain is its entry's in `schema.dimensions`. Keys are spelled as the
connector's SQL spells them and as `schema.wire.KEY_DOMAINS` allows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from schema.codes import Dimension
from schema.dimensions import DIMENSIONS
from schema.query import Breakdown, CohortQuery

CellKey = tuple[str, ...]


def dimension_domain(dimension: Dimension, query: CohortQuery) -> tuple[str, ...]:
    """The values `dimension` takes in one jurisdiction's part of a table of `query`."""
    return DIMENSIONS[dimension].domain(query)


def table_domain(table: Breakdown, query: CohortQuery) -> list[CellKey]:
    """Every cell key of a node's table, in a stable order."""
    return list(itertools.product(*(dimension_domain(d, query) for d in table)))


def dimension_cells(dimension: Dimension, query: CohortQuery) -> int:
    """How many values a dimension takes in one jurisdiction's part of a table."""
    return DIMENSIONS[dimension].cell_bound(query)


def table_cells(table: Sequence[Dimension], query: CohortQuery) -> int:
    cells = 1
    for dimension in table:
        cells *= dimension_cells(dimension, query)
    return cells
