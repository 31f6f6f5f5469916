"""What differs between the databases a connector runs on: one `Dialect` per database.

The compilers build dialect-neutral sqlglot trees and ask the dialect for every part that an
engine spells its own way: how a bound value is written (`placeholder`), how a column is
matched against a bound list of ids (`any_of`) or left out of one long bound list of person
indexes (`not_in_long_list`), how the cohort goes into a temporary table and how the persons
the ledger leaves out are deleted from it; then `sql` prints the tree in the engine's sqlglot
dialect. A new database is one more instance here, registered in `DIALECTS`
(docs/adding-a-backend.md); nothing outside this module asks which database it is.

DuckDB and PostgreSQL share every part: `$n` placeholders, which both bind natively (DuckDB
by number, asyncpg as PostgreSQL's own), `= ANY($n)` over a bound list, and a list of person
indexes unnested from one array, which both turn into a hashed semi-join whatever its length.

Spark binds named parameters (`:p1`, `spark.sql(sql, args={"p1": ...})`), matches a list with
`ARRAY_CONTAINS`, keeps the cohort in a cached temporary view (`CACHE TABLE`) and, since a
view cannot be deleted from, leaves the ledger's exclusions out as it reads the view. Trino
binds positional `?` parameters and has no temporary tables (no backend runs it yet: its
statements are printed and checked, README "A hub on Trino").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from sqlglot import exp
from sqlglot.errors import ErrorLevel

from connectors.compiler.names import PERSON_INDEX_COLUMN

# `placeholder(n)`: the expression binding the statement's n-th value (from 1).
Placeholder = Callable[[int], exp.Expr]
# `match(column, placeholder)`: a predicate of `column` against a list bound to the placeholder.
ListMatch = Callable[[exp.Expr, exp.Expr], exp.Expr]
# `create(table, query)`: the statement filling a connection-local temporary table.
TemporaryTable = Callable[[str, exp.Query], exp.Expr]
# `days(later, earlier)`: the whole days from the date `earlier` to the date `later`.
DaysBetween = Callable[[exp.Expr, exp.Expr], exp.Expr]
# `date_of(year, month, day)`: the date of three whole numbers.
DateOf = Callable[[exp.Expr, exp.Expr, exp.Expr], exp.Expr]
# `delete(table, column, relation)`: deletes the rows of `table` whose `column` is listed in
# the one-column `relation` (of the same column name) the backend provides.
DeleteListed = Callable[[str, str, str], exp.Expr]


def numbered(n: int) -> exp.Parameter:
    """`$n`: a placeholder by number, so that one value can serve several places and the
    text does not depend on the order in which clauses print."""
    return exp.Parameter(this=exp.Literal.number(n))


def equals_any(column: exp.Expr, ids: exp.Expr) -> exp.Expr:
    """`column = ANY($n)`: `$n` is bound to a list of ids."""
    return exp.EQ(this=column, expression=exp.Any(this=exp.Paren(this=ids.copy())))


def not_in_unnested_array(column: exp.Expr, indexes: exp.Expr) -> exp.Expr:
    """`NOT column IN (SELECT UNNEST(CAST($n AS INT[])))`: a list of person indexes bound as
    one array, run as a hashed semi-join whatever its length."""
    array = exp.cast(indexes, exp.DataType.build("ARRAY<INT>", dialect="duckdb"))
    return exp.not_(column.isin(query=exp.select(exp.Unnest(expressions=[array])), copy=False))


def named(n: int) -> exp.Placeholder:
    """`:pn`: Spark's named parameter, bound by name, so one value serves several places."""
    return exp.Placeholder(this=f"p{n}")


def positional(n: int) -> exp.Placeholder:
    """`?`: Trino's only placeholder, bound by position (a value serving two places is bound
    twice)."""
    del n
    return exp.Placeholder()


def array_contains(column: exp.Expr, ids: exp.Expr) -> exp.Expr:
    """`ARRAY_CONTAINS(:pn, column)` (Spark), `CONTAINS(?, column)` (Trino): `:pn` is bound to
    a list of ids."""
    return exp.ArrayContains(this=ids.copy(), expression=column)


def not_in_exploded_array(column: exp.Expr, indexes: exp.Expr) -> exp.Expr:
    """`NOT column IN (SELECT EXPLODE(:pn))`: Spark's null-aware anti-join over a bound array,
    hashed (broadcast) whatever its length."""
    return exp.not_(column.isin(query=exp.select(exp.Explode(this=indexes.copy())), copy=False))


def not_in_unnest_relation(column: exp.Expr, indexes: exp.Expr) -> exp.Expr:
    """`NOT column IN (SELECT person_index FROM UNNEST(CAST(? AS ARRAY(INTEGER))) AS
    t(person_index))`: Trino unnests only in FROM."""
    array = exp.cast(indexes, exp.DataType.build("ARRAY<INT>", dialect="duckdb"))
    unnested = exp.Unnest(
        expressions=[array],
        alias=exp.TableAlias(
            this=exp.to_identifier("t"), columns=[exp.to_identifier(PERSON_INDEX_COLUMN)]
        ),
    )
    listed = exp.select(exp.column(PERSON_INDEX_COLUMN)).from_(unnested)
    return exp.not_(column.isin(query=listed, copy=False))


def cache_table(name: str, query: exp.Query) -> exp.Expr:
    """`CACHE TABLE name AS query`: a session-local temporary view, computed at once and kept
    (memory, then disk) until it is uncached; the only temporary relation Spark fills from a
    query while the CDM is only read."""
    return exp.Cache(this=exp.to_table(name), expression=query)


def create_temporary_table(name: str, query: exp.Query) -> exp.Expr:
    """`CREATE TEMPORARY TABLE name AS query`."""
    return exp.Create(
        this=exp.to_table(name),
        kind="TABLE",
        expression=query,
        properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
    )


