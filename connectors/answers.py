"""Answers once drawn, kept: the same question always gets the same numbers.

Noise is drawn once per (applicant organisation, question table, data release, noise sd):
the noisy counts of every cell of the table are stored, and when any researcher of that
organisation asks the same table again (`connectors.canonical`) the stored counts are
returned and nobody is charged. They are never drawn again: a recomputed answer would differ,
and averaging the two would halve the noise, or the difference would tell who had dropped out
of the counts since (a person whose budget ran out). A new data release (`tessera connector
prepare --release`) computes re-asked questions afresh, and charges them again.

Stored counts are noisy and may be below the minimum or negative; they never leave the node
as such: `policies.disclosure.release` decides what is released from them. A pooled round's
shares are kept the same way, under digests of their own (`connectors.pooling`), and leave
the node only masked. The store also records every pooled round's nonce, so that none is
taken twice (`first_use`).

`SqliteAnswers` keeps them in an SQLite file in the node's state directory (created when
missing); `MemoryAnswers` is the fake for tests. A national answer is stored without a sync
(a crash of the process keeps it, a power failure may not: asking again is then charged
again, as its charges were synced; `docs/protection.md`, "Durability"); nonces and pooled
shares are synced.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import orjson

from connectors.errors import LedgerUnavailable, ledger_failures

log = logging.getLogger(__name__)

CellKey = tuple[str, ...]
_WHAT: Final = "answer store"


@dataclass(frozen=True, slots=True)
class StoredTable:
    """A table's noisy counts, cell by cell, keys in the canonical dimension order."""

    cells: Mapping[CellKey, int]

    def encode(self) -> bytes:
        # [[key, value], ...]: orjson writes the (key, value) tuples as arrays itself.
        return orjson.dumps(list(self.cells.items()))

    @classmethod
    def decode(cls, blob: bytes) -> StoredTable:
        return cls({tuple(key): int(value) for key, value in orjson.loads(blob)})


@dataclass(frozen=True, slots=True)
class Shelf:
    """Where a question's answers are kept: whose noise they are (the applicant organisation,
    or the researcher when the permit names none), from which data release, at which sd."""

    owner: str
    release: str
    sd: float


class AnswerStore(Protocol):
    async def get(self, shelf: Shelf, questions: Sequence[str]) -> dict[str, StoredTable]:
        """The stored tables among `questions` (digests)."""
        ...

    async def put(
        self, shelf: Shelf, tables: Mapping[str, StoredTable], *, synced: bool = True
    ) -> dict[str, StoredTable]:
        """Store tables not stored yet and return what is stored for each: when two identical
        questions raced, the first one stored wins, and both answer with it.

        Stored tables are on disk against a crash of the node's process when this returns;
        `synced` ones against a power failure too. Unsynced ones are against a power failure
        from the store's next synced write or log copy: for answers whose loss costs only a
        new charge (a national table, see `docs/protection.md`, "Durability")."""
        ...

    async def first_use(self, nonce: str) -> bool:
        """Record a pooled round's nonce: True the first time, False ever after (a nonce
        used twice would mask two shares alike, see `connectors.masking`)."""
        ...

    async def close(self) -> None: ...


class MemoryAnswers:
    def __init__(self) -> None:
        self._tables: dict[tuple[Shelf, str], StoredTable] = {}
        self._nonces: set[str] = set()

    async def get(self, shelf: Shelf, questions: Sequence[str]) -> dict[str, StoredTable]:
        return {q: t for q in questions if (t := self._tables.get((shelf, q))) is not None}

    async def put(
        self, shelf: Shelf, tables: Mapping[str, StoredTable], *, synced: bool = True
    ) -> dict[str, StoredTable]:
        return {q: self._tables.setdefault((shelf, q), t) for q, t in tables.items()}

    async def first_use(self, nonce: str) -> bool:
        if nonce in self._nonces:
            return False
        self._nonces.add(nonce)
        return True

    async def close(self) -> None:
        return None


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS answer (
    owner TEXT NOT NULL,
    release TEXT NOT NULL,
    sd REAL NOT NULL,
    question TEXT NOT NULL,
    cells BLOB NOT NULL,
    stored_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (owner, release, sd, question)
);
CREATE TABLE IF NOT EXISTS pool_nonce (
    nonce TEXT PRIMARY KEY,
    used_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)
