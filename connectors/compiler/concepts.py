"""Resolving codes to OMOP concept ids, in a first, separate, cached statement.

Why not inline in the cohort statement: the vocabulary tables are large (millions of
`concept` rows, tens of millions of `concept_ancestor` rows) and never change while a
connector runs, whereas the same codes come back query after query. Resolved once, a code
becomes a bound list of ids matched with the dialect's `any_of` (`= ANY($n)`), which DuckDB
runs as a hash semi-join (as fast as an inlined subquery, measured) and PostgreSQL as an
array match.

A code matches concepts of its vocabulary with that `concept_code`; an ICD-10 code also
matches the national modifications a CDM may hold ICD-10 under (`LOOKUP_VOCABULARIES`: CIM10,
ICD10GM, ICD10CM), spelt with or without its dot. With `descendants`, also every
`concept_ancestor` descendant of those, and for ICD10 and ATC, whose hierarchy is in their
codes (ICD-10 is not in `concept_ancestor` at all), every code of the same vocabularies
starting with it.

Matched concepts are source concepts (what event tables keep in `*_source_concept_id`) or
standard ones (`*_concept_id`), and a criterion matches either column: a CDM that recorded
`ICD10GM E11.90` with its 'Maps to' standard concept SNOMED `44054006` is found by `ICD10 E11`
through the first column, by `SNOMED 44054006` through the second.

A code that matches no concept is unknown to the node: the lookup reads the vocabulary tables
only, never a person's record, so saying so discloses nothing about anyone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from sqlglot import exp

from connectors.compiler import names
from connectors.compiler.compiled import (
    CompiledQuery,
    ConceptLookup,
    ConceptSet,
    Row,
    SqlStatement,
    Statement,
)
from connectors.compiler.dialect import DUCKDB, Dialect
from connectors.compiler.sql import Params, col, table
from schema.codes import LOOKUP_VOCABULARIES, Vocabulary

PREFIX_VOCABULARIES: Final = frozenset({Vocabulary.ICD10, Vocabulary.ATC})
LIKE_ESCAPE: Final = "\\"


def like_prefix(code: str) -> str:
    """A LIKE pattern matching codes that start with `code`, wildcards in it escaped."""
    escaped = code.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", r"\%").replace("_", r"\_")
    return f"{escaped}%"


def code_forms(concept_set: ConceptSet) -> tuple[str, ...]:
    """The spellings a code (each code of a range) may have in a CDM's `concept` table: as
    written and, for ICD-10, without its dot too (OMOP's ICD-10 vocabularies keep the dot, but
    a site-local or national one may not)."""
    forms = list(concept_set.members())
    if concept_set.vocabulary is Vocabulary.ICD10:
        forms += [code.replace(".", "") for code in forms]
    return tuple(dict.fromkeys(forms))


def _range_match(
    concept_set: ConceptSet, code: exp.Expr, params: Params, dialect: Dialect
) -> exp.Expr:
    """A range's codes, as bound lists: each code itself or, with descendants, every code
    starting with one of them (its first characters, as many as the range's codes have, among
    the range's codes: a list of every spelling's length)."""
    forms = code_forms(concept_set)
    if not concept_set.descendants:
        return dialect.any_of(code, params.bind(list(forms)))
    by_length: dict[int, list[str]] = {}
    for form in forms:
        by_length.setdefault(len(form), []).append(form)
    alternatives = [
        dialect.any_of(
            exp.Substring(
                this=code.copy(), start=exp.Literal.number(1), length=params.bind(length)
            ),
            params.bind(spellings),
        )
        for length, spellings in by_length.items()
    ]
    return exp.paren(exp.or_(*alternatives)) if len(alternatives) > 1 else alternatives[0]


@lru_cache(maxsize=4096)
def compile_concept_lookup(concept_set: ConceptSet, *, dialect: Dialect = DUCKDB) -> ConceptLookup:
    params = Params()
    vocabulary = dialect.any_of(
        col("vocabulary_id", "c"),
        params.bind(list(LOOKUP_VOCABULARIES[concept_set.vocabulary])),
    )
    code = col("concept_code", "c")
    match = (
        _code_match(concept_set, code, params)
        if concept_set.to is None
        else _range_match(concept_set, code, params, dialect)
    )
    matched = (
        exp.select(col("concept_id", "c"), col("vocabulary_id", "c"))
        .from_(table(names.CONCEPT, "c"))
        .where(vocabulary)
        .where(match)
    )
    statement: exp.Query = exp.select(exp.column("concept_id"), exp.column("vocabulary_id")).from_(
        "matched"
    )
    if concept_set.descendants:
        # Descendants are reached through the hierarchy, not found in a vocabulary the
        # question names: they carry no vocabulary_id.
        descendants = (
            exp.select(
                col("descendant_concept_id", "a"),
                exp.cast(exp.null(), exp.DataType.Type.TEXT),
            )
            .from_(table(names.CONCEPT_ANCESTOR, "a"))
            .join(
                table("matched", "m"),
                on=col("ancestor_concept_id", "a").eq(col("concept_id", "m")),
            )
        )
        statement = exp.union(statement, descendants, distinct=True)
    statement = statement.with_("matched", as_=matched)
    return ConceptLookup(
        sql=dialect.sql(statement), params=tuple(params.values), concept_set=concept_set
    )


def _code_match(concept_set: ConceptSet, code: exp.Expr, params: Params) -> exp.Expr:
    """One code: each of its spellings and, with descendants where the hierarchy is in the
    codes, every code starting with one."""
    forms = code_forms(concept_set)
    alternatives: list[exp.Expr] = [code.eq(params.bind(form)) for form in forms]
    if concept_set.descendants and concept_set.vocabulary in PREFIX_VOCABULARIES:
        for form in forms:
            like = exp.Like(this=code.copy(), expression=params.bind(like_prefix(form)))
            alternatives.append(exp.Escape(this=like, expression=exp.Literal.string(LIKE_ESCAPE)))
    return exp.paren(exp.or_(*alternatives)) if len(alternatives) > 1 else alternatives[0]


CONCEPT_COLUMNS: Final = ("concept_id", "vocabulary_id", "concept_code", "concept_name")


def compile_concept_names(ids: Sequence[int], *, limit: int, dialect: Dialect) -> SqlStatement:
    """The first `limit` of the concepts `ids` (by vocabulary and code), rows
    `(concept_id, vocabulary_id, concept_code, concept_name, standard_concept)`."""
    params = Params()
    c = [col(name, "c") for name in CONCEPT_COLUMNS]
    statement = (
        exp.select(*c, col("standard_concept", "c"))
        .from_(table(names.CONCEPT, "c"))
        .where(dialect.any_of(col("concept_id", "c"), params.bind(list(ids))))
        .order_by(c[1].copy(), c[2].copy(), c[0].copy())
        .limit(limit)
    )
    return SqlStatement(dialect.sql(statement), tuple(params.values))


@dataclass(frozen=True, slots=True)
class Resolved:
    """What one concept set resolved to at this node: its concept ids (none: the node's
    vocabulary does not hold the code) and the vocabularies the code itself was found in."""

    ids: tuple[int, ...]
    vocabularies: tuple[str, ...]
    # The concepts named by the code itself (the rest of `ids` are reached as descendants).
    matched: tuple[int, ...] = ()

    @property
    def known(self) -> bool:
        return bool(self.ids)


@dataclass(frozen=True, slots=True)
class Resolution:
    """A compiled query's codes resolved: the query bound to concept ids, the codes the
    node's vocabulary does not hold, and the vocabularies the others were found in."""

    query: CompiledQuery
    unknown: tuple[ConceptSet, ...]
    vocabularies: tuple[str, ...]


