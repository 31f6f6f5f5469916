"""An in-memory backend for tests: canned rows instead of a database, every statement
recorded (in the spirit of httpx's MockTransport)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Final

from connectors.backends.base import CohortRun, PersonIndexes, person_indexes
from connectors.compiler import (
    DUCKDB,
    CompiledQuery,
    ConceptLookup,
    ConceptSet,
    Dialect,
    PopulationQuery,
    Row,
    Statement,
)
from connectors.errors import BackendFailed, BackendNotReady

Handler = Callable[[Statement], Sequence[Row]]
KNOWN_CONCEPT_ID: Final = 2_000_000_001


class _Cohort:
    def __init__(self, backend: FakeBackend, query: CompiledQuery) -> None:
        self._backend = backend
        self._query = query

    async def optout_register_version(self) -> str:
        return await self._backend.optout_register_version()

    async def data_release(self) -> str:
        return await self._backend.data_release()

    async def persons(self) -> PersonIndexes:
        rows = await self._backend.execute(self._query.population())
        return person_indexes(int(row[0]) for row in rows)

    async def tables(self, excluded: PersonIndexes) -> list[Row]:
        self._backend.excluded.append([int(i) for i in excluded])
        return await self._backend.execute(self._query.tables_statement(excluded))


class FakeBackend:
    """`rows` (or `handler(statement)`) answers cohort statements; concept lookups are
    answered from `concepts` where it names the set (an empty list: a code the vocabulary does
    not hold), else with one concept `KNOWN_CONCEPT_ID` of the set's vocabulary (every other
    code is known); population statements with the
    person indexes in `population`. `not_ready` makes `ping` fail with that message; `fail`
    makes `execute` fail. `excluded` records, per table computation, the person indexes the
    ledger left out."""

    def __init__(
        self,
        rows: Sequence[Row] | Handler = (),
        *,
        concepts: Mapping[ConceptSet, Sequence[int]] | None = None,
        population: Sequence[int] = (),
        optout_version: str = "fake-optout-1",
        release: str = "fake-release-1",
        dialect: Dialect = DUCKDB,
        not_ready: str | None = None,
        fail: bool = False,
    ) -> None:
        self._rows = rows
        self._concepts = dict(concepts or {})
        self.population = list(population)
        self._optout_version = optout_version
        self._release = release
        self.excluded: list[list[int]] = []
        self._dialect = dialect
        self.not_ready = not_ready
        self.fail = fail
        self.statements: list[Statement] = []
        self.cohorts_open = 0
        self.closed = False

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    async def execute(self, statement: Statement) -> list[Row]:
        self.statements.append(statement)
        if self.fail:
            raise BackendFailed("the database failed to answer")
        if isinstance(statement, ConceptLookup):
            concept_set = statement.concept_set
            vocabulary = concept_set.vocabulary.value
            ids = self._concepts.get(concept_set, (KNOWN_CONCEPT_ID,))
            return [(i, vocabulary) for i in ids]
        if isinstance(statement, PopulationQuery):
            return [(i,) for i in self.population]
        if callable(self._rows):
            return list(self._rows(statement))
        return list(self._rows)

    @contextlib.asynccontextmanager
    async def cohort(self, query: CompiledQuery) -> AsyncIterator[CohortRun]:
        """Runs `query.population()` and then the query's tables through `execute` (so both
        are recorded); `cohorts_open` counts the cohorts not released yet."""
        self.cohorts_open += 1
        try:
            yield _Cohort(self, query)
        finally:
            self.cohorts_open -= 1

    async def ping(self) -> None:
        if self.not_ready is not None:
            raise BackendNotReady(self.not_ready)

    async def optout_register_version(self) -> str:
        await self.ping()
        return self._optout_version

    async def data_release(self) -> str:
        await self.ping()
        return self._release

    async def close(self) -> None:
        self.closed = True