"""


_SYNCED: Final = "PRAGMA synchronous=FULL"
_UNSYNCED: Final = "PRAGMA synchronous=NORMAL"


class SqliteAnswers:
    """Stored answers in an SQLite file (WAL). A synced write is on disk before it returns
    (synchronous=FULL); an unsynced one is in the log file, safe from a crash of the process
    (synchronous=NORMAL, switched per write: pool nonces and pooled shares are always synced).

    The write-ahead log is copied into the database file after an answer's commit, not inside
    one, once `checkpoint_bytes` of answers were written since the last time: SQLite's own
    checkpoint runs inside a commit (every ~4 MB: 15-80 ms added to one answer in forty at
    90 KB each). The copy (which syncs the log and the database file: tens of milliseconds on
    a busy disk) runs on a connection of its own and does not hold the store: answers are
    looked up and stored meanwhile, and what they write after it started waits in the log
    for the next copy."""

    def __init__(self, path: Path, *, checkpoint_bytes: int = 2 << 20) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._checkpoint_bytes = checkpoint_bytes
        self._written = 0
        self._checkpoint: asyncio.Future[None] | None = None
        # Used by one log copy at a time, on a worker thread.
        self._copier: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(_SYNCED)
            connection.execute("PRAGMA wal_autocheckpoint=0")
            connection.executescript(_SCHEMA)
            self._connection = connection
        return self._connection

    def _wrote(self, size: int) -> None:
        self._written += size
        running = self._checkpoint is not None and not self._checkpoint.done()
        if self._written >= self._checkpoint_bytes and not running:
            self._written = 0
            self._checkpoint = asyncio.ensure_future(self._checkpointed())

    def _copy_log(self) -> None:
        if self._copier is None:
            copier = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            copier.execute(_SYNCED)
            copier.execute("PRAGMA wal_autocheckpoint=0")
            self._copier = copier
        self._copier.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def _checkpointed(self) -> None:
        """Copy the log into the database; a failure leaves the log longer until next time."""
        try:
            await asyncio.to_thread(self._copy_log)
        except sqlite3.Error as error:
            log.warning("checkpointing the answer store failed: %s", type(error).__name__)

    async def checkpointed(self) -> None:
        """Wait for a copy of the log under way, if any."""
        if self._checkpoint is not None:
            await self._checkpoint

    async def get(self, shelf: Shelf, questions: Sequence[str]) -> dict[str, StoredTable]:
        if not questions:
            return {}

        def read() -> list[tuple[str, bytes]]:
            marks = ", ".join("?" for _ in questions)
            rows = (
                self._db()
                .execute(
                    "SELECT question, cells FROM answer WHERE owner = ? AND release = ? "  # noqa: S608 - placeholders only
                    f"AND sd = ? AND question IN ({marks})",
                    (shelf.owner, shelf.release, shelf.sd, *questions),
                )
                .fetchall()
            )
            return [(str(q), bytes(blob)) for q, blob in rows]

        async with self._lock:
            with ledger_failures(_WHAT):
                rows = await asyncio.to_thread(read)
        return {question: StoredTable.decode(blob) for question, blob in rows}

    async def put(
        self, shelf: Shelf, tables: Mapping[str, StoredTable], *, synced: bool = True
    ) -> dict[str, StoredTable]:
        if not tables:
            return {}
        encoded = [(q, t.encode()) for q, t in tables.items()]
        # An unsynced commit is in the log file, so in the operating system's hands, when it
        # returns: a crash of the process keeps it, a power failure may not. The next synced
        # commit or log copy syncs the whole log, earlier commits with it.
        # Each write sets its own (the setting is the connection's, and stays).
        synchronous = _SYNCED if synced else _UNSYNCED

        def write() -> int:
            db = self._db()
            db.execute(synchronous)
            db.execute("BEGIN IMMEDIATE")
            try:
                inserted = db.executemany(
                    "INSERT OR IGNORE INTO answer (owner, release, sd, question, cells) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(shelf.owner, shelf.release, shelf.sd, q, blob) for q, blob in encoded],
                ).rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return inserted

        async with self._lock:
            with ledger_failures(_WHAT):
                inserted = await asyncio.to_thread(write)
        self._wrote(sum(len(blob) for _, blob in encoded))
        if inserted == len(encoded):
            return dict(tables)  # every table stored as given: nothing to read back
        # Another question stored some of them first (an identical question racing this one,
        # perhaps in another process sharing the file): its tables are the answer.
        stored = await self.get(shelf, list(tables))
        if set(stored) != set(tables):  # only if the file is being changed under the node
            raise LedgerUnavailable("an answer just stored cannot be read back")
        return stored

    async def first_use(self, nonce: str) -> bool:
        def claim() -> bool:
            db = self._db()
            db.execute(_SYNCED)
            cursor = db.execute("INSERT OR IGNORE INTO pool_nonce (nonce) VALUES (?)", (nonce,))
            return cursor.rowcount == 1

        async with self._lock:
            with ledger_failures(_WHAT):
                return await asyncio.to_thread(claim)

    async def close(self) -> None:
        await self.checkpointed()
        async with self._lock:
            if self._copier is not None:
                copier, self._copier = self._copier, None
                with ledger_failures(_WHAT):
                    await asyncio.to_thread(copier.close)
            if self._connection is not None:
                connection, self._connection = self._connection, None
                with ledger_failures(_WHAT):
                    await asyncio.to_thread(connection.close)
