"""What the query pipeline needs from a database."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeAlias

from connectors.compiler import CompiledQuery, Row, Statement
from connectors.errors import BackendFailed

# A cohort's person ids, unsigned 64-bit ('Q'): the form a Roaring bitmap is built from fastest.
PersonIds: TypeAlias = "array[int]"


def person_ids(values: Iterable[int] | bytes) -> PersonIds:
    """Person ids as `PersonIds` (from ints, or the bytes of unsigned 64-bit integers in the
    machine's order); a negative id, which no bitmap can hold, fails the query."""
    try:
        return array("Q", values)
    except OverflowError:
        raise BackendFailed("the database returned a negative person id") from None


class CohortRun(Protocol):
    """One query's cohort, held by one connection: its persons for the differencing guard,
    then (unless the guard refuses them) the tables, computed from the very same persons, and
    the version of the opt-out register they exclude."""

    async def optout_register_version(self) -> str: ...

    async def persons(self) -> PersonIds: ...

    async def tables(self) -> list[Row]:
        """Rows as those of `CompiledQuery.sql`."""
        ...


class Backend(Protocol):
    """A connection to one OMOP CDM database. Implementations map their own exceptions to
    `BackendFailed` (or `BackendNotReady`) at this boundary, with messages free of SQL,
    paths and values."""

    @property
    def dialect(self) -> str: ...

    async def execute(self, statement: Statement) -> list[Row]:
        """Run a compiled statement (all values bound) and return every row."""
        ...

    def cohort(self, query: CompiledQuery) -> AbstractAsyncContextManager[CohortRun]:
        """A connection of its own for one query (all values bound), released on exit."""
        ...

    async def ping(self) -> None:
        """Return when the database can answer queries; raise `BackendNotReady` otherwise
        (e.g. Tessera's tables are missing: the hub must run `tessera connector prepare`)."""
        ...

    async def optout_register_version(self) -> str:
        """The version of the opt-out register the answers exclude."""
        ...

    async def close(self) -> None: ...
