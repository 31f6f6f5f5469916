"""The breakdown dimensions: one entry per `Dimension`, saying everything the services need
to know about it in one place.

An entry (`DimensionSpec`) holds

- its key domain: every cell key a node may send for it (`schema.wire` checks answers
  against it; empty for a dimension no node computes);
- its public domain for a question: the cells one jurisdiction's part of a table has,
  known before any data is read (`policies.domain`), and so its cell bound;
- the order of its keys in a released table (`gateway.combine`);
- its age-band width, where it is an age band (`policies.checks.granularity`);
- whether a node computes it (JURISDICTION is the gateway's: one value per node);
- its description in the published API (the GraphQL enum).

How a node computes a dimension in SQL is the compiler's (`connectors.compiler.dimensions`);
which jurisdictions allow it, the policy files'. `docs/adding-a-dimension.md` lists every part
a new dimension needs, and `tests/test_dimensions.py` fails while one is missing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from schema.codes import AgeAt, Dimension, Jurisdiction, Sex
from schema.lexis import splits, years_reached
from schema.survival import all_keys, follow_up_domain
from schema.variables import MAX_EDGE_UNITS, bin_key

if TYPE_CHECKING:  # the query model reads the registry (age bands), so only for typing
    from schema.query import CohortQuery

# The cell key of the persons without a value (no recorded sex, no dating event).
UNKNOWN_KEY: Final = "UNKNOWN"
# The oldest age band a node may send a key for: above the query model's 130, so that an
# answer is never rejected for an age the model admits.
MAX_KEY_AGE: Final = 150
FIRST_KEY_YEAR, LAST_KEY_YEAR = 1800, 2999

SortKey = tuple[tuple[int, int, str], ...]


@dataclass(frozen=True, slots=True)
class DimensionSpec:
    """What one breakdown dimension is, for every part of Tessera that handles it."""

    dimension: Dimension
    # For the published API: "NAME: what a value means".
    description: str
    # Every key a node may send; empty: no node sends any (the gateway adds it).
    keys: frozenset[str]
    # The values the dimension takes in one jurisdiction's part of a table of a question.
    domain: Callable[[CohortQuery], tuple[str, ...]]
    sort_key: Callable[[str], SortKey]
    age_band_width: int | None = None
    node_computed: bool = True

    def cell_bound(self, query: CohortQuery) -> int:
        """How many values the dimension takes in one jurisdiction's part of a table."""
        # A dimension the gateway adds has one value per jurisdiction's part.
        return len(self.domain(query)) if self.node_computed else 1


# -- sort orders ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def natural_order(text: str) -> SortKey:
    """Numbers compare as numbers: "5-9" before "10-14", "UNKNOWN" after every year."""
    return tuple(
        (0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part)
        for part in re.split(r"([0-9]+)", text)
        if part
    )


_JURISDICTION_ORDER: Final = {j.value: i for i, j in enumerate(Jurisdiction)}


def jurisdiction_order(value: str) -> SortKey:
    """Jurisdictions in `Jurisdiction` order."""
    return ((0, _JURISDICTION_ORDER.get(value, -1), value),)


# -- domains --------------------------------------------------------------------------------
def _no_cells(query: CohortQuery) -> tuple[str, ...]:
    return ()  # the gateway's: one value per node, never computed by a node


def _sex_domain(query: CohortQuery) -> tuple[str, ...]:
    sex = query.criteria.sex
    if sex is not None:
        return (sex.value,)
    # Persons whose recorded sex is neither (another or no concept) have a cell too.
    return (Sex.FEMALE.value, Sex.MALE.value, UNKNOWN_KEY)


def age_band(low: int, width: int) -> str:
    """The key of the age band of `width` years starting at `low` ("40-49")."""
    return f"{low}-{low + width - 1}"


