"""DuckDB, embedded: the default backend.

Queries run off the event loop on a small thread pool; each worker thread keeps its own
cursor (`con.cursor()`: a connection sharing the one database instance), reused for every
statement it runs, except a cohort query's: it gets a cursor of its own, whose temporary
table holds the cohort between the ledger and the tables (temporary tables are per
connection and writable even when the database is opened read-only). DuckDB's exceptions
are mapped here, once, to `BackendFailed`.

A statement whose caller is cancelled (the gateway disconnected, or the query timed out) is
interrupted (`interrupt()` on the worker's cursor), and the caller returns only once the
worker is free again: abandoned statements never pile up on the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

import duckdb
import numpy as np

from connectors.backends.base import CohortRun, PersonIndexes, person_indexes
from connectors.backends.readiness import check_ready, data_release, register_version
from connectors.compiler import DUCKDB, CompiledQuery, Row, Statement
from connectors.compiler.names import EXCLUDED_PERSONS, PERSON_INDEX_COLUMN
from connectors.errors import BackendFailed, BackendNotReady

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Running:
    """The cursor one statement runs on, so that another thread can interrupt it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._cancelled = False

    def start(self, cursor: duckdb.DuckDBPyConnection) -> bool:
        """Called by the worker before it executes; False when already cancelled."""
        with self._lock:
            if self._cancelled:
                return False
            self._cursor = cursor
            return True

    def finish(self) -> None:
        with self._lock:
            self._cursor = None

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._cursor is not None:
                self._cursor.interrupt()


class _Cancelled(Exception):
    pass


class _Cohort:
    """The cohort computed once into a temporary table of the query's cursor
    (`CompiledQuery.cohort_table`); its persons fetched as one NumPy column, and those the
    ledger leaves out deleted from it before the tables are computed."""

    def __init__(
        self, backend: DuckDBBackend, cursor: duckdb.DuckDBPyConnection, query: CompiledQuery
    ) -> None:
        self._backend = backend
        self._cursor = cursor
        self._query = query

    def _on_cursor(self) -> duckdb.DuckDBPyConnection:
        return self._cursor

    async def optout_register_version(self) -> str:
        return await self._backend.optout_register_version()

    async def data_release(self) -> str:
        return await self._backend.data_release()

    async def persons(self) -> PersonIndexes:
        create, persons = self._query.create_cohort(), self._query.cohort_persons()

        def fetch(cursor: duckdb.DuckDBPyConnection) -> PersonIndexes:
            cursor.execute(create.sql, list(create.params))
            column = cursor.execute(persons.sql).fetchnumpy()["person_index"]
            if np.ma.is_masked(column):
                raise BackendFailed("the database returned a person without an index")
            return person_indexes(np.asarray(column))

        return await self._backend._interruptible(self._on_cursor, fetch)

    async def tables(self, excluded: PersonIndexes) -> list[Row]:
        tables = self._query.cohort_tables()
        delete = self._query.delete_excluded()
        assert delete is not None  # DuckDB deletes from its temporary table

        def compute(cursor: duckdb.DuckDBPyConnection) -> list[Row]:
            if len(excluded):
                # The NumPy column itself, scanned by DuckDB: the cursor's own name for it.
                cursor.register(EXCLUDED_PERSONS, {PERSON_INDEX_COLUMN: excluded})
                try:
                    cursor.execute(delete.sql, list(delete.params))
                finally:
                    cursor.unregister(EXCLUDED_PERSONS)
            return _rows(cursor, tables.sql, tables.params)

        return await self._backend._interruptible(self._on_cursor, compute)


def _rows(cursor: duckdb.DuckDBPyConnection, sql: str, params: tuple[object, ...]) -> list[Row]:
    rows: list[Row] = cursor.execute(sql, list(params)).fetchall()
    return rows


def _close(cursor: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # already closed with the database
        cursor.close()


class DuckDBBackend:
    dialect: Final = DUCKDB

    def __init__(
        self, path: str | os.PathLike[str], *, read_only: bool = True, threads: int = 2
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self._path = os.fspath(path)
        self._read_only = read_only
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="duckdb")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._database: duckdb.DuckDBPyConnection | None = None
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._register_version: str | None = None
        self._data_release: str | None = None
        self._closed = False

    # -- worker threads ----------------------------------------------------------------------

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._lock:
                if self._closed:
                    raise BackendFailed("the database connection is closed")
                if self._database is None:
                    try:
                        self._database = duckdb.connect(self._path, read_only=self._read_only)
                    except duckdb.Error as exc:
                        log.warning("cannot open the database: %s", type(exc).__name__)
                        raise BackendNotReady("the database cannot be opened") from exc
                cursor = self._database.cursor()
                self._cursors.append(cursor)
            self._local.cursor = cursor
        return cursor

    def _new_cursor(self) -> duckdb.DuckDBPyConnection:
        self._cursor()  # opens the database on first use, or raises when it is closed
        assert self._database is not None
        return self._database.cursor()

    async def _interruptible(
        self,
        cursor: Callable[[], duckdb.DuckDBPyConnection],
        work: Callable[[duckdb.DuckDBPyConnection], T],
    ) -> T:
        """`work` on a worker thread, on `cursor()`: the connection a cancellation interrupts."""
        running = _Running()

        def run() -> T:
            connection = cursor()
            if not running.start(connection):
                raise _Cancelled
            try:
                return work(connection)
            finally:
                running.finish()

        task = asyncio.ensure_future(self._call(run))
        try:
            # Shielded: a cancellation must reach the statement, not just stop the waiting.
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            running.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task  # the worker is free again once the interrupted statement ends
            raise

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise BackendFailed("the database connection is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except duckdb.Error as exc:
            # The type is enough to triage; DuckDB's message may quote the statement.
            log.warning("database error: %s", type(exc).__name__)
            raise BackendFailed("the database failed to answer") from exc

    # -- Backend -----------------------------------------------------------------------------

    async def execute(self, statement: Statement) -> list[Row]:
        # Each worker thread's own cursor, reused.
        return await self._interruptible(
            self._cursor, lambda c: _rows(c, statement.sql, statement.params)
        )

    @contextlib.asynccontextmanager
    async def cohort(self, query: CompiledQuery) -> AsyncIterator[CohortRun]:
        # A cursor of the query's own: the temporary cohort table lives and dies with it.
        cursor = await self._call(self._new_cursor)
        try:
            yield _Cohort(self, cursor, query)
        finally:
            await asyncio.shield(asyncio.to_thread(_close, cursor))

    async def _run(self, sql: str, params: tuple[object, ...]) -> list[Row]:
        return await self._call(lambda: _rows(self._cursor(), sql, params))

    async def ping(self) -> None:
        await check_ready(self._run, self.dialect)

    async def optout_register_version(self) -> str:
        # Read once: DuckDB lets no process write a file that another has open, even read-only,
        # so the register cannot change while this backend has it open (`tessera connector
        # prepare` needs the connector stopped).
        if self._register_version is None or not self._read_only:
            self._register_version = await register_version(self._run, self.dialect)
        return self._register_version

    async def data_release(self) -> str:
        # Read once, like the register version: nothing can write the file meanwhile.
        if self._data_release is None or not self._read_only:
            self._data_release = await data_release(self._run, self.dialect)
        return self._data_release

    async def close(self) -> None:
        with self._lock:
            self._closed = True
        # Waits for running statements; off the loop because it blocks.
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        with self._lock:
            for cursor in self._cursors:
                cursor.close()
            self._cursors.clear()
            if self._database is not None:
                self._database.close()
                self._database = None
