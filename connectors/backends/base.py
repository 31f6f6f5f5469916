"""What the query pipeline needs from a database."""

from __future__ import annotations

from typing import Protocol

from connectors.compiler import Row, Statement


class Backend(Protocol):
    """A connection to one OMOP CDM database. Implementations map their own exceptions to
    `BackendFailed` (or `BackendNotReady`) at this boundary, with messages free of SQL,
    paths and values."""

    @property
    def dialect(self) -> str: ...

    async def execute(self, statement: Statement) -> list[Row]:
        """Run a compiled statement (all values bound) and return every row."""
        ...

    async def ping(self) -> None:
        """Return when the database can answer queries; raise `BackendNotReady` otherwise
        (e.g. Tessera's tables are missing: the hub must run `tessera connector prepare`)."""
        ...

    async def optout_register_version(self) -> str:
        """The version of the opt-out register the answers exclude."""
        ...

    async def close(self) -> None: ...
