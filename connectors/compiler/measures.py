"""The SQL of each measure: one aggregate per `MeasureKind`, computed per cell over the persons
of the cohort (the `cells` relation, or the cohort itself for the total), each as a result
column of its own name. `CompiledQuery.tabulate` reads a measure's values by that name.

A variable's statistics read two columns the cohort carries when the question has a variable
(`connectors.compiler.cohort`): each person's value as a clipped, centred whole unit
(`VALUE_UNITS`, NULL without a value) and its square less the public offset
(`VALUE_SQUARES`), as `schema.variables` defines them. An incidence rate's read the two
columns the cohort carries when the question has an outcome: whether the person's first
outcome falls in their follow-up (`OUTCOME_EVENT`, 1 or 0) and their days at risk
(`DAYS_AT_RISK`, 0 to the window's length)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sqlglot import exp

from connectors.compiler import names
from schema.codes import MeasureKind


@dataclass(frozen=True, slots=True)
class MeasureSql:
    """A measure's result column: its name (an allow-listed alias), the aggregate computing it,
    and its value for a group no row of the result stands for (the total of an empty cohort)."""

    column: str
    aggregate: Callable[[], exp.Expr]
    empty: int


def _distinct_persons() -> exp.Expr:
    # Person indexes, not ids: the ledger charges an index once per table, so an index is
    # counted once per cell (two CDM rows of one person count once).
    return exp.Count(this=exp.Distinct(expressions=[exp.column(names.PERSON_INDEX_COLUMN)]))


VALUE_UNITS: Final = "value_units"
VALUE_SQUARES: Final = "value_squares"


def _persons_with_a_value() -> exp.Expr:
    with_value = exp.Case().when(
        exp.column(VALUE_UNITS).is_(exp.null()).not_(),
        exp.column(names.PERSON_INDEX_COLUMN),
    )
    return exp.Count(this=exp.Distinct(expressions=[with_value]))


def _sum_of(column: str) -> Callable[[], exp.Expr]:
    def aggregate() -> exp.Expr:
        # A cell of nobody with a value sums to 0, not NULL.
        return exp.func("COALESCE", exp.Sum(this=exp.column(column)), exp.Literal.number(0))

    return aggregate


OUTCOME_EVENT: Final = "outcome_event"
DAYS_AT_RISK: Final = "days_at_risk"
# Each person's first and last day at risk (`connectors.compiler.follow_up`).
AT_RISK_FROM: Final = "at_risk_from"
AT_RISK_TO: Final = "at_risk_to"


def _persons_with_an_outcome() -> exp.Expr:
    # Distinct person indexes, as counts are: a person is one event however their CDM rows.
    with_outcome = exp.Case().when(
        exp.column(OUTCOME_EVENT).eq(exp.Literal.number(1)),
        exp.column(names.PERSON_INDEX_COLUMN),
    )
    return exp.Count(this=exp.Distinct(expressions=[with_outcome]))


MEASURE_SQL: Final[dict[MeasureKind, MeasureSql]] = {
    MeasureKind.PERSON_COUNT: MeasureSql("person_count", _distinct_persons, empty=0),
    MeasureKind.VALUE_N: MeasureSql("value_n", _persons_with_a_value, empty=0),
    MeasureKind.VALUE_SUM: MeasureSql("value_sum", _sum_of(VALUE_UNITS), empty=0),
    MeasureKind.VALUE_SUM_SQUARES: MeasureSql("value_sum_squares", _sum_of(VALUE_SQUARES), empty=0),
    MeasureKind.OUTCOME_EVENTS: MeasureSql("outcome_events", _persons_with_an_outcome, empty=0),
    MeasureKind.PERSON_DAYS: MeasureSql("person_days", _sum_of(DAYS_AT_RISK), empty=0),
}


def measure_column(kind: MeasureKind) -> exp.Expr:
    """The measure's aggregate, aliased to its column name."""
    sql = MEASURE_SQL[kind]
    return exp.alias_(sql.aggregate(), sql.column)
