"""How a node computes each breakdown dimension: its output column and the expression giving
a cohort person's value, one entry per dimension a node computes (`schema.dimensions` says
which: JURISDICTION is the gateway's).

An expression reads a person's columns (`PersonColumns`) and yields the cell key, spelled as
`schema.dimensions` allows (its key domain): the gateway rejects an answer with any other key.
Which columns it reads (`DimensionSql.reads`) is found from the expression itself, and says
what the value depends on: a dimension reading the person's first dating event makes the
statement compute it (CTE `index_event`, see `connectors.compiler.cohort`) and makes the index
event part of the question (`connectors.canonical`); one reading the age, when ages are taken.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Final

from sqlglot import exp

from connectors.compiler.names import GENDER_CONCEPT_IDS
from connectors.compiler.sql import text
from schema.codes import Dimension
from schema.dimensions import DIMENSIONS, UNKNOWN_KEY


@dataclass(frozen=True, slots=True)
class PersonColumns:
    """The columns of one cohort person a dimension's value is computed from. Each is a
    template: an expression copies what it uses, so no two trees share a node."""

    gender_concept_id: exp.Column
    # Age in whole years at the question's age date.
    age: exp.Column
    # The date of the person's first dating event (NULL without one); read only by a
    # `dated` dimension.
    index_date: exp.Column
    # The lower edge of the bin of the question's variable the person's value falls in, as
    # its cell key (NULL without a value; only in questions with a variable's bins).
    value_bin: exp.Column
    # Where the person left a survival question's follow-up, as its FOLLOW_UP cell key
    # (`schema.survival`; only in survival questions).
    follow_up: exp.Column


# Each person column, as a bare column named after its field: what an expression reads.
_MARKERS: Final = PersonColumns(**{f.name: exp.column(f.name) for f in fields(PersonColumns)})
PersonColumn = str  # the name of a `PersonColumns` field


@dataclass(frozen=True, slots=True)
class DimensionSql:
    dimension: Dimension
    # The output column (an SQL name: a constant here, never from a query).
    column: str
    value: Callable[[PersonColumns], exp.Expr]

    @property
    def reads(self) -> frozenset[PersonColumn]:
        """The person's columns the value is computed from."""
        return _reads(self.value)

    @property
    def dated(self) -> bool:
        """Whether the value reads the person's first dating event."""
        return "index_date" in self.reads


@functools.cache
def _reads(value: Callable[[PersonColumns], exp.Expr]) -> frozenset[PersonColumn]:
    return frozenset(c.name for c in value(_MARKERS).find_all(exp.Column))


def _sex(person: PersonColumns) -> exp.Expr:
    case = exp.Case(this=person.gender_concept_id.copy())
    for sex, concept_id in GENDER_CONCEPT_IDS.items():
        case = case.when(exp.Literal.number(concept_id), exp.Literal.string(sex.value))
    return case.else_(exp.Literal.string(UNKNOWN_KEY))


def _age_band(width: int) -> Callable[[PersonColumns], exp.Expr]:
    def value(person: PersonColumns) -> exp.Expr:
        age = person.age.copy()
        low = exp.Sub(
            this=age, expression=exp.Mod(this=age.copy(), expression=exp.Literal.number(width))
        )
        high = exp.Add(this=low.copy(), expression=exp.Literal.number(width - 1))
        return exp.DPipe(
            this=exp.DPipe(this=text(low), expression=exp.Literal.string("-")),
            expression=text(high),
        )

    return value


def _calendar_year(person: PersonColumns) -> exp.Expr:
    year = exp.Extract(this=exp.var("YEAR"), expression=person.index_date.copy())
    return exp.func("COALESCE", text(year), exp.Literal.string(UNKNOWN_KEY))


def _age_band_sql(dimension: Dimension) -> DimensionSql:
    width = DIMENSIONS[dimension].age_band_width
    assert width is not None, f"{dimension.value} is not an age band"
    return DimensionSql(dimension, dimension.value.lower(), _age_band(width))


def _value_bin(person: PersonColumns) -> exp.Expr:
    return exp.func("COALESCE", person.value_bin.copy(), exp.Literal.string(UNKNOWN_KEY))


def _follow_up(person: PersonColumns) -> exp.Expr:
    return person.follow_up.copy()


ENTRIES: Final[tuple[DimensionSql, ...]] = (
    DimensionSql(Dimension.SEX, "sex", _sex),
    _age_band_sql(Dimension.AGE_BAND_5),
    _age_band_sql(Dimension.AGE_BAND_10),
    _age_band_sql(Dimension.AGE_BAND_20),
    DimensionSql(Dimension.CALENDAR_YEAR, "calendar_year", _calendar_year),
    DimensionSql(Dimension.VALUE_BIN, "value_bin_key", _value_bin),
    DimensionSql(Dimension.FOLLOW_UP, "follow_up_key", _follow_up),
)


def sql_registry(entries: tuple[DimensionSql, ...]) -> Mapping[Dimension, DimensionSql]:
    """The entries by dimension: one for every dimension a node computes, none for another."""
    by_dimension = {entry.dimension: entry for entry in entries}
    computed = {d for d, spec in DIMENSIONS.items() if spec.node_computed}
    missing = sorted(computed - by_dimension.keys())
    extra = sorted(by_dimension.keys() - computed)
    if missing or extra or len(by_dimension) != len(entries):
        raise ValueError(
            f"dimension SQL: missing {[d.value for d in missing]}, not computed by a node "
            f"{[d.value for d in extra]}, {len(entries) - len(by_dimension)} repeated"
        )
    return MappingProxyType(by_dimension)


DIMENSION_SQL: Final = sql_registry(ENTRIES)