def _age_band_domain(width: int) -> Callable[[CohortQuery], tuple[str, ...]]:
    def domain(query: CohortQuery) -> tuple[str, ...]:
        low, high = query.criteria.age_bounds()
        if splits(query):
            low, high = _followed_ages(query, low, high)
        return _age_bands(low, high, width)

    return domain


# Domains are asked for every table of every answer, at the node and at the gateway (which
# checks each node's keys against them), and take few distinct values: made once each.
@functools.lru_cache(maxsize=256)
def _age_bands(low: int, high: int, width: int) -> tuple[str, ...]:
    return tuple(age_band(band, width) for band in range(low - low % width, high + 1, width))


def _calendar_year_domain(query: CohortQuery) -> tuple[str, ...]:
    first, last = query.index_years()
    # Years after the reference date's are not part of a question asked as of that date.
    last = min(last, query.reference_date.year)
    if splits(query):
        # Split person-time (`schema.lexis`) reaches the years its follow-up does.
        assert query.outcome is not None
        last += years_reached(query.outcome.window.end_days)
    return _calendar_years(first, last, query.dated)


def _followed_ages(query: CohortQuery, low: int, high: int) -> tuple[int, int]:
    """The ages split person-time (`schema.lexis`) is at, from the ages `low`..`high` the
    criteria admit at the age date: a year younger before a birthday in the year of that date
    (ages elsewhere are the year less the year of birth), older by each year the follow-up
    reaches, and, with ages at the reference date, younger by the years from an index event
    before it."""
    assert query.outcome is not None
    reached = years_reached(query.outcome.window.end_days)
    if query.age_basis is AgeAt.INDEX_EVENT:
        return max(low - 1, 0), high + reached
    first, last = query.index_years()
    reference = query.reference_date.year
    before = max(reference - first, 0)
    after = max(min(last, reference) + reached - reference, 0)
    return max(low - 1 - before, 0), high + after


@functools.lru_cache(maxsize=256)
def _calendar_years(first: int, last: int, dated: bool) -> tuple[str, ...]:
    years = tuple(str(year) for year in range(first, last + 1))
    # With an index event every person of the cohort has one; without, persons are dated by
    # their first observation period, which some lack.
    return years if dated else (*years, UNKNOWN_KEY)


def _value_bin_domain(query: CohortQuery) -> tuple[str, ...]:
    variable = query.variable
    if variable is None:
        return ()  # the query model refuses VALUE_BIN without a variable's bins
    decimals = variable.clipping.decimals
    # Persons without a value of the variable have a cell too.
    return (*(bin_key(edge, decimals) for edge in variable.bin_edges()), UNKNOWN_KEY)


def _follow_up_domain(query: CohortQuery) -> tuple[str, ...]:
    survival = query.survival
    if survival is None:
        return ()  # the query model refuses FOLLOW_UP without survival
    # Every cohort person has an index date, so leaves follow-up in one of these cells.
    return follow_up_domain(survival.interval_days, survival.max_days)


# -- the entries ----------------------------------------------------------------------------
def _age_band_spec(dimension: Dimension, width: int) -> DimensionSpec:
    return DimensionSpec(
        dimension=dimension,
        description=f"{dimension.value}: age in bands of {width} years such as "
        f"{age_band(40, width)}, in whole years (year of the age date minus year of birth; see "
        "CohortQuery's ageAt).",
        keys=frozenset(age_band(low, width) for low in range(0, MAX_KEY_AGE + 1, width)),
        domain=_age_band_domain(width),
        sort_key=natural_order,
        age_band_width=width,
    )


