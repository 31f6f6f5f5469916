"""The public domain of a table: every cell it has, known before any data is read.

A breakdown lists every cell of its domain, each with its own noisy count, whether anybody is
in it or not: which cells exist must never depend on the data (an absent cell would say
"nobody", a present one "somebody"). The domain follows from the question alone: the
dimension's published values, narrowed by the criteria (a sex asked for, an age range, the
index event's date window) and by rules that hold for every database. Persons whose value
falls outside the domain (an age above the query model's 130, an index event after the
reference date) are in the total but in no cell of that table.

Keys are spelled as the connector's SQL spells them and as `schema.wire.KEY_DOMAINS` allows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from schema.codes import AGE_BAND_WIDTHS, Dimension, Sex
from schema.query import MAX_AGE, MAX_DATE, MIN_AGE, MIN_DATE, Breakdown, CohortQuery
from schema.wire import UNKNOWN_KEY

CellKey = tuple[str, ...]


def dimension_domain(dimension: Dimension, query: CohortQuery) -> tuple[str, ...]:
    """The values `dimension` takes in one jurisdiction's part of a table of `query`."""
    criteria = query.criteria
    if dimension is Dimension.SEX:
        if criteria.sex is not None:
            return (criteria.sex.value,)
        # Persons whose recorded sex is neither (another or no concept) have a cell too.
        return (Sex.FEMALE.value, Sex.MALE.value, UNKNOWN_KEY)
    width = AGE_BAND_WIDTHS.get(dimension)
    if width is not None:
        age = criteria.age
        low = MIN_AGE if age is None or age.min is None else age.min
        high = MAX_AGE if age is None or age.max is None else age.max
        return tuple(
            f"{band}-{band + width - 1}" for band in range(low - low % width, high + 1, width)
        )
    if dimension is Dimension.CALENDAR_YEAR:
        event = criteria.index_event()
        window = None if event is None else event.window
        first = (MIN_DATE if window is None or window.start is None else window.start).year
        last = (MAX_DATE if window is None or window.end is None else window.end).year
        # Years after the reference date's are not part of a question asked as of that date.
        years = tuple(str(year) for year in range(first, min(last, query.reference_date.year) + 1))
        # With an index event among the criteria every person of the cohort has one; without,
        # persons are dated by their first observation period, which some lack.
        return years if event is not None else (*years, UNKNOWN_KEY)
    if dimension is Dimension.JURISDICTION:
        return ()  # the gateway's: one value per node, never computed by a node
    raise ValueError(f"no domain for {dimension.value}")  # a new Dimension needs one


def table_domain(table: Breakdown, query: CohortQuery) -> list[CellKey]:
    """Every cell key of a node's table, in a stable order."""
    return list(itertools.product(*(dimension_domain(d, query) for d in table)))


def dimension_cells(dimension: Dimension, query: CohortQuery) -> int:
    """How many values a dimension takes in one jurisdiction's part of a table."""
    if dimension is Dimension.JURISDICTION:
        return 1
    return len(dimension_domain(dimension, query))


def table_cells(table: Sequence[Dimension], query: CohortQuery) -> int:
    cells = 1
    for dimension in table:
        cells *= dimension_cells(dimension, query)
    return cells
