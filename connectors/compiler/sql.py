"""Small sqlglot builders shared by the compilers: names come from `names`, values only
through `Params`, which hands out numbered placeholders (`$1`, `$2`, …; each dialect writes
them its own way when it prints a statement, `Dialect.placeholder`)."""

from __future__ import annotations

from sqlglot import exp

from connectors.compiler.dialect import numbered


class Params:
    """Collects bound values. Numbered placeholders make the text independent of the order in
    which a dialect prints clauses (a CTE is printed before the query that was built first),
    and let one value serve several places."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def bind(self, value: object) -> exp.Parameter:
        self.values.append(value)
        return numbered(len(self.values))


def renumbered(expression: exp.Expr) -> tuple[exp.Expr, tuple[int, ...]]:
    """`expression` with its placeholders renumbered from `$1` in their original order, and
    the index (from 0) in the original values of the value each new placeholder binds: a
    statement built from part of a query binds only the values it uses (DuckDB and
    PostgreSQL refuse a value bound to no placeholder). Changes `expression` in place: pass a
    tree of its own."""
    used = sorted({_number(p) for p in expression.find_all(exp.Parameter)})
    new = {old: i + 1 for i, old in enumerate(used)}

    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Parameter):
            return numbered(new[_number(node)])
        return node

    return expression.transform(swap, copy=False), tuple(old - 1 for old in used)


def _number(parameter: exp.Parameter) -> int:
    return int(parameter.this.this)


def col(name: str, table: str) -> exp.Column:
    return exp.column(name, table=table)


def table(name: str, alias: str) -> exp.Expr:
    return exp.to_table(name).as_(alias)


def text(expression: exp.Expr) -> exp.Cast:
    return exp.cast(expression, exp.DataType.Type.TEXT)


def exists(query: exp.Select) -> exp.Exists:
    return exp.Exists(this=query)
