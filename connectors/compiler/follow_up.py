"""Each cohort person's follow-up for an incidence rate (`schema.query.Outcome`): the cohort of
a question with an outcome, wrapped twice to carry two more columns that its measures read
(`connectors.compiler.measures`). The wraps go around the cohort as the tables read it (the
persons the ledger leaves out already left out) and as the cohort table holds it; the
ledger's list of persons reads the cohort unwrapped.

The first wrap (alias `f`, over the cohort with each person's `index_date`) finds, per person,
the end of the observation period covering the index date (`followed_until`), their death
(`died_on`) and their first outcome event within the window (`outcome_date`), each a LEFT JOIN
on the person (and index date: with occurrence ALL a person has several) to a grouped
subquery, NULL when nothing matches. Not correlated scalar subqueries: with their date bounds
Spark runs those as a nested loop over every pair of rows, which at a million persons did not
finish (`per_index`). The second (alias `g`) follows the person from entry = index + start to

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
# Aliases: the cohort being followed, its first wrap, and the tables the joins read.
FOLLOWED, FOUND, OBSERVED, DIED, EVENT = "f", "g", "op", "d", "e"
# Aliases of what the first wrap joins: the period covering, death, first outcome.
OBSERVED_END, DEATH_OF, FIRST_OUTCOME = "fu", "dd", "fo"

# `shifted(date, days)`: `date` plus a bound number of days.
Shifted = Callable[[exp.Expr, int], exp.Expr]
# `spec_filter(spec)`: whether an event (alias `e`) is one of `spec`'s, as conditions.
SpecFilter = Callable[[EventSpec], list[exp.Expr]]


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The two wraps, their values bound once (before the statement's last value, the persons
    left out): `wrap` puts a cohort under them, a copy each time."""

    outcome: exp.Select
    outer: exp.Select

    def wrap(self, cohort: exp.Select) -> exp.Select:
        """`cohort` (persons with their `index_date`) with each person's `outcome_event` and
        `days_at_risk`."""

        def followed() -> exp.Subquery:
            return exp.Subquery(this=cohort.copy(), alias=exp.TableAlias(this=FOLLOWED))

        found = exp.select(
            exp.Column(this=exp.Star(), table=exp.to_identifier(FOLLOWED)),
            col(FOLLOWED_UNTIL, OBSERVED_END),
            col(DIED_ON, DEATH_OF),
            col(OUTCOME_DATE, FIRST_OUTCOME),
        ).from_(followed(), copy=False)
        found = joined(found, _observation_end(followed()), OBSERVED_END, FOLLOWED, dated=True)
        found = joined(found, _death(), DEATH_OF, FOLLOWED, dated=False)
        first = self.outcome.copy().from_(followed(), copy=False)
        found = joined(found, first, FIRST_OUTCOME, FOLLOWED, dated=True)
        return self.outer.copy().from_(
            exp.Subquery(this=found, alias=exp.TableAlias(this=FOUND)), copy=False
        )


def per_index(
    keys: exp.Expr, key_alias: str, source: exp.Expr, on: exp.Expr, value: exp.Expr, name: str
) -> exp.Select:
    """`value` (an aggregate over `source`'s rows matching `on`) per person and index date of
    `keys` (aliased `key_alias`), under `name`: a correlated scalar subquery turned into a join
    on the person, which every engine runs as a hash or merge join (the date bounds left in
    the join's condition) rather than a nested loop over the dates. A person and index date
    no row of `source` matches are absent: NULL once joined back, as the subquery gave."""
    person, index = col("person_id", key_alias), col(INDEX_DATE, key_alias)
    return (
        exp.select(person, index, exp.alias_(value, name, copy=False))
        .from_(keys, copy=False)
        .join(source, on=on, join_type="INNER", copy=False)
        .group_by(person.copy(), index.copy(), copy=False)
    )


def joined(
    select: exp.Select, found: exp.Select, alias: str, onto: str, *, dated: bool
) -> exp.Select:
    """`select` LEFT JOIN `found` (aliased `alias`) on the person of `onto`, and on their
    index date when `found` is `per_index` (`dated`)."""
    on: exp.Expr = col("person_id", alias).eq(col("person_id", onto))
    if dated:
        on = exp.and_(on, col(INDEX_DATE, alias).eq(col(INDEX_DATE, onto)), copy=False)
    return select.join(
        exp.Subquery(this=found, alias=exp.TableAlias(this=alias)),
        on=on,
        join_type="LEFT",
        copy=False,
    )


def follow_up(
    outcome: Outcome, shifted: Shifted, spec_filter: SpecFilter, days_between: DaysBetween
) -> FollowUp:
    """The follow-up of `outcome`, its bounds bound through `shifted` and `spec_filter`."""
    first = _first_outcome(outcome, shifted, spec_filter)  # its bounds bound first
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
    return FollowUp(outcome=first, outer=outer)


def covering_end(keys: exp.Expr, key_alias: str) -> exp.Select:
    """Per person and index date of `keys`, the end of the observation period covering the
    index date (`followed_until`; the latest, should several)."""
    index = col(INDEX_DATE, key_alias)
    covering = exp.and_(
        col("person_id", OBSERVED).eq(col("person_id", key_alias)),
        col("observation_period_start_date", OBSERVED) <= index,
        col("observation_period_end_date", OBSERVED) >= index.copy(),
        copy=False,
    )
    return per_index(
        keys,
        key_alias,
        table(names.OBSERVATION_PERIOD, OBSERVED),
        covering,
        exp.func("MAX", col("observation_period_end_date", OBSERVED)),
        FOLLOWED_UNTIL,
    )


def _observation_end(followed: exp.Subquery) -> exp.Select:
    return covering_end(followed, FOLLOWED)


def _death() -> exp.Select:
    """Each person's date of death (the earliest, should the CDM hold several)."""
    return (
        exp.select(
            col("person_id", DIED),
            exp.alias_(exp.func("MIN", col("death_date", DIED)), DIED_ON, copy=False),
        )
        .from_(table(names.DEATH, DIED), copy=False)
        .group_by(col("person_id", DIED), copy=False)
    )


def _first_outcome(outcome: Outcome, shifted: Shifted, spec_filter: SpecFilter) -> exp.Select:
    """The first outcome event in the follow-up window, censoring aside, per person and index
    date: without its FROM, which `FollowUp.wrap` sets to the cohort."""
    source = names.EVENT_TABLES[outcome.event.domain]
    date = col(source.date, EVENT)
    index = col(INDEX_DATE, FOLLOWED)
    parts = [
        col("person_id", EVENT).eq(col("person_id", FOLLOWED)),
        *spec_filter(outcome.event),
        date >= shifted(index, outcome.window.start_days),
        date.copy() <= shifted(index, outcome.window.end_days),
    ]
    person, key_date = col("person_id", FOLLOWED), col(INDEX_DATE, FOLLOWED)
    return (
        exp.select(person, key_date, exp.alias_(exp.func("MIN", date.copy()), OUTCOME_DATE))
        .join(table(source.name, EVENT), on=exp.and_(*parts, copy=False), join_type="INNER")
        .group_by(person.copy(), key_date.copy(), copy=False)
    )