def delete_listed(table: str, column: str, relation: str) -> exp.Expr:
    """`DELETE FROM table WHERE column IN (SELECT column FROM relation)`. A relation, not a
    bound list: DuckDB converts a list parameter element by element (0.76 s for 500,000
    persons against 0.05 s for a scanned NumPy column)."""
    return exp.delete(
        exp.to_table(table),
        where=exp.column(column).isin(
            query=exp.select(exp.column(column)).from_(exp.to_table(relation)), copy=False
        ),
    )


def date_difference(later: exp.Expr, earlier: exp.Expr) -> exp.Expr:
    """`later - earlier`: DuckDB and PostgreSQL subtract dates to whole days (an integer)."""
    return exp.paren(exp.Sub(this=later, expression=exp.paren(earlier)))


def date_diff(later: exp.Expr, earlier: exp.Expr) -> exp.Expr:
    """DATEDIFF in days, as the engine spells it (where a date less a date is an interval)."""
    return exp.DateDiff(this=later, expression=earlier, unit=exp.var("DAY"))


def make_date(year: exp.Expr, month: exp.Expr, day: exp.Expr) -> exp.Expr:
    """`MAKE_DATE(year, month, day)` (DuckDB, PostgreSQL, Spark)."""
    return exp.Anonymous(this="MAKE_DATE", expressions=[year, month, day])


def formatted_date(year: exp.Expr, month: exp.Expr, day: exp.Expr) -> exp.Expr:
    """`CAST(FORMAT('%04d-%02d-%02d', year, month, day) AS DATE)`: Trino has no function
    making a date of its parts."""
    text = exp.func("FORMAT", exp.Literal.string("%04d-%02d-%02d"), year, month, day)
    return exp.cast(text, exp.DataType.Type.DATE)


@dataclass(frozen=True, slots=True)
class Dialect:
    """One database's way of writing what the compilers build.

    `name` keys the registry, names golden files (`<query>.<name>.sql`) and is part of a
    compiled query's fingerprint; `sqlglot` is the sqlglot dialect statements print in.
    `temporary_table` is None for an engine whose read-only sessions may not create one: the
    compiler then writes no cohort-table statements (`CompiledQuery.cohort_table`), and the
    backend computes the cohort twice in one snapshot instead (`delete_listed` unused).
    `delete_listed` is None for an engine that cannot delete from its temporary table: the
    statement computing the tables from it then leaves out the persons of the relation
    `names.EXCLUDED_PERSONS` itself."""

    name: str
    sqlglot: str
    placeholder: Placeholder = numbered
    any_of: ListMatch = equals_any
    not_in_long_list: ListMatch = not_in_unnested_array
    temporary_table: TemporaryTable | None = create_temporary_table
    delete_listed: DeleteListed | None = delete_listed
    # The function numbering a row's grouping set from several columns (a bit per column,
    # the first the highest): the standard's GROUPING(a, b), Spark's GROUPING_ID(a, b).
    grouping_bits: str | None = None
    # Whole days between two dates (an incidence rate's or a survival question's follow-up).
    days_between: DaysBetween = date_difference
    # A date from its year, month and day (a rate's person-time split at birthdays).
    date_of: DateOf = make_date

    def sql(self, expression: exp.Expr, *, pretty: bool = True) -> str:
        """`expression` as this database's SQL text; changes the tree in place (pass one of
        its own) and raises on anything the engine cannot say."""
        if self.placeholder is not numbered or self.grouping_bits is not None:
            # The compilers number their values (`Params`); an engine writing them otherwise
            # gets its own expression for each number.
            expression = expression.transform(self._placed, copy=False)
        return expression.sql(
            dialect=self.sqlglot, pretty=pretty, unsupported_level=ErrorLevel.RAISE, copy=False
        )

    def _placed(self, node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Parameter):
            return self.placeholder(int(node.this.this))
        if isinstance(node, exp.Grouping) and self.grouping_bits is not None:
            return exp.Anonymous(this=self.grouping_bits, expressions=node.expressions)
        return node

    def __str__(self) -> str:
        return self.name


DUCKDB: Final = Dialect("duckdb", sqlglot="duckdb")
# A read-only PostgreSQL session (every connector session is one) may not create even a
# temporary table.
POSTGRES: Final = Dialect("postgres", sqlglot="postgres", temporary_table=None)

# A view holds the cohort (`CACHE TABLE`); Parquet and Hive tables take no DELETE.
SPARK: Final = Dialect(
    "spark",
    sqlglot="spark",
    placeholder=named,
    any_of=array_contains,
    not_in_long_list=not_in_exploded_array,
    temporary_table=cache_table,
    delete_listed=None,
    grouping_bits="GROUPING_ID",  # Spark's GROUPING takes one column
    days_between=date_diff,
)
# Trino has no temporary tables at all: a backend would run the cohort twice in one snapshot,
# as PostgreSQL does.
TRINO: Final = Dialect(
    "trino",
    sqlglot="trino",
    placeholder=positional,
    any_of=array_contains,
    not_in_long_list=not_in_unnest_relation,
    temporary_table=None,
    delete_listed=None,
    days_between=date_diff,
    date_of=formatted_date,
)

# Every database the compilers write for, by name.
DIALECTS: Final[Mapping[str, Dialect]] = {d.name: d for d in (DUCKDB, POSTGRES, SPARK, TRINO)}


def dialect_named(name: str) -> Dialect:
    """The registered dialect `name`; a ValueError naming those there are otherwise."""
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(
            f"unsupported dialect {name!r}; expected one of {', '.join(DIALECTS)}"
        ) from None
