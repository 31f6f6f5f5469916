"""The Redis rate limiter against the Redis on 127.0.0.1:6379: shared by limiter instances,
atomic under concurrency, and failing closed when Redis is away."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.nodes import MockNodeClient
from gateway.ratelimit import Bucket, RedisRateLimiter
from gateway.settings import GatewaySettings
from tests.gateway.gateway_kit import REQUEST_ID, assert_clean_error
from trust.store import connect_redis

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Redis, str]]:
    client = connect_redis(REDIS_URL)
    prefix = f"tessera-test-{uuid.uuid4().hex}:"
    yield client, prefix
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_limiters_on_one_redis_share_buckets_atomically(redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    one, two = RedisRateLimiter(client, prefix=prefix), RedisRateLimiter(client, prefix=prefix)
    minute = Bucket("researcher:x:FR", capacity=5, per_second=5 / 60)
    day = Bucket("approval:y:FR", capacity=100, per_second=100 / 86_400)
    waits = await asyncio.gather(*(lim.acquire([minute, day]) for lim in [one, two] * 6))
    assert sum(w == 0 for w in waits) == 5  # exactly the capacity, however interleaved
    assert all(0 < w <= 12.5 for w in waits if w)  # one token back every 12 s
    # A refusal took nothing from the day bucket either.
    state = await client.hget(f"{prefix}rate:approval:y:FR", "tokens")
    assert state is not None
    assert float(state) == pytest.approx(95, abs=0.1)


async def test_an_unreachable_redis_refuses_queries(
    settings: GatewaySettings, nodes: MockNodeClient, token: str
) -> None:
    down = GatewaySettings.from_env(
        {}, federation=settings.federation, redis_url="redis://127.0.0.1:1/0"
    )
    async with TestClient(TestServer(create_app(down, node_client=nodes))) as client:
        query = f'{{ cohort(request: "{REQUEST_ID}", criteria: {{}}) {{ count {{ value }} }} }}'
        response = await client.post(
            "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
        )
        body: Any = await response.json()
        assert_clean_error(body, "TEMPORARILY_UNAVAILABLE")
        assert response.headers["Retry-After"] == "1"
        assert nodes.calls == []
        assert (await client.get("/readyz")).status == 503
