"""Each cohort person's follow-up for an incidence rate (`schema.query.Outcome`): the cohort of
a question with an outcome, wrapped twice to carry two more columns that its measures read
(`connectors.compiler.measures`). The wraps go around the cohort as the tables read it (the
persons the ledger leaves out already left out) and as the cohort table holds it; the
ledger's list of persons reads the cohort unwrapped.

The first wrap (alias `f`, over the cohort with each person's `index_date`) finds, per person,
the end of the observation period covering the index date (`followed_until`), their death
(`died_on`) and their first outcome event within the window (`outcome_date`), each a scalar
subquery. The second (alias `g`) follows the person from entry = index + start to

    censored = LEAST(index + end, COALESCE(followed_until, entry − 1),
                     COALESCE(died_on, index + end))

so that a person not observed at their index date is at risk for no day (COALESCE: LEAST
skips NULLs), and counts an event (`outcome_event` 1) when the outcome falls on or before that
day; their days at risk (`days_at_risk`) run from entry to the outcome or the censoring, both
included, at least 0, at most the window's length: the public clipping of PERSON_DAYS. The
first and last day at risk are kept too (`at_risk_from`, `at_risk_to`: before the first for
a person at risk for no day), for the split by age and year (`connectors.compiler.lexis`).
Every bound is a parameter; days are counted as the dialect counts them (`days_between`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from connectors.compiler import names
from connectors.compiler.dialect import DaysBetween
from connectors.compiler.measures import AT_RISK_FROM, AT_RISK_TO, DAYS_AT_RISK, OUTCOME_EVENT
from connectors.compiler.sql import col, table
from schema.query import EventSpec, Outcome

INDEX_DATE = "index_date"
FOLLOWED_UNTIL, DIED_ON, OUTCOME_DATE = "followed_until", "died_on", "outcome_date"
# Aliases: the cohort being followed, its first wrap, and the tables the subqueries read.
FOLLOWED, FOUND, OBSERVED, DIED, EVENT = "f", "g", "op", "d", "e"

# `shifted(date, days)`: `date` plus a bound number of days.
Shifted = Callable[[exp.Expr, int], exp.Expr]
# `spec_filter(spec)`: whether an event (alias `e`) is one of `spec`'s, as conditions.
SpecFilter = Callable[[EventSpec], list[exp.Expr]]


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The two wraps, their values bound once (before the statement's last value, the persons
    left out): `wrap` puts a cohort under them, a copy each time."""

    found: exp.Select
    outer: exp.Select

    def wrap(self, cohort: exp.Select) -> exp.Select:
        """`cohort` (persons with their `index_date`) with each person's `outcome_event` and
        `days_at_risk`."""
        found = self.found.copy().from_(
            exp.Subquery(this=cohort, alias=exp.TableAlias(this=FOLLOWED)), copy=False
        )
        return self.outer.copy().from_(
            exp.Subquery(this=found, alias=exp.TableAlias(this=FOUND)), copy=False
        )


def follow_up(
    outcome: Outcome, shifted: Shifted, spec_filter: SpecFilter, days_between: DaysBetween
) -> FollowUp:
    """The follow-up of `outcome`, its bounds bound through `shifted` and `spec_filter`."""
    found = exp.select(
        exp.Column(this=exp.Star(), table=exp.to_identifier(FOLLOWED)),
        exp.alias_(exp.Subquery(this=_observation_end()), FOLLOWED_UNTIL),
        exp.alias_(exp.Subquery(this=_death()), DIED_ON),
        exp.alias_(exp.Subquery(this=_first_outcome(outcome, shifted, spec_filter)), OUTCOME_DATE),
    )
    window = outcome.window
    index = col(INDEX_DATE, FOUND)
    entry = shifted(index, window.start_days)
    last = shifted(index, window.end_days)
    censored = exp.func(
        "LEAST",
        last,
        exp.func("COALESCE", col(FOLLOWED_UNTIL, FOUND), shifted(index, window.start_days - 1)),
        exp.func("COALESCE", col(DIED_ON, FOUND), last.copy()),
    )
    outcome_date = col(OUTCOME_DATE, FOUND)
    event = exp.and_(outcome_date.is_(exp.null()).not_(), outcome_date.copy() <= censored.copy())
    exit_date = exp.Case().when(event.copy(), outcome_date.copy()).else_(censored)
    days = exp.func(
        "GREATEST",
        exp.Add(this=days_between(exit_date, entry), expression=exp.Literal.number(1)),
        exp.Literal.number(0),
    )
    flag = exp.Case().when(event, exp.Literal.number(1)).else_(exp.Literal.number(0))
    outer = exp.select(
        exp.Column(this=exp.Star(), table=exp.to_identifier(FOUND)),
        exp.alias_(flag, OUTCOME_EVENT),
        exp.alias_(days, DAYS_AT_RISK),
        exp.alias_(entry.copy(), AT_RISK_FROM),
        exp.alias_(exit_date.copy(), AT_RISK_TO),
    )
    return FollowUp(found=found, outer=outer)


def _observation_end() -> exp.Select:
    """The end of the observation period covering the person's index date."""
    index = col(INDEX_DATE, FOLLOWED)
    covering = exp.and_(
        col("person_id", OBSERVED).eq(col("person_id", FOLLOWED)),
        col("observation_period_start_date", OBSERVED) <= index,
        col("observation_period_end_date", OBSERVED) >= index.copy(),
        copy=False,
    )
    return (
        exp.select(exp.func("MAX", col("observation_period_end_date", OBSERVED)))
        .from_(table(names.OBSERVATION_PERIOD, OBSERVED), copy=False)
        .where(covering, copy=False)
    )


def _death() -> exp.Select:
    """The person's date of death (the earliest, should the CDM hold several)."""
    return (
        exp.select(exp.func("MIN", col("death_date", DIED)))
        .from_(table(names.DEATH, DIED), copy=False)
        .where(col("person_id", DIED).eq(col("person_id", FOLLOWED)), copy=False)
    )


def _first_outcome(outcome: Outcome, shifted: Shifted, spec_filter: SpecFilter) -> exp.Select:
    """The person's first outcome event in the follow-up window, censoring aside."""
    source = names.EVENT_TABLES[outcome.event.domain]
    date = col(source.date, EVENT)
    index = col(INDEX_DATE, FOLLOWED)
    parts = [
        col("person_id", EVENT).eq(col("person_id", FOLLOWED)),
        *spec_filter(outcome.event),
        date >= shifted(index, outcome.window.start_days),
        date.copy() <= shifted(index, outcome.window.end_days),
    ]
    return (
        exp.select(exp.func("MIN", date.copy()))
        .from_(table(source.name, EVENT), copy=False)
        .where(exp.and_(*parts, copy=False), copy=False)
    )
