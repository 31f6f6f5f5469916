"""The SQL of each measure: one aggregate per `MeasureKind`, computed per cell over the persons
of the cohort (the `cells` relation, or the cohort itself for the total), each as a result
column of its own name. `CompiledQuery.tabulate` reads a measure's values by that name."""

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


MEASURE_SQL: Final[dict[MeasureKind, MeasureSql]] = {
    MeasureKind.PERSON_COUNT: MeasureSql("person_count", _distinct_persons, empty=0),
}


def measure_column(kind: MeasureKind) -> exp.Expr:
    """The measure's aggregate, aliased to its column name."""
    sql = MEASURE_SQL[kind]
    return exp.alias_(sql.aggregate(), sql.column)