SPECS: Final[tuple[DimensionSpec, ...]] = (
    DimensionSpec(
        dimension=Dimension.JURISDICTION,
        description="JURISDICTION: the country that answered, added by the gateway.",
        keys=frozenset(),
        domain=_no_cells,
        sort_key=jurisdiction_order,
        node_computed=False,
    ),
    DimensionSpec(
        dimension=Dimension.SEX,
        description="SEX: the recorded sex (UNKNOWN when none).",
        keys=frozenset({Sex.FEMALE.value, Sex.MALE.value, UNKNOWN_KEY}),
        domain=_sex_domain,
        sort_key=natural_order,
    ),
    _age_band_spec(Dimension.AGE_BAND_5, 5),
    _age_band_spec(Dimension.AGE_BAND_10, 10),
    _age_band_spec(Dimension.AGE_BAND_20, 20),
    DimensionSpec(
        dimension=Dimension.CALENDAR_YEAR,
        description="CALENDAR_YEAR: the year of each person's index date with an index (see "
        "cohort's index), else of their index event: their first event matching the "
        "question's first condition (else first drug, else first measurement) at the top level "
        "of the criteria, within its window; for criteria without one, the year their first "
        "observation period starts; UNKNOWN when there is no such date.",
        keys=frozenset(
            {UNKNOWN_KEY, *(str(year) for year in range(FIRST_KEY_YEAR, LAST_KEY_YEAR + 1))}
        ),
        domain=_calendar_year_domain,
        sort_key=natural_order,
    ),
    DimensionSpec(
        dimension=Dimension.VALUE_BIN,
        description="VALUE_BIN: the bin of the question's variable (argument variable, its "
        "binWidth) a person's value falls in, named by its lower edge in the variable's unit "
        "(6.5: from 6.5 to 7.0, the last bin up to the upper bound inclusive), between the "
        "variable's public bounds (values beyond them in the first or last bin); UNKNOWN for "
        "persons without a value.",
        keys=frozenset(
            {
                UNKNOWN_KEY,
                *(bin_key(u, d) for d in (0, 1) for u in range(MAX_EDGE_UNITS + 1)),
            }
        ),
        domain=_value_bin_domain,
        sort_key=natural_order,
    ),
    DimensionSpec(
        dimension=Dimension.FOLLOW_UP,
        description="FOLLOW_UP: where a person left the question's follow-up (argument "
        "survival): 30:EVENT, the outcome in the interval starting 30 days after the index "
        "date; 30:CENSORED, observation ended in it first; 365:AT_RISK, still at risk at the "
        "follow-up's maximum. Each person is in one cell; the cohort's survival curve is "
        "computed from them (the cohort's survival field).",
        keys=all_keys(),
        domain=_follow_up_domain,
        sort_key=natural_order,
    ),
)


class IncompleteRegistry(ValueError):
    """A registry without exactly one entry for every `Dimension`."""

    def __init__(self, missing: Iterable[Dimension], repeated: Iterable[Dimension]) -> None:
        self.missing = tuple(missing)
        self.repeated = tuple(repeated)
        parts = []
        if self.missing:
            parts.append("no entry for " + ", ".join(d.value for d in self.missing))
        if self.repeated:
            parts.append("more than one entry for " + ", ".join(d.value for d in self.repeated))
        super().__init__("dimension registry: " + "; ".join(parts))


def registry(specs: Iterable[DimensionSpec]) -> Mapping[Dimension, DimensionSpec]:
    """The entries by dimension, in `Dimension` order; every dimension exactly once."""
    specs = list(specs)
    by_dimension = {spec.dimension: spec for spec in specs}
    missing = [d for d in Dimension if d not in by_dimension]
    repeated = [d for d in Dimension if sum(spec.dimension is d for spec in specs) > 1]
    if missing or repeated:
        raise IncompleteRegistry(missing, repeated)
    return MappingProxyType({d: by_dimension[d] for d in Dimension})


DIMENSIONS: Final = registry(SPECS)


def age_band_width(dimension: Dimension) -> int | None:
    """The width of `dimension`'s age bands in years; None when it is not an age band."""
    return DIMENSIONS[dimension].age_band_width


def description() -> str:
    """The published API's description of the `Dimension` enum."""
    return "What a breakdown can group by: the published allow-list. " + " ".join(
        spec.description for spec in DIMENSIONS.values()
    )
