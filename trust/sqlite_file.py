"""A small SQLite file owned by one thread: the local store of state that must outlive the
process (the node's replay cache, the gateway's rate limits) when there is no Redis.

WAL journal. With `synchronous=FULL` a commit has reached the disk before it returns (it
survives SIGKILL and a power cut); with `NORMAL` it has reached the operating system (it
survives SIGKILL, not a power cut) and costs no fsync. Every call runs on the file's one
thread, off the event loop; sqlite3's exceptions are mapped here, once, to the store's own
`TesseraError` (`unavailable`), so that a store that cannot answer refuses: fail closed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

from schema.errors import TesseraError

T = TypeVar("T")
Synchronous = Literal["FULL", "NORMAL"]


class SqliteFile:
    def __init__(
        self,
        path: Path,
        *,
        schema: str,
        synchronous: Synchronous,
        unavailable: Callable[[], TesseraError],
        name: str,
    ) -> None:
        self.path = path
        self._schema = schema
        self._synchronous = synchronous
        self._unavailable = unavailable
        # One thread owns the connection: sqlite3 connections are not shared across threads,
        # and SQLite allows one writer at a time anyway.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=True, timeout=5.0
            )
            try:
                # Several processes may share the file (replicas on one host): wait for the
                # lock, from the first statement on.
                connection.execute("PRAGMA busy_timeout=5000")
                _write_ahead(connection)
                connection.execute(f"PRAGMA synchronous={self._synchronous}")
                connection.executescript(self._schema)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` on the file's thread; any sqlite3 or OS error is `unavailable`."""

        def call() -> T:
            return work(self._connect())

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except (sqlite3.Error, OSError):
            raise self._unavailable() from None

    async def open(self) -> None:
        """Open (and create) the file now, so that a bad path stops the service at start-up."""
        await self.run(lambda connection: None)

    async def close(self) -> None:
        def close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)


def in_write_transaction(
    connection: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]
) -> T:
    """`work` in one write transaction, taken before anything is read (BEGIN IMMEDIATE): no
    other writer can come between what `work` reads and what it writes."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work(connection)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return result


def _write_ahead(connection: sqlite3.Connection, wait_s: float = 5.0) -> None:
    """Switch the file to its WAL journal. The switch needs the file to itself, and SQLite
    answers "locked" at once, without the busy handler's wait, while another connection is
    opening it (processes sharing a new file start together): retried for as long as a
    statement would wait for a lock."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
