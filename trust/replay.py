"""Replay caches: remember each one-use token id (`jti`) until its token has expired.

`claim` is the one operation: it records an id and says whether it was new, atomically, so
two concurrent uses of one token cannot both pass. In memory by default (one process); in
Redis (`SET NX PX`) so that several replicas refuse a request another replica has seen.
Failing to record is never "new": the stores raise TEMPORARILY_UNAVAILABLE instead.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from schema.errors import ErrorCode, TesseraError

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
