"""PostgreSQL, for hubs whose OMOP CDM lives in a real database server.

The compiler writes for the `POSTGRES` dialect, with `$n` placeholders, which asyncpg binds
natively; asyncpg also prepares and caches each statement per connection, so a query shape is
planned once. asyncpg's and the network's exceptions are mapped here, once, to
`BackendFailed` / `BackendNotReady`, with messages free of SQL and values. With a
`SchemaLayout` (the OHDSI layout: the CDM in one schema, the vocabularies in another) every
statement's tables are qualified with their schema before it runs (`backends.schemas`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

import asyncpg

from connectors.backends.base import CohortRun, PersonIndexes, person_indexes
from connectors.backends.readiness import check_ready, data_release, register_version
from connectors.backends.schemas import SchemaLayout, qualify
from connectors.compiler import POSTGRES, CompiledQuery, Row, Statement
from connectors.errors import BackendFailed, BackendNotReady

log = logging.getLogger(__name__)

# What can go wrong talking to PostgreSQL, from the server or from the way to it.
_FAILURES: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


class _Cohort:
    def __init__(
        self, connection: asyncpg.Connection, query: CompiledQuery, layout: SchemaLayout | None
    ) -> None:
        self._connection = connection
        self._query = query
        self._layout = layout

    async def _fetch(self, sql: str, params: tuple[object, ...]) -> list[Row]:
        return await _rows(self._connection, _placed(sql, self._layout), params)

    async def optout_register_version(self) -> str:
        return await register_version(self._fetch, POSTGRES)

    async def data_release(self) -> str:
        return await data_release(self._fetch, POSTGRES)

    async def persons(self) -> PersonIndexes:
        population = self._query.population()
        rows = await self._fetch(population.sql, population.params)
        return person_indexes(row[0] for row in rows)

    async def tables(self, excluded: PersonIndexes) -> list[Row]:
        tables = self._query.tables_statement(excluded)
        return await self._fetch(tables.sql, tables.params)


async def _rows(
    source: asyncpg.Pool | asyncpg.Connection, sql: str, params: tuple[object, ...]
) -> list[Row]:
    """Every row of a statement run on `source`, failures mapped to `BackendFailed`."""
    try:
        records = await source.fetch(sql, *params)
    except _FAILURES as exc:
        log.warning("database error: %s", type(exc).__name__)
        raise BackendFailed("the database failed to answer") from exc
    return [tuple(record.values()) for record in records]


def _placed(sql: str, layout: SchemaLayout | None) -> str:
    return sql if layout is None else qualify(sql, layout, POSTGRES)


class PostgresBackend:
    dialect: Final = POSTGRES

    def __init__(
        self,
        dsn: str,
        *,
        connections: int = 4,
        statement_timeout_s: float = 60,
        layout: SchemaLayout | None = None,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self._dsn = dsn
        self.layout = layout
        self._connections = connections
        self._timeout = statement_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    async def _get_pool(self) -> asyncpg.Pool:
        if self._closed:
            raise BackendFailed("the database connection is closed")
        async with self._opening:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=1,
                        max_size=self._connections,
                        command_timeout=self._timeout,
                        # Answers are read, never written: a read-only session is one more
                        # guard that nothing a query says can change the hub's data.
                        server_settings={"default_transaction_read_only": "on"},
                    )
                except _FAILURES as exc:
                    log.warning("cannot connect to the database: %s", type(exc).__name__)
                    raise BackendNotReady("the database cannot be reached") from exc
            return self._pool

    async def _run(self, sql: str, params: tuple[object, ...]) -> list[Row]:
        return await _rows(await self._get_pool(), _placed(sql, self.layout), params)

    async def execute(self, statement: Statement) -> list[Row]:
        return await self._run(statement.sql, statement.params)

    @contextlib.asynccontextmanager
    async def cohort(self, query: CompiledQuery) -> AsyncIterator[CohortRun]:
        # A read-only session may not create even a temporary table, so the cohort is computed
        # twice, but in one REPEATABLE READ snapshot: the register version, the ledger and the
        # tables see the same persons, whatever the opt-out register does in between.
        pool = await self._get_pool()
        try:
            async with (
                pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                yield _Cohort(connection, query, self.layout)
        except _FAILURES as exc:
            log.warning("database error: %s", type(exc).__name__)
            raise BackendFailed("the database failed to answer") from exc

    async def ping(self) -> None:
        await check_ready(self._run, self.dialect, self.layout)

    async def optout_register_version(self) -> str:
        return await register_version(self._run, self.dialect)

    async def data_release(self) -> str:
        return await data_release(self._run, self.dialect)

    async def close(self) -> None:
        self._closed = True
        async with self._opening:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
