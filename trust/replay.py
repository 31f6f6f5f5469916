"""Replay caches: remember each one-use token id (`jti`) until its token has expired.

`claim` is the one operation: it records an id and says whether it was new, atomically, so
two concurrent uses of one token cannot both pass. A node keeps them in an SQLite file in its
state directory (`SqliteReplayCache`), so that a token used once is refused after a restart
too, SIGKILL and power cut included; or in Redis (`SET NX PX`), so that several replicas
refuse a request another replica has seen. `MemoryReplayCache` (one process, forgotten on
restart) is the fake for tests. Failing to record is never "new": the stores raise
TEMPORARILY_UNAVAILABLE instead.
"""

from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from schema.errors import ErrorCode, TesseraError
from trust.sqlite_file import SqliteFile

DEFAULT_MAX_ENTRIES: Final = 100_000


def unavailable(message: str) -> TesseraError:
    return TesseraError(message, code=ErrorCode.TEMPORARILY_UNAVAILABLE, retryAfter=1)


class ReplayCache(Protocol):
    async def claim(self, key: str, ttl_s: float) -> bool:
        """Record `key` for `ttl_s` seconds; True if it was not already recorded."""
        ...


class MemoryReplayCache:
    """Per process. Bounded: when full of live entries it refuses new ids rather than forget
    one that could be replayed."""

    def __init__(
        self, *, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.time
    ) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    async def claim(self, key: str, ttl_s: float) -> bool:
        now = self._clock()
        self._purge(now)
        if key in self._expiry:
            return False
        if len(self._expiry) >= self._max_entries:
            raise unavailable("too many requests in flight; retry shortly")
        self._expiry[key] = now + ttl_s
        return True

    def _purge(self, now: float) -> None:
        # Lifetimes are short and bounded, so insertion order is nearly expiry order:
        # expired entries gather at the front; a full cache gets one complete sweep.
        while self._expiry:
            key, expiry = next(iter(self._expiry.items()))
            if expiry > now:
                break
            del self._expiry[key]
        if len(self._expiry) >= self._max_entries:
            for key in [k for k, expiry in self._expiry.items() if expiry <= now]:
                del self._expiry[key]


class RedisReplayCache:
    """Shared by every process that uses the same Redis and `prefix`."""

    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def claim(self, key: str, ttl_s: float) -> bool:
        try:
            created = await self._redis.set(
                f"{self._prefix}replay:{key}", b"1", nx=True, px=max(1, int(ttl_s * 1000))
            )
        except RedisError:
            raise unavailable("the replay cache is unavailable; retry shortly") from None
        return bool(created)


_REPLAY_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, expires REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_expires ON seen (expires);
"""
# Expired ids are deleted every this many claims: the table holds about a minute of requests.
PURGE_EVERY: Final = 512


class SqliteReplayCache:
    """The ids seen, in an SQLite file, each until its token has expired.

    `synchronous=FULL`: an id is on disk before `claim` calls it new, so no answer can leave
    for a token the file does not hold, whether the node is killed or the machine loses
    power. (Refusing every token issued before the process started would cost no write, but
    it trusts the gateway's and the node's clocks to agree, and refuses good requests for
    the clock difference after each restart.) Shared by processes that open the same file on
    one host."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        purge_every: int = PURGE_EVERY,
    ) -> None:
        self._file = SqliteFile(
            path,
            schema=_REPLAY_SCHEMA,
            synchronous="FULL",
            unavailable=lambda: unavailable("the replay cache is unavailable; retry shortly"),
            name="replay-sqlite",
        )
        # Wall-clock time: expiry must mean the same after a restart (token lifetimes are
        # wall-clock times too).
        self._clock = clock
        self._purge_every = purge_every
        self._claims = 0

    @property
    def path(self) -> Path:
        return self._file.path

    async def open(self) -> None:
        await self._file.open()

    async def claim(self, key: str, ttl_s: float) -> bool:
        now = self._clock()
        self._claims += 1
        purge = self._claims % self._purge_every == 0

        def claim(connection: sqlite3.Connection) -> bool:
            if purge:
                connection.execute("DELETE FROM seen WHERE expires <= ?", (now,))
            # New, or seen so long ago that its token has expired: either way it is taken now.
            cursor = connection.execute(
                "INSERT INTO seen (key, expires) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET expires = excluded.expires "
                "WHERE seen.expires <= ?",
                (key, now + ttl_s, now),
            )
            return cursor.rowcount == 1

        return await self._file.run(claim)

    async def size(self) -> int:
        def count(connection: sqlite3.Connection) -> int:
            return int(connection.execute("SELECT count(*) FROM seen").fetchone()[0])

        return await self._file.run(count)

    async def close(self) -> None:
        await self._file.close()
