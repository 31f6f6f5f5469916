"""Rate limits: token buckets per researcher and per approval (data request), in each
jurisdiction asked.

The researcher is who the permits name (their `sub`), whichever HDAB issued them: the
permits of several HDABs share one allowance. The approval is each jurisdiction's own permit
(its issuer and data request id).

A bucket holds at most `capacity` tokens and refills at `per_second`; a query takes one token
from each of its buckets, or none when one is empty, and is then refused with RATE_LIMITED and
the seconds until it could pass (`retryAfter`, and a `Retry-After` header). Each jurisdiction
asked has its own pair of buckets, sized by its effective policy (`rate_limits` in the policy
files) and tightened by the gateway's own settings, never loosened by them: the strictest
policy among the jurisdictions of a query is the one that binds, and a query that leaves a
strict jurisdiction out does not spend that jurisdiction's allowance.

Buckets live in an SQLite file beside the gateway's other state (`SqliteRateLimiter`: they
outlive restarts, SIGKILL included, and the gateway processes of one host share them) or in
Redis, where an atomic Lua script updates every bucket of a query at once with Redis's own
clock, so that all gateway replicas share them. `MemoryRateLimiter` (one process, forgotten
on restart) is the fake for tests. A limiter that cannot answer refuses
(TEMPORARILY_UNAVAILABLE): fail closed.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from policies.policy_set import NoPolicy, PolicySet
from schema.codes import Jurisdiction
from schema.errors import ErrorCode, TesseraError
from trust.sqlite_file import SqliteFile, Synchronous, in_write_transaction

DEFAULT_MAX_BUCKETS: Final = 100_000


@dataclass(frozen=True, slots=True)
class Limits:
    per_researcher_per_minute: int
    per_approval_per_day: int

    def tightened(self, cap: Limits) -> Limits:
        return Limits(
            min(self.per_researcher_per_minute, cap.per_researcher_per_minute),
            min(self.per_approval_per_day, cap.per_approval_per_day),
        )


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str
    capacity: int
    per_second: float


def rate_limited(retry_after_s: float) -> TesseraError:
    seconds = max(1, math.ceil(retry_after_s))
    return TesseraError(
        f"too many queries; retry in {seconds} s", code=ErrorCode.RATE_LIMITED, retryAfter=seconds
    )


def _unavailable() -> TesseraError:
    return TesseraError(
        "the rate limiter is unavailable; retry shortly",
        code=ErrorCode.TEMPORARILY_UNAVAILABLE,
        retryAfter=1,
    )


class RateLimiter(Protocol):
    async def acquire(self, buckets: Sequence[Bucket]) -> float:
        """Take one token from every bucket, or from none: 0.0 when taken, else the seconds
        until every bucket holds one."""
        ...


class MemoryRateLimiter:
    """Per process. Bounded: full buckets carry no information and are dropped first; if
    the limiter is still full it refuses rather than forget a bucket that is not full."""

    def __init__(
        self,
        *,
        max_buckets: int = DEFAULT_MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_buckets = max_buckets
        self._clock = clock
        self._state: dict[str, tuple[float, float, Bucket]] = {}  # key -> (tokens, at, bucket)

    def __len__(self) -> int:
        return len(self._state)

    async def acquire(self, buckets: Sequence[Bucket]) -> float:
        now = self._clock()
        levels = [self._level(b, now) for b in buckets]
        wait = max(
            ((1 - level) / b.per_second for b, level in zip(buckets, levels, strict=True)),
            default=0.0,
        )
        if wait > 0:
            return wait
        new = [b.key for b in buckets if b.key not in self._state]
        if new and len(self._state) + len(new) > self._max_buckets:
            self._drop_full(now)
            if len(self._state) + len(new) > self._max_buckets:
                raise _unavailable()
        for bucket, level in zip(buckets, levels, strict=True):
            self._state[bucket.key] = (level - 1, now, bucket)
        return 0.0

    def _level(self, bucket: Bucket, now: float) -> float:
        tokens, at, _ = self._state.get(bucket.key, (float(bucket.capacity), now, bucket))
        return min(float(bucket.capacity), tokens + max(0.0, now - at) * bucket.per_second)

    def _drop_full(self, now: float) -> None:
        self._state = {
            key: (tokens, at, bucket)
            for key, (tokens, at, bucket) in self._state.items()
            if self._level(bucket, now) < bucket.capacity
        }


_BUCKETS_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS bucket (
    key TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    at REAL NOT NULL,
    full_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bucket_full_at ON bucket (full_at);
"""
# Full buckets carry no information: deleted every this many queries.
PURGE_EVERY: Final = 1024


