"""The Redis connection behind state that replicas share (replay cache, rate limits).

redis-py's exceptions are mapped by the stores that use it, each to its own stable code;
this module only opens the connection with short timeouts, so that a Redis that stops
answering fails requests quickly instead of holding them.
"""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis

SOCKET_TIMEOUT_S: Final = 1.0


def connect_redis(url: str) -> Redis:
    """A client for `url` (`redis://host:port/db`, `rediss://` for TLS). Connects lazily."""
    client: Redis = Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=30,
    )
    return client


def check_redis_url(url: str) -> str:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return url
