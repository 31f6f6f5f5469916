"""Person-time split on the Lexis diagram: an incidence rate's days at risk and events counted
in the age band and calendar year they fall in, not those of the day follow-up began.

A rate question (`CohortQuery.outcome`) with a table by an age band or by CALENDAR_YEAR splits
each person's follow-up at every 1 January and every birthday (`connectors.compiler.lexis`):
each piece's days go to the cell of its age and year, the outcome event to the cell of the
day it occurs on, and the person is one of the cell's persons (PERSON_COUNT: persons at risk
in the cell) wherever they have a piece. Birthdays are the person's date of birth (OMOP's
year, month and day of birth); a part not recorded is taken at its first, so a person with a
year of birth only is born on 1 January and turns a year older with each calendar year,
their age the year less the year of birth, as Tessera's ages are everywhere else.

What this does to the noise's calibration (docs/protection.md, "Incidence rates"): a person's
pieces partition their follow-up, so their days across a table's cells still sum to at most
the window's length D (the L2 norm of their contribution is at most its L1 norm, D), and
their event is in one cell. Their count of persons is in as many cells as they visit, at most
`1 + year boundaries + age-band boundaries` crossed in D days (consecutive 1 Januarys are at
least 365 days apart, band boundaries 365 × width): the count's L2 sensitivity is the root of
that, and its noise is scaled by that root rounded up (`schema.measures`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from schema.codes import Dimension

if TYPE_CHECKING:
    from schema.query import Breakdown, CohortQuery

# The dimensions whose value changes along a person's follow-up.
SPLIT: Final = frozenset(
    {Dimension.AGE_BAND_5, Dimension.AGE_BAND_10, Dimension.AGE_BAND_20, Dimension.CALENDAR_YEAR}
)
# The fewest days between two 1 Januarys, or two birthdays a year apart.
YEAR_DAYS: Final = 365


def splits(query: CohortQuery) -> bool:
    """Whether the question's rate tables split each person's follow-up."""
    return query.outcome is not None and any(d in SPLIT for t in query.tables for d in t)


def split_table(table: Breakdown) -> bool:
    return any(d in SPLIT for d in table)


def crossings(days: int, spacing: int) -> int:
    """The most boundaries `spacing` days or more apart that a run of `days` days (both ends
    included) can cross: k boundaries inside it lie at least (k − 1) × spacing apart, within
    its days − 1."""
    return 0 if days <= 1 else math.ceil((days - 1) / spacing)


def years_reached(days: int) -> int:
    """The most 1 Januarys that fall in the `days` days after a date."""
    return 0 if days <= 0 else math.ceil(days / YEAR_DAYS)
