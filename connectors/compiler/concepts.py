"""Resolving codes to OMOP concept ids, in a first, separate, cached statement.

Why not inline in the cohort statement: the vocabulary tables are large (millions of
`concept` rows, tens of millions of `concept_ancestor` rows) and never change while a
connector runs, whereas the same codes come back query after query. Resolved once, a code
becomes a bound list of ids matched with `= ANY($n)`, which DuckDB runs as a hash semi-join
(as fast as an inlined subquery, measured) and PostgreSQL as an array match.

A code matches concepts of its vocabulary with that `concept_code`. With `descendants`, also
every `concept_ancestor` descendant of those, and for ICD10 and ATC, whose hierarchy is in
their codes (ICD10 is not in `concept_ancestor` at all), every code of the same vocabulary
starting with it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Final

from sqlglot import exp
from sqlglot.errors import ErrorLevel

from connectors.compiler import names
from connectors.compiler.compiled import CompiledQuery, ConceptLookup, ConceptSet, Row, Statement
from connectors.compiler.sql import Params, check_dialect, col, table
from schema.codes import Vocabulary

PREFIX_VOCABULARIES: Final = frozenset({Vocabulary.ICD10, Vocabulary.ATC})
LIKE_ESCAPE: Final = "\\"


def like_prefix(code: str) -> str:
    """A LIKE pattern matching codes that start with `code`, wildcards in it escaped."""
    escaped = code.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", r"\%").replace("_", r"\_")
    return f"{escaped}%"


@lru_cache(maxsize=4096)
def compile_concept_lookup(concept_set: ConceptSet, *, dialect: str = "duckdb") -> ConceptLookup:
    check_dialect(dialect)
    params = Params()
    vocabulary = col("vocabulary_id", "c").eq(params.bind(concept_set.vocabulary.value))
    code = col("concept_code", "c")
    match: exp.Expr = code.eq(params.bind(concept_set.code))
    if concept_set.descendants and concept_set.vocabulary in PREFIX_VOCABULARIES:
        like = exp.Like(this=code.copy(), expression=params.bind(like_prefix(concept_set.code)))
        match = exp.paren(
            exp.or_(match, exp.Escape(this=like, expression=exp.Literal.string(LIKE_ESCAPE)))
        )
    matched = (
        exp.select(col("concept_id", "c"))
        .from_(table(names.CONCEPT, "c"))
        .where(vocabulary)
        .where(match)
    )
    statement: exp.Query = exp.select(exp.column("concept_id")).from_("matched")
    if concept_set.descendants:
        descendants = (
            exp.select(col("descendant_concept_id", "a"))
            .from_(table(names.CONCEPT_ANCESTOR, "a"))
            .join(
                table("matched", "m"),
                on=col("ancestor_concept_id", "a").eq(col("concept_id", "m")),
            )
        )
        statement = exp.union(statement, descendants, distinct=True)
    statement = statement.with_("matched", as_=matched)
    sql = statement.sql(dialect=dialect, pretty=True, unsupported_level=ErrorLevel.RAISE)
    return ConceptLookup(sql=sql, params=tuple(params.values), concept_set=concept_set)


Execute = Callable[[Statement], Awaitable[list[Row]]]


class ConceptResolver:
    """Binds a compiled query's concept sets to concept ids, remembering resolved sets.

    The cache lives as long as the connector's database connection: vocabularies change
    only when a hub reloads its database, which restarts the connector.
    """

    def __init__(self, execute: Execute, *, dialect: str, max_entries: int = 2048) -> None:
        self._execute = execute
        self._dialect = dialect
        self._max_entries = max_entries
        self._cache: OrderedDict[ConceptSet, tuple[int, ...]] = OrderedDict()

    async def resolve(self, concept_set: ConceptSet) -> tuple[int, ...]:
        cached = self._cache.get(concept_set)
        if cached is not None:
            self._cache.move_to_end(concept_set)
            return cached
        rows = await self._execute(compile_concept_lookup(concept_set, dialect=self._dialect))
        ids = tuple(sorted(int(row[0]) for row in rows))
        self._cache[concept_set] = ids
        if len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return ids

    async def bind(self, compiled: CompiledQuery) -> CompiledQuery:
        resolved: dict[ConceptSet, Sequence[int]] = {}
        for concept_set in compiled.concept_sets:
            resolved[concept_set] = await self.resolve(concept_set)
        return compiled.bind(resolved)
