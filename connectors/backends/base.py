"""What the query pipeline needs from a database."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from typing import Final, Protocol, TypeAlias

import numpy as np
from numpy.typing import NDArray

from connectors.compiler import CompiledQuery, Dialect, Row, Statement
from connectors.errors import BackendFailed

# A cohort's person indexes (`tessera_person`), as one NumPy column: the form the ledger
# indexes its spend arrays with.
PersonIndexes: TypeAlias = NDArray[np.uint32]
_MAX_INDEX: Final = 2**32 - 1


def person_indexes(values: Iterable[int] | NDArray[np.integer]) -> PersonIndexes:
    """Person indexes as `PersonIndexes`; an index out of range fails the query."""
    try:
        column = values if isinstance(values, np.ndarray) else np.fromiter(values, dtype=np.int64)
    except OverflowError:
        raise BackendFailed("the database returned a person index out of range") from None
    if column.size and (int(column.min()) < 0 or int(column.max()) > _MAX_INDEX):
        raise BackendFailed("the database returned a person index out of range")
    indexes: PersonIndexes = column.astype(np.uint32, copy=False)
    return indexes


class CohortRun(Protocol):
    """One query's cohort, held by one connection: its persons for the ledger, then the
    tables of those the ledger still counts, computed from the very same persons; the version
    of the opt-out register they exclude and the data release they come from."""

    async def optout_register_version(self) -> str: ...

    async def data_release(self) -> str: ...

    async def persons(self) -> PersonIndexes: ...

    async def tables(self, excluded: PersonIndexes) -> list[Row]:
        """Rows as those of `CompiledQuery.sql`, without the persons at `excluded`."""
        ...


class Backend(Protocol):
    """A connection to one OMOP CDM database. Implementations map their own exceptions to
    `BackendFailed` (or `BackendNotReady`) at this boundary, with messages free of SQL,
    paths and values."""

    @property
    def dialect(self) -> Dialect:
        """How statements for this database are written (`connectors.compiler.dialect`)."""
        ...

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

    async def data_release(self) -> str:
        """The hub's label of the data the answers come from (`tessera connector prepare
        --release`)."""
        ...

    async def close(self) -> None: ...
