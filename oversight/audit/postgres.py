"""The PostgreSQL audit store (asyncpg), for `postgresql://...` URLs; PostgreSQL 14 or newer.

An append takes a transaction-scoped advisory lock on its chain before reading the head, so
services sharing one database (one chain each) or two processes of one service never fork a
chain. Commits are durable (the server's `synchronous_commit`, on by default). Triggers
refuse UPDATE and DELETE. asyncpg's exceptions are mapped here, once, to `AuditStoreError`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import asyncpg

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

# Any constant: serialises schema creation between processes starting at once.
_SCHEMA_LOCK: Final = 0x7E55E7A

SCHEMA: Final = (
    tables_ddl("BIGINT")
    + f"""
CREATE OR REPLACE FUNCTION tessera_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$;
CREATE OR REPLACE TRIGGER {ENTRIES_TABLE}_append_only BEFORE UPDATE OR DELETE
ON {ENTRIES_TABLE} FOR EACH ROW EXECUTE FUNCTION tessera_audit_append_only();
CREATE OR REPLACE TRIGGER {HEADS_TABLE}_append_only BEFORE UPDATE OR DELETE
ON {HEADS_TABLE} FOR EACH ROW EXECUTE FUNCTION tessera_audit_append_only();
"""
)

_FAILURES: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class PostgresAuditStore:
    def __init__(self, dsn: str, *, max_connections: int = 4) -> None:
        self._dsn = dsn
        self._max_connections = max_connections
        self._pool: Any = None
        self._closed = False

    async def _connection_pool(self) -> Any:
        if self._pool is None:
            pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=self._max_connections, command_timeout=30
            )
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                await connection.execute(SCHEMA)
            self._pool = pool
        return self._pool

    async def _run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        if self._closed:
            raise AuditStoreError("the audit store is closed")
        try:
            pool = await self._connection_pool()
            async with pool.acquire() as connection:
                return await work(connection)
        except _FAILURES as exc:
            # The type is enough to triage; the message may hold the DSN or SQL.
            log.error("audit store (PostgreSQL) failed: %s", type(exc).__name__)
            raise AuditStoreError("the audit store is unavailable") from exc

    async def append(self, chain: str, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        async def work(connection: Any) -> list[AuditEntry]:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", chain)
                seq, prev = await _head(connection, chain)
                sealed = []
                for record in records:
                    seq += 1
                    entry = seal(chain, seq, prev, record)
                    sealed.append(entry)
                    prev = entry.hash
                await connection.executemany(
                    f"INSERT INTO {ENTRIES_TABLE} ({STORED_COLUMNS}) "  # noqa: S608 - constant table name
                    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                    [StoredEntry.of(e).as_row() for e in sealed],
                )
            return sealed

        return await self._run(work)

    async def head(self, chain: str) -> tuple[int, str]:
        return await self._run(lambda connection: _head(connection, chain))

    async def entries(
        self, chain: str, *, after: int = 0, limit: int = MAX_PAGE
    ) -> list[StoredEntry]:
        async def work(connection: Any) -> list[StoredEntry]:
            rows = await connection.fetch(
                f"SELECT {STORED_COLUMNS} FROM {ENTRIES_TABLE} WHERE chain = $1 AND seq > $2 "  # noqa: S608
                "ORDER BY seq LIMIT $3",
                chain,
                after,
                min(limit, MAX_PAGE),
            )
            return [StoredEntry(*row) for row in rows]

        return await self._run(work)

    async def search(self, chain: str, query: AuditQuery) -> list[StoredEntry]:
        where: list[str] = ["chain = $1"]
        params: list[object] = [chain]
        conditions: list[tuple[str, object, str]] = [
            ("time", query.since, ">="),
            ("time", query.until, "<"),
            ("principal", query.principal, "="),
            ("approval", query.approval, "="),
            ("decision", query.decision, "="),
            ("query_id", query.query_id, "="),
            ("seq", query.before, "<"),
        ]
        for column, value, op in conditions:
            if value is not None:
                params.append(value)
                where.append(f"{column} {op} ${len(params)}")
        if query.jurisdiction is not None:
            params.append(f",{query.jurisdiction.value},")
            where.append(f"strpos(jurisdictions, ${len(params)}) > 0")
        params.append(min(query.limit, MAX_PAGE))
        sql = (
            f"SELECT {STORED_COLUMNS} FROM {ENTRIES_TABLE} WHERE {' AND '.join(where)} "  # noqa: S608 - fixed fragments, values bound
            f"ORDER BY seq DESC LIMIT ${len(params)}"
        )

        async def work(connection: Any) -> list[StoredEntry]:
            return [StoredEntry(*row) for row in await connection.fetch(sql, *params)]

        return await self._run(work)

    async def add_head(self, head: SignedHead) -> None:
        async def work(connection: Any) -> None:
            await connection.execute(
                f"INSERT INTO {HEADS_TABLE} ({HEAD_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6) "  # noqa: S608
                "ON CONFLICT DO NOTHING",
                head.chain,
                head.seq,
                head.hash,
                head.signed_at,
                head.key_id,
                head.signature,
            )

        await self._run(work)

    async def heads(self, chain: str) -> list[SignedHead]:
        async def work(connection: Any) -> list[SignedHead]:
            rows = await connection.fetch(
                f"SELECT {HEAD_COLUMNS} FROM {HEADS_TABLE} WHERE chain = $1 ORDER BY seq",  # noqa: S608
                chain,
            )
            return [SignedHead(*row) for row in rows]

        return await self._run(work)

    async def chains(self) -> list[str]:
        async def work(connection: Any) -> list[str]:
            rows = await connection.fetch(
                f"SELECT chain FROM {ENTRIES_TABLE} UNION SELECT chain FROM {HEADS_TABLE} "  # noqa: S608
                "ORDER BY chain"
            )
            return [str(row[0]) for row in rows]

        return await self._run(work)

    async def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


async def _head(connection: Any, chain: str) -> tuple[int, str]:
    row = await connection.fetchrow(
        f"SELECT seq, hash FROM {ENTRIES_TABLE} WHERE chain = $1 ORDER BY seq DESC LIMIT 1",  # noqa: S608
        chain,
    )
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)
