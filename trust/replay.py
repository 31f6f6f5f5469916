"""Replay caches: remember each one-use token id (`jti`) until its token has expired.

`claim` is the one operation: it records an id and says whether it was new, atomically, so
two concurrent uses of one token cannot both pass. A node keeps them in an SQLite file in its
state directory (`SqliteReplayCache`), so that a token used once is refused after a restart
too, SIGKILL and power cut included; or in Redis (`SET NX PX`), so that several replicas
refuse a request another replica has seen. `MemoryReplayCache` (one process, forgotten on
restart) is the fake for tests. Failing to record is never "new": the stores raise
TEMPORARILY_UNAVAILABLE instead.

A cache that may have lost ids seen before some time says so (`remembers_since`); the
verifier refuses tokens issued before it.
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
    @property
    def remembers_since(self) -> float | None:
        """Ids of tokens issued before this wall-clock time may be forgotten: such tokens
        must be refused. None: nothing seen is forgotten while the cache lives."""
        ...

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

    @property
    def remembers_since(self) -> float | None:
        return None  # a fake: forgets everything when its process ends

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

    @property
    def remembers_since(self) -> float | None:
        return None  # as long as Redis keeps its keys (its persistence is Redis's setting)

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


def machine_started_at() -> float | None:
    """Wall-clock time the machine started (Linux: CLOCK_BOOTTIME, suspended time included),
    or None where the system does not tell."""
    boot_clock = getattr(time, "CLOCK_BOOTTIME", None)
    if boot_clock is None:
        return None
    return time.time() - time.clock_gettime(boot_clock)


class SqliteReplayCache:
    """The ids seen, in an SQLite file, each until its token has expired. Shared by the
    processes that open the same file on one host.

    An id is committed before `claim` calls it new, with `synchronous=NORMAL`: the commit is
    in the operating system's hands, so a node killed (SIGKILL) and restarted finds it. Only
    a crash of the machine itself (a power cut) can lose the last commits, and then the
    machine starts again: tokens issued before it started are refused (`remembers_since`),
    which costs nothing but a request the node could not have answered anyway, being down.
    That is one write of about 0.2 ms per request instead of an fsync (1 to 4 ms measured
    on a shared 2-core machine with `FULL`, `bench/restart_state.py`), which is what a
    system that cannot tell its start time gets. (The other way, refusing every token
    issued before the process started, needs no write at all but trusts the gateway's and
    the node's clocks to agree to within a restart, and refuses good requests for their
    difference after each restart.)"""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        purge_every: int = PURGE_EVERY,
        started_at: Callable[[], float | None] = machine_started_at,
    ) -> None:
        self._started_at = started_at()
        self._file = SqliteFile(
            path,
            schema=_REPLAY_SCHEMA,
            synchronous="FULL" if self._started_at is None else "NORMAL",
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

    @property
    def remembers_since(self) -> float | None:
        return self._started_at

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
