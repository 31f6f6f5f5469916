"""What the compiler produces: SQL text with numbered parameters, the values to bind, and how
result rows map back to the query's tables."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from connectors.compiler.dialect import Dialect
from schema.code_ranges import range_members
from schema.codes import MeasureKind, Vocabulary
from schema.query import Breakdown, Code

Row = tuple[Any, ...]
# The result column telling which table a row belongs to (`TableLayout.grouping_id`).
GROUPING_COLUMN = "grouping_id"


class Statement(Protocol):
    """Anything a backend can execute: SQL with numbered parameters (`$n`, as the dialect
    writes them) and their values, in order."""

    @property
    def sql(self) -> str: ...

    @property
    def params(self) -> tuple[object, ...]: ...


@dataclass(frozen=True, slots=True)
class ConceptSet:
    """A code to resolve to OMOP concept ids before a query runs; stands in a query's params
    until `CompiledQuery.bind` replaces it with the resolved ids."""

    vocabulary: Vocabulary
    code: str
    descendants: bool
    to: str | None = None  # the last code of a range starting at `code` (`Code.to`)

    @classmethod
    def of(cls, code: Code) -> ConceptSet:
        return cls(code.vocabulary, code.code, code.descendants, code.to)

    def members(self) -> tuple[str, ...]:
        """The codes this names: its code, or each code of its range."""
        if self.to is None:
            return (self.code,)
        return range_members(self.vocabulary, self.code, self.to)

    def __str__(self) -> str:
        codes = self.code if self.to is None else f"{self.code}-{self.to}"
        return f"{self.vocabulary.value}:{codes}{'+' if self.descendants else ''}"


@dataclass(frozen=True, slots=True)
class ConceptLookup:
    """The statement resolving one concept set; rows are `(concept_id, vocabulary_id)`, the
    vocabulary null for a concept reached as a descendant."""

    sql: str
    params: tuple[object, ...]
    concept_set: ConceptSet


@dataclass(frozen=True, slots=True)
class TableLayout:
    """Where one table's cells are among the result rows: the rows whose `grouping_id` column
    equals `grouping_id`, with the table's dimension values in the result columns named
    `columns` (in the table's order)."""

    by: Breakdown
    grouping_id: int
    columns: tuple[str, ...]


class TabulatedCell(NamedTuple):
    """One cell of a computed table: its key and the value of each measure asked (exact, as
    the database computed it: never released as such)."""

    key: tuple[str, ...]
    values: Mapping[MeasureKind, int]


TableRows = tuple[Breakdown, list[TabulatedCell]]


@dataclass(frozen=True, slots=True)
class SqlStatement:
    """A statement and the values of its `$n` parameters, in order."""

    sql: str
    params: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class PopulationQuery(SqlStatement):
    """The statement listing the cohort's person indexes, rows `(person_index,)`: whom the
    ledger decides on."""


@dataclass(frozen=True, slots=True)
class CohortTable:
    """The query as statements over a temporary table holding its cohort
    (`names.COHORT_TABLE`): the cohort is computed once, and both the ledger and the tables
    read it. For engines that may create temporary tables while only reading (DuckDB; a
    dialect says so with its `temporary_table`).
    `*_params` are the indexes, in `CompiledQuery.params`, of the values each statement binds
    (a statement binds only the values it uses, renumbered from `$1`); `delete_sql` binds
    nothing: it deletes the persons listed in the relation `names.EXCLUDED_PERSONS` (one
    column, `person_index`), which the backend provides while it runs. Where the dialect
    cannot delete from its temporary table (`delete_sql` None), `tables_sql` leaves out the
    persons of that relation itself: the backend provides it, empty or not, for every run."""

    create_sql: str
    create_params: tuple[int, ...]
    persons_sql: str
    delete_sql: str | None
    tables_sql: str
    tables_params: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    """A cohort query compiled for one dialect.

    Rows have the result columns `columns`, named by the statement's aliases: the table's
    grouping id (`GROUPING_COLUMN`), the dimension columns, then one column per measure asked
    (`measures`: each measure's column, `connectors.compiler.measures`); `tabulate` reads
    them by name.
    `params[i]` binds `$i+1`; a `ConceptSet` among them must be bound to concept ids
    (`bind`) before execution; `params[excluded_param]` holds the person indexes to leave out
    (none: run as it is, the query counts everyone; `tables_statement` binds others).
    `fingerprint` identifies the SQL shape: equal for queries that differ only in values.
    `population_sql` lists the cohort's person indexes (binding the params at
    `population_params`); `cohort_table` is the same work in statements sharing one
    computation of the cohort (none where the dialect has no temporary tables).
    """

    sql: str
    params: tuple[object, ...]
    dialect: Dialect
    tables: tuple[Breakdown, ...]
    layouts: tuple[TableLayout, ...]
    columns: tuple[str, ...]
    measures: tuple[tuple[MeasureKind, str], ...]
    empty: tuple[tuple[MeasureKind, int], ...]
    fingerprint: str
    population_sql: str
    population_params: tuple[int, ...]
    cohort_table: CohortTable | None
    excluded_param: int

    def population(self) -> PopulationQuery:
        return PopulationQuery(self.population_sql, self._params(self.population_params))

    def tables_statement(self, excluded: NDArray[np.uint32]) -> SqlStatement:
        """Computes every table without the persons at `excluded` (person indexes)."""
        params = list(self.params)
        params[self.excluded_param] = _indexes(excluded)
        return SqlStatement(self.sql, tuple(params))

    def delete_excluded(self) -> SqlStatement | None:
        """Deletes the persons listed in `names.EXCLUDED_PERSONS` from the cohort table; None
        where `cohort_tables` leaves them out itself (the dialect's `delete_listed`)."""
        delete = self._steps().delete_sql
        return None if delete is None else SqlStatement(delete, ())

    def _steps(self) -> CohortTable:
        if self.cohort_table is None:
            raise ValueError(f"the {self.dialect} dialect computes no cohort table")
        return self.cohort_table

    def _params(self, indexes: tuple[int, ...]) -> tuple[object, ...]:
        return tuple(self.params[i] for i in indexes)

    def create_cohort(self) -> SqlStatement:
        """Creates the temporary table holding the cohort, with the columns the tables use."""
        steps = self._steps()
        return SqlStatement(steps.create_sql, self._params(steps.create_params))

    def cohort_persons(self) -> SqlStatement:
        """Lists the person indexes of the cohort table, rows `(person_index,)`."""
        return SqlStatement(self._steps().persons_sql, ())

    def cohort_tables(self) -> SqlStatement:
        """Computes every table from the cohort table: rows as those of `sql`."""
        steps = self._steps()
        return SqlStatement(steps.tables_sql, self._params(steps.tables_params))

    @property
    def concept_sets(self) -> tuple[ConceptSet, ...]:
        return tuple(dict.fromkeys(p for p in self.params if isinstance(p, ConceptSet)))

    @property
    def bound(self) -> bool:
        return not any(isinstance(p, ConceptSet) for p in self.params)

    def bind(self, concept_ids: Mapping[ConceptSet, Sequence[int]]) -> CompiledQuery:
        """The same query with each concept set replaced by its list of concept ids."""
        params = tuple(
            list(concept_ids[p]) if isinstance(p, ConceptSet) else p for p in self.params
        )
        return dataclasses.replace(self, params=params)

    def tabulate(self, rows: Sequence[Row]) -> list[TableRows]:
        """Each table with its cells, sorted by key, each cell with its measures' values. The
        total table has one cell even when the database returned no row for it (each measure
        then has its `empty` value)."""
        position = {name: i for i, name in enumerate(self.columns)}
        group = position[GROUPING_COLUMN]
        measures = [(kind, position[column]) for kind, column in self.measures]
        by_group: dict[int, list[Row]] = {}
        for row in rows:
            by_group.setdefault(int(row[group]), []).append(row)
        tables: list[TableRows] = []
        for layout in self.layouts:
            at = [position[column] for column in layout.columns]
            cells = sorted(
                (
                    TabulatedCell(
                        tuple(str(row[i]) for i in at), {k: int(row[i]) for k, i in measures}
                    )
                    for row in by_group.get(layout.grouping_id, [])
                ),
                key=lambda cell: cell.key,
            )
            if not layout.by and not cells:
                cells = [TabulatedCell((), dict(self.empty))]
            tables.append((layout.by, cells))
        return tables


def _indexes(excluded: NDArray[np.uint32]) -> list[int]:
    # A list of Python ints binds as an integer array in both DuckDB and asyncpg.
    indexes: list[int] = np.asarray(excluded, dtype=np.int64).tolist()
    return indexes