class SqliteRateLimiter:
    """Buckets in one SQLite file: every bucket of a query read and updated in one write
    transaction, so the gateway processes of one host may share the file.

    `synchronous=NORMAL` by default: a spend is in the operating system's hands before the
    query goes on, so a killed gateway forgets none (a power cut may forget the last ones:
    a limit, not the disclosure control, which the nodes' ledgers keep on disk). Times are
    wall-clock times, which mean the same after a restart; a clock set back refills
    nothing."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        synchronous: Synchronous = "NORMAL",
        purge_every: int = PURGE_EVERY,
    ) -> None:
        self._file = SqliteFile(
            path,
            schema=_BUCKETS_SCHEMA,
            synchronous=synchronous,
            unavailable=_unavailable,
            name="ratelimit-sqlite",
        )
        self._clock = clock
        self._purge_every = purge_every
        self._acquired = 0

    @property
    def path(self) -> Path:
        return self._file.path

    async def open(self) -> None:
        await self._file.open()

    async def acquire(self, buckets: Sequence[Bucket]) -> float:
        now = self._clock()
        self._acquired += 1
        purge = self._acquired % self._purge_every == 0

        def take(connection: sqlite3.Connection) -> float:
            if purge:
                connection.execute("DELETE FROM bucket WHERE full_at <= ?", (now,))
            levels = []
            for bucket in buckets:
                row = connection.execute(
                    "SELECT tokens, at FROM bucket WHERE key = ?", (bucket.key,)
                ).fetchone()
                tokens = float(bucket.capacity)
                if row is not None:
                    tokens = min(tokens, row[0] + max(0.0, now - row[1]) * bucket.per_second)
                levels.append(tokens)
            wait = max(
                ((1 - level) / b.per_second for b, level in zip(buckets, levels, strict=True)),
                default=0.0,
            )
            if wait > 0:
                return wait
            connection.executemany(
                "INSERT INTO bucket (key, tokens, at, full_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, at = excluded.at, "
                "full_at = excluded.full_at",
                [
                    (b.key, level - 1, now, now + (b.capacity - level + 1) / b.per_second)
                    for b, level in zip(buckets, levels, strict=True)
                ],
            )
            return 0.0

        return await self._file.run(lambda connection: in_write_transaction(connection, take))

    async def close(self) -> None:
        await self._file.close()


# KEYS: one hash per bucket; ARGV: capacity and tokens per second of each, in KEYS order.
# Returns "0" when a token was taken from every bucket, else the seconds to wait.
_BUCKETS_SCRIPT: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local levels = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[2 * i - 1])
  local rate = tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1])
  local at = tonumber(state[2])
  if tokens == nil or at == nil then
    tokens = capacity
  else
    tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
  end
  levels[i] = tokens
  if tokens < 1 then
    wait = math.max(wait, (1 - tokens) / rate)
  end
end
if wait > 0 then
  return tostring(wait)
end
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[2 * i - 1])
  local rate = tonumber(ARGV[2 * i])
  redis.call('HSET', key, 'tokens', tostring(levels[i] - 1), 'at', tostring(now))
  redis.call('EXPIRE', key, math.ceil(capacity / rate) + 1)
end
return '0'
"""


class RedisRateLimiter:
    """Shared by every gateway that uses the same Redis and `prefix`."""

    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._script = redis.register_script(_BUCKETS_SCRIPT)
        self._prefix = prefix

    async def acquire(self, buckets: Sequence[Bucket]) -> float:
        keys = [f"{self._prefix}rate:{b.key}" for b in buckets]
        args: list[str] = []
        for b in buckets:
            args += [str(b.capacity), repr(b.per_second)]
        try:
            answer = await self._script(keys=keys, args=args)
        except RedisError:
            raise _unavailable() from None
        return float(answer)


class LimitPolicy:
    """The limits in one jurisdiction: its effective policy's (in the policy set a query
    started with: policies are reloaded while the gateway runs), tightened by `cap`;
    `default` for a jurisdiction without a policy (which the policy decision refuses anyway).
    """

    def __init__(self, *, default: Limits, cap: Limits | None = None) -> None:
        self._default = default
        self._cap = cap

    def limits(self, jurisdiction: Jurisdiction, policy_set: PolicySet | None) -> Limits:
        limits = self._default
        if policy_set is not None:
            try:
                # Composed once per policy set (`PolicySet.effective` keeps it).
                policy = policy_set.effective(jurisdiction)
            except NoPolicy:
                pass
            else:
                limits = Limits(policy.per_researcher_per_minute, policy.per_approval_per_day)
        return limits if self._cap is None else limits.tightened(self._cap)


def _digest(*parts: str) -> str:
    # Keys hold no identifier in clear: a shared Redis sees hashes, not researchers.
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ApprovalKey:
    """The permit a jurisdiction's part is asked under: its issuer and data request."""

    issuer: str
    request_id: str


class RateGuard:
    """Checks one query against its researcher's and its permits' buckets."""

    def __init__(self, limiter: RateLimiter, policy: LimitPolicy) -> None:
        self._limiter = limiter
        self._policy = policy

    async def check(
        self,
        *,
        subject: str,
        jurisdictions: Iterable[Jurisdiction],
        approvals: Mapping[Jurisdiction, ApprovalKey],
        policy_set: PolicySet | None = None,
    ) -> None:
        """One token from the researcher's bucket in every jurisdiction asked, and from the
        approval bucket of each jurisdiction's permit (`approvals`; a jurisdiction without
        one is refused anyway and spends no approval's allowance)."""
        researcher = _digest(subject)
        buckets: list[Bucket] = []
        for j in dict.fromkeys(jurisdictions):
            limits = self._policy.limits(j, policy_set)
            buckets.append(
                Bucket(
                    key=f"researcher:{researcher}:{j.value}",
                    capacity=limits.per_researcher_per_minute,
                    per_second=limits.per_researcher_per_minute / 60,
                )
            )
            if (permit := approvals.get(j)) is not None:
                approval = _digest(permit.issuer, permit.request_id)
                buckets.append(
                    Bucket(
                        key=f"approval:{approval}:{j.value}",
                        capacity=limits.per_approval_per_day,
                        per_second=limits.per_approval_per_day / 86_400,
                    )
                )
        wait = await self._limiter.acquire(buckets)
        if wait > 0:
            raise rate_limited(wait)
