"""What the query pipeline needs from a database."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeAlias

import numpy as np
from numpy.typing import NDArray

from connectors.compiler import CompiledQuery, Row, Statement
from connectors.errors import BackendFailed

# A cohort's person ids, as one NumPy column (the form the differencing guard's bitmap is built
# from fastest).
PersonIds: TypeAlias = NDArray[np.uint64]


def person_ids(values: Iterable[int] | NDArray[np.integer]) -> PersonIds:
    """Person ids as `PersonIds`; a negative id, which no bitmap can hold, fails the query."""
    try:
        column = values if isinstance(values, np.ndarray) else np.fromiter(values, dtype=np.int64)
    except OverflowError:
        raise BackendFailed("the database returned a person id out of range") from None
    if column.size and int(column.min()) < 0:
        raise BackendFailed("the database returned a negative person id")
    ids: PersonIds = column.astype(np.uint64, copy=False)
    return ids


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