Execute = Callable[[Statement], Awaitable[list[Row]]]


class ConceptResolver:
    """Binds a compiled query's concept sets to concept ids, remembering resolved sets.

    The cache lives as long as the connector's database connection: vocabularies change
    only when a hub reloads its database, which restarts the connector.
    """

    def __init__(self, execute: Execute, *, dialect: Dialect, max_entries: int = 2048) -> None:
        self._execute = execute
        self._dialect = dialect
        self._max_entries = max_entries
        self._cache: OrderedDict[ConceptSet, Resolved] = OrderedDict()

    async def resolve(self, concept_set: ConceptSet) -> Resolved:
        cached = self._cache.get(concept_set)
        if cached is not None:
            self._cache.move_to_end(concept_set)
            return cached
        rows = await self._execute(compile_concept_lookup(concept_set, dialect=self._dialect))
        resolved = Resolved(
            ids=tuple(sorted({int(row[0]) for row in rows})),
            vocabularies=tuple(sorted({str(row[1]) for row in rows if row[1] is not None})),
            matched=tuple(sorted({int(row[0]) for row in rows if row[1] is not None})),
        )
        self._cache[concept_set] = resolved
        if len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return resolved

    async def resolution(self, compiled: CompiledQuery) -> Resolution:
        resolved = {cs: await self.resolve(cs) for cs in compiled.concept_sets}
        return Resolution(
            query=compiled.bind({cs: r.ids for cs, r in resolved.items()}),
            unknown=tuple(cs for cs, r in resolved.items() if not r.known),
            vocabularies=tuple(sorted({v for r in resolved.values() for v in r.vocabularies})),
        )

    async def bind(self, compiled: CompiledQuery) -> CompiledQuery:
        return (await self.resolution(compiled)).query
