"""An incidence rate's person-time split by age and calendar year (`schema.lexis`): each
cohort person's follow-up (`at_risk_from` to `at_risk_to`, `connectors.compiler.follow_up`)
cut at every 1 January and every birthday into pieces, one row each, which the cells
(`connectors.compiler.cohort`) read instead of the person's one row.

A calendar year Y holds two pieces of a person's life: before their birthday in Y (age
Y − year_of_birth − 1) and from it (age Y − year_of_birth). The birthday is
MAKE_DATE(Y, month, 1) + (day − 1), a month or day not recorded taken as 1 (and clamped to
1..12, 1..31): so a 29 February birthday is 1 March in a year without one, and a person with a
year of birth only has their birthday on 1 January (their first piece of each year is empty).
The pieces come from a fixed list of (year offset, part) pairs crossed with each person, the
offsets up to the most calendar years a follow-up window can span (`PIECES`), kept while the
year is one the follow-up reaches. A piece is kept where the follow-up overlaps it, and the
one holding the first day at risk is kept in any case: a person at risk for no day stays one
row, in the cell of that day, with no day and no event (as before the split, they are one of
the cohort's persons). Each piece carries

    age           the piece's age (at least 0: a person followed before their recorded birth
                  is counted at 0)
    index_date    the piece's first day at risk (its CALENDAR_YEAR)
    outcome_event 1 on the piece holding the last day at risk of a person whose follow-up
                  ended with the outcome (the event is counted on its day)
    days_at_risk  the days of the follow-up in the piece, both ends included

under the column names the cells read for the person's age, index date, event and days, so
that every dimension and measure reads a piece as it reads a person. The pieces of a person
partition their days at risk: their days sum to the person's, their events to the person's.
A numeric variable's value (asked beside the rate) is on the piece holding the first day
only, so that the sums have each person's value once: a person's value is in the cell they
entered follow-up in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlglot import exp

from connectors.compiler.dialect import Dialect
from connectors.compiler.measures import AT_RISK_FROM, AT_RISK_TO, DAYS_AT_RISK, OUTCOME_EVENT
from connectors.compiler.sql import col, table
from schema.lexis import YEAR_DAYS, crossings
from schema.query import MAX_RATE_FOLLOW_UP_DAYS

# The (year offset, part) pairs every person is crossed with: a window of at most
# MAX_RATE_FOLLOW_UP_DAYS days spans at most one year more than the 1 Januarys it crosses.
YEARS: Final = 1 + crossings(MAX_RATE_FOLLOW_UP_DAYS, YEAR_DAYS)
PIECES: Final = tuple((offset, part) for offset in range(YEARS) for part in (0, 1))
# The columns the pieces are built from, which the cohort carries when it is split.
BIRTH_COLUMNS: Final = ("year_of_birth", "month_of_birth", "day_of_birth")
AGE, INDEX_DATE = "age", "index_date"
# Aliases: the cohort, the pairs, the pieces with their bounds.
PERSON, PAIRS, BOUNDED = "s", "l", "b"
OFFSET, PART, YEAR, PIECE_FROM, PIECE_TO = (
    "year_offset",
    "part",
    "piece_year",
    "piece_from",
    "piece_to",
)


def pieces(
    cohort: str, carried: Sequence[str], dialect: Dialect, first: Sequence[str] = ()
) -> exp.Select:
    """The pieces of each person of the relation `cohort`, with its columns `carried` (the
    person index and what the cells read besides), its columns `first` on the piece holding
    the first day only (NULL on the others), and the four a piece has of its own."""
    start, end = col(AT_RISK_FROM, PERSON), col(AT_RISK_TO, PERSON)
    first_year = _year(start)
    offset = col(OFFSET, PAIRS)
    year = exp.Add(this=first_year, expression=offset)
    birthday = exp.Add(
        this=dialect.date_of(
            year.copy(),
            _clamped(col("month_of_birth", PERSON), 12),
            exp.Literal.number(1),
        ),
        expression=exp.paren(
            exp.Sub(this=_clamped(col("day_of_birth", PERSON), 31), expression=_one())
        ),
    )
    before = col(PART, PAIRS).eq(exp.Literal.number(0))
    piece_from = (
        exp.Case().when(before, dialect.date_of(year.copy(), _one(), _one())).else_(birthday.copy())
    )
    piece_to = (
        exp.Case()
        .when(before.copy(), exp.Sub(this=birthday, expression=_one()))
        .else_(dialect.date_of(year.copy(), exp.Literal.number(12), exp.Literal.number(31)))
    )
    # Years the follow-up reaches (none past the first for a person at risk for no day).
    reached = exp.func(
        "GREATEST",
        exp.Sub(this=_year(end.copy()), expression=first_year.copy()),
        exp.Literal.number(0),
    )
    bounded = (
        exp.select(
            *(col(c, PERSON) for c in (*carried, *first, AT_RISK_FROM, AT_RISK_TO, OUTCOME_EVENT)),
            col("year_of_birth", PERSON),
            col(PART, PAIRS),
            exp.alias_(year.copy(), YEAR),
            exp.alias_(piece_from, PIECE_FROM),
            exp.alias_(piece_to, PIECE_TO),
        )
        .from_(table(cohort, PERSON), copy=False)
        .join(_pairs(), join_type="CROSS", copy=False)
        .where(offset.copy() <= reached, copy=False)
    )
    return _cut(bounded, carried, first, dialect)


def _cut(
    bounded: exp.Select, carried: Sequence[str], first_only: Sequence[str], dialect: Dialect
) -> exp.Select:
    """The follow-up within each piece's bounds, the pieces it does not overlap left out
    but for the one holding its first day."""
    start, end = col(AT_RISK_FROM, BOUNDED), col(AT_RISK_TO, BOUNDED)
    low, high = col(PIECE_FROM, BOUNDED), col(PIECE_TO, BOUNDED)
    first = exp.func("GREATEST", start.copy(), low.copy())
    last = exp.func("LEAST", end.copy(), high.copy())
    overlaps = first.copy() <= last.copy()
    days = (
        exp.Case()
        .when(
            overlaps.copy(),
            exp.Add(this=dialect.days_between(last.copy(), first.copy()), expression=_one()),
        )
        .else_(exp.Literal.number(0))
    )
    event = (
        exp.Case()
        .when(
            exp.and_(
                col(OUTCOME_EVENT, BOUNDED).eq(_one()),
                end.copy() >= low.copy(),
                end.copy() <= high.copy(),
            ),
            _one(),
        )
        .else_(exp.Literal.number(0))
    )
    age = exp.func(
        "GREATEST",
        exp.Add(
            this=exp.Sub(
                this=exp.Sub(this=col(YEAR, BOUNDED), expression=col("year_of_birth", BOUNDED)),
                expression=_one(),
            ),
            expression=col(PART, BOUNDED),
        ),
        exp.Literal.number(0),
    )
    holds_first = exp.and_(start.copy() >= low.copy(), start.copy() <= high.copy())
    return (
        exp.select(
            *(col(c, BOUNDED) for c in carried),
            *(
                exp.alias_(exp.Case().when(holds_first.copy(), col(c, BOUNDED)), c)
                for c in first_only
            ),
            exp.alias_(age, AGE),
            exp.alias_(first, INDEX_DATE),
            exp.alias_(event, OUTCOME_EVENT),
            exp.alias_(days, DAYS_AT_RISK),
        )
        .from_(exp.Subquery(this=bounded, alias=exp.TableAlias(this=BOUNDED)), copy=False)
        .where(exp.or_(overlaps, holds_first), copy=False)
    )


def _pairs() -> exp.Values:
    return exp.values(
        [(offset, part) for offset, part in PIECES], alias=PAIRS, columns=[OFFSET, PART]
    )


def _year(date: exp.Expr) -> exp.Expr:
    # Typed: PostgreSQL's EXTRACT is a numeric, which MAKE_DATE does not take.
    return exp.cast(exp.Extract(this=exp.var("YEAR"), expression=date), exp.DataType.Type.INT)


def _clamped(part: exp.Expr, most: int) -> exp.Expr:
    """A month or day of birth, 1 where not recorded, within 1..`most`."""
    return exp.func(
        "LEAST",
        exp.func("GREATEST", exp.func("COALESCE", part, _one()), _one()),
        exp.Literal.number(most),
    )


def _one() -> exp.Expr:
    return exp.Literal.number(1)
