"""An in-memory backend for tests: canned rows instead of a database, every statement
recorded (in the spirit of httpx's MockTransport)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from connectors.compiler import ConceptLookup, ConceptSet, PopulationQuery, Row, Statement
from connectors.errors import BackendFailed, BackendNotReady

Handler = Callable[[Statement], Sequence[Row]]


class FakeBackend:
    """`rows` (or `handler(statement)`) answers cohort statements; concept lookups are
    answered from `concepts` (no ids for an unknown set), population statements with the
    person ids in `population`. `not_ready` makes `ping` fail
    with that message; `fail` makes `execute` fail."""

    def __init__(
        self,
        rows: Sequence[Row] | Handler = (),
        *,
        concepts: Mapping[ConceptSet, Sequence[int]] | None = None,
        population: Sequence[int] = (),
        optout_version: str = "fake-optout-1",
        dialect: str = "duckdb",
        not_ready: str | None = None,
        fail: bool = False,
    ) -> None:
        self._rows = rows
        self._concepts = dict(concepts or {})
        self.population = list(population)
        self._optout_version = optout_version
        self._dialect = dialect
        self.not_ready = not_ready
        self.fail = fail
        self.statements: list[Statement] = []
        self.closed = False

    @property
    def dialect(self) -> str:
        return self._dialect

    async def execute(self, statement: Statement) -> list[Row]:
        self.statements.append(statement)
        if self.fail:
            raise BackendFailed("the database failed to answer")
        if isinstance(statement, ConceptLookup):
            return [(i,) for i in self._concepts.get(statement.concept_set, ())]
        if isinstance(statement, PopulationQuery):
            return [(i,) for i in self.population]
        if callable(self._rows):
            return list(self._rows(statement))
        return list(self._rows)

    async def ping(self) -> None:
        if self.not_ready is not None:
            raise BackendNotReady(self.not_ready)

    async def optout_register_version(self) -> str:
        await self.ping()
        return self._optout_version

    async def close(self) -> None:
        self.closed = True
