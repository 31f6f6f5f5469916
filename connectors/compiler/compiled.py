"""What the compiler produces: SQL text with numbered parameters, the values to bind, and how
result rows map back to the query's tables."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from policies.perturbation import CELL_KEY_MODULUS
from schema.codes import Vocabulary
from schema.query import Breakdown, Code

Row = tuple[Any, ...]
DIALECTS = ("duckdb", "postgres")


class Statement(Protocol):
    """Anything a backend can execute: SQL with `$n` parameters and their values, in order."""

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

    @classmethod
    def of(cls, code: Code) -> ConceptSet:
        return cls(code.vocabulary, code.code, code.descendants)

    def __str__(self) -> str:
        return f"{self.vocabulary.value}:{self.code}{'+' if self.descendants else ''}"


@dataclass(frozen=True, slots=True)
class ConceptLookup:
    """The statement resolving one concept set; rows are `(concept_id,)`."""

    sql: str
    params: tuple[object, ...]
    concept_set: ConceptSet


@dataclass(frozen=True, slots=True)
class TableLayout:
    """Where one table's cells are among the result rows: the rows whose first column equals
    `grouping_id`, with the table's dimension values at `columns` (in the table's order)."""

    by: Breakdown
    grouping_id: int
    columns: tuple[int, ...]


class CountCell(NamedTuple):
    """One cell of a computed table: its key, its distinct-person count and its cell key
    (the sum of its persons' record keys modulo 2^31; policies.perturbation)."""

    key: tuple[str, ...]
    persons: int
    cell_key: int


TableRows = tuple[Breakdown, list[CountCell]]


@dataclass(frozen=True, slots=True)
class SqlStatement:
    """A statement and the values of its `$n` parameters, in order."""

    sql: str
    params: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class PopulationQuery(SqlStatement):
    """The statement listing the cohort's person ids, rows `(person_id,)`: what the
    differencing guard compares."""


@dataclass(frozen=True, slots=True)
class CohortTable:
    """The query as statements over a temporary table holding its cohort
    (`names.COHORT_TABLE`): the cohort is computed once, and both the differencing guard and
    the tables read it. For backends that may create temporary tables while only reading
    (DuckDB). `*_params` are the indexes, in `CompiledQuery.params`, of the values each
    statement binds (a statement binds only the values it uses, renumbered from `$1`)."""

    create_sql: str
    create_params: tuple[int, ...]
    persons_sql: str
    tables_sql: str
    tables_params: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    """A cohort query compiled for one dialect.

    Rows are `(grouping_id, *dimension columns, person_count, sum of record keys)`.
    `params[i]` binds `$i+1`; a `ConceptSet` among them must be bound to concept ids
    (`bind`) before execution.
    `fingerprint` identifies the SQL shape: equal for queries that differ only in values.
    `population_sql` lists the cohort's person ids with the same parameters; `cohort_table`
    is the same work in statements sharing one computation of the cohort.
    """

    sql: str
    params: tuple[object, ...]
    dialect: str
    tables: tuple[Breakdown, ...]
    layouts: tuple[TableLayout, ...]
    fingerprint: str
    population_sql: str
    cohort_table: CohortTable

    def population(self) -> PopulationQuery:
        return PopulationQuery(self.population_sql, self.params)

    def create_cohort(self) -> SqlStatement:
        """Creates the temporary table holding the cohort, with the columns the tables use."""
        steps = self.cohort_table
        return SqlStatement(steps.create_sql, tuple(self.params[i] for i in steps.create_params))

    def cohort_persons(self) -> SqlStatement:
        """Lists the person ids of the cohort table, rows `(person_id,)`."""
        return SqlStatement(self.cohort_table.persons_sql, ())

    def cohort_tables(self) -> SqlStatement:
        """Computes every table from the cohort table: rows as those of `sql`."""
        steps = self.cohort_table
        return SqlStatement(steps.tables_sql, tuple(self.params[i] for i in steps.tables_params))

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
        """Each table with its cells, sorted by key. The total table has one cell even when
        the database returned no row for it."""
        by_group: dict[int, list[Row]] = {}
        for row in rows:
            by_group.setdefault(int(row[0]), []).append(row)
        tables: list[TableRows] = []
        for layout in self.layouts:
            cells = sorted(
                CountCell(
                    tuple(str(row[1 + i]) for i in layout.columns),
                    int(row[-2]),
                    int(row[-1] or 0) % CELL_KEY_MODULUS,
                )
                for row in by_group.get(layout.grouping_id, [])
            )
            if not layout.by and not cells:
                cells = [CountCell((), 0, 0)]
            tables.append((layout.by, cells))
        return tables
