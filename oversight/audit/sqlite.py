"""The embedded audit store: one SQLite file, written by one thread.

WAL journal with `synchronous=FULL`: a committed append has reached the disk before `append`
returns, and a crash during an append rolls it back whole. Until the store closes, entries
may be in the -wal file beside the trail (whoever opens the trail next reads them there, also
after a crash); closing moves them into the main file. Triggers refuse UPDATE and DELETE, so
the application cannot change an entry by mistake; a deliberate edit of the file is what the
hash chain is there to reveal. Every call runs on the store's single thread, off the event
loop; sqlite3's exceptions are mapped here, once, to `AuditStoreError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

from oversight.audit.store import (
    ENTRIES_TABLE,
    HEADS_TABLE,
    MAX_PAGE,
    AuditQuery,
    AuditStoreError,
    tables_ddl,
)
from schema.audit.chain import SignedHead
from schema.audit.entry import (
    GENESIS,
    HEAD_COLUMNS,
    STORED_COLUMNS,
    AuditEntry,
    AuditRecord,
    StoredEntry,
    seal,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


SCHEMA: Final = (
    tables_ddl("INTEGER")
    + f"""
CREATE TRIGGER IF NOT EXISTS {ENTRIES_TABLE}_no_update BEFORE UPDATE ON {ENTRIES_TABLE}
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS {ENTRIES_TABLE}_no_delete BEFORE DELETE ON {ENTRIES_TABLE}
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS {HEADS_TABLE}_no_update BEFORE UPDATE ON {HEADS_TABLE}
BEGIN SELECT RAISE(ABORT, 'signed heads are append-only'); END;
CREATE TRIGGER IF NOT EXISTS {HEADS_TABLE}_no_delete BEFORE DELETE ON {HEADS_TABLE}
BEGIN SELECT RAISE(ABORT, 'signed heads are append-only'); END;
"""
)


class SqliteAuditStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # One thread owns the connection: sqlite3 connections are not shared across threads,
        # and one writer is all SQLite allows at a time anyway.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-sqlite")
        self._connection: sqlite3.Connection | None = None
        self._closed = False

    # -- on the store's thread ----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The busy timeout must hold from the first statement: switching to WAL while
            # another writer holds the file would otherwise fail at once ("locked").
            connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=True, timeout=10.0
            )
            connection.execute("PRAGMA busy_timeout=10000")
            _switch_to_wal(connection)
            connection.execute("PRAGMA synchronous=FULL")
            connection.executescript(SCHEMA)
            self._connection = connection
        return self._connection

    def _append(self, chain: str, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        connection = self._connect()
        # IMMEDIATE takes the write lock before the head is read: no other writer can append
        # between reading the head and writing after it.
        connection.execute("BEGIN IMMEDIATE")
        try:
            seq, prev = _head(connection, chain)
            sealed = []
            for record in records:
                seq += 1
                entry = seal(chain, seq, prev, record)
                sealed.append(entry)
                prev = entry.hash
            connection.executemany(
                f"INSERT INTO {ENTRIES_TABLE} ({STORED_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608 - constant table name
                [StoredEntry.of(e).as_row() for e in sealed],
            )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return sealed

    def _head(self, chain: str) -> tuple[int, str]:
        return _head(self._connect(), chain)

    def _entries(self, chain: str, after: int, limit: int) -> list[StoredEntry]:
        rows = self._connect().execute(
            f"SELECT {STORED_COLUMNS} FROM {ENTRIES_TABLE} WHERE chain = ? AND seq > ? "  # noqa: S608
            "ORDER BY seq LIMIT ?",
            (chain, after, min(limit, MAX_PAGE)),
        )
        return [StoredEntry(*row) for row in rows]

    def _search(self, chain: str, query: AuditQuery) -> list[StoredEntry]:
        where: list[str] = ["chain = ?"]
        params: list[object] = [chain]
        for column, value, op in (
            ("time", query.since, ">="),
            ("time", query.until, "<"),
            ("principal", query.principal, "="),
            ("approval", query.approval, "="),
            ("decision", query.decision, "="),
            ("query_id", query.query_id, "="),
            ("seq", query.before, "<"),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        if query.jurisdiction is not None:
            where.append("instr(jurisdictions, ?) > 0")
            params.append(f",{query.jurisdiction.value},")
        rows = self._connect().execute(
            f"SELECT {STORED_COLUMNS} FROM {ENTRIES_TABLE} WHERE {' AND '.join(where)} "  # noqa: S608 - fixed fragments, values bound
            "ORDER BY seq DESC LIMIT ?",
            (*params, min(query.limit, MAX_PAGE)),
        )
        return [StoredEntry(*row) for row in rows]

    def _add_head(self, head: SignedHead) -> None:
        self._connect().execute(
            f"INSERT OR IGNORE INTO {HEADS_TABLE} ({HEAD_COLUMNS}) VALUES (?,?,?,?,?,?)",  # noqa: S608
            (head.chain, head.seq, head.hash, head.signed_at, head.key_id, head.signature),
        )

    def _heads(self, chain: str) -> list[SignedHead]:
        rows = self._connect().execute(
            f"SELECT {HEAD_COLUMNS} FROM {HEADS_TABLE} WHERE chain = ? ORDER BY seq",  # noqa: S608
            (chain,),
        )
        return [SignedHead(*row) for row in rows]

    def _chains(self) -> list[str]:
        rows = self._connect().execute(
            f"SELECT chain FROM {ENTRIES_TABLE} UNION SELECT chain FROM {HEADS_TABLE} "  # noqa: S608
            "ORDER BY chain"
        )
        return [str(row[0]) for row in rows]

    def _close(self) -> None:
        if self._connection is not None:
            # Entries go into the main file before the service stops. SQLite only does this by
            # itself when the last connection to the file closes: with a reader still open
            # elsewhere (an operator's tool), every entry would stay in the -wal file, which a
            # copy of the trail file alone does not carry. PASSIVE never waits for readers.
            with contextlib.suppress(sqlite3.Error):
                self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._connection.close()
            self._connection = None

    # -- AuditStore ---------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise AuditStoreError("the audit store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            # The type is enough to triage; the message may name paths.
            log.error("audit store (SQLite) failed: %s", type(exc).__name__)
            raise AuditStoreError("the audit store is unavailable") from exc

    async def append(self, chain: str, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        return await self._call(self._append, chain, list(records))

    async def head(self, chain: str) -> tuple[int, str]:
        return await self._call(self._head, chain)

    async def entries(
        self, chain: str, *, after: int = 0, limit: int = MAX_PAGE
    ) -> list[StoredEntry]:
        return await self._call(self._entries, chain, after, limit)

    async def search(self, chain: str, query: AuditQuery) -> list[StoredEntry]:
        return await self._call(self._search, chain, query)

    async def add_head(self, head: SignedHead) -> None:
        await self._call(self._add_head, head)

    async def heads(self, chain: str) -> list[SignedHead]:
        return await self._call(self._heads, chain)

    async def chains(self) -> list[str]:
        return await self._call(self._chains)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        await asyncio.to_thread(self._executor.shutdown, wait=True)


def _head(connection: sqlite3.Connection, chain: str) -> tuple[int, str]:
    row = connection.execute(
        f"SELECT seq, hash FROM {ENTRIES_TABLE} WHERE chain = ? ORDER BY seq DESC LIMIT 1",  # noqa: S608
        (chain,),
    ).fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def _switch_to_wal(connection: sqlite3.Connection, attempts: int = 200) -> None:
    """`PRAGMA journal_mode=WAL`, waiting for a writer that opens the same new file at once:
    SQLite answers "locked" without calling the busy handler when two connections change a
    file's journal mode together (it would otherwise risk a deadlock), so the wait is here
    (at most ~10 s, as the busy timeout)."""
    for attempt in range(attempts):
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)
