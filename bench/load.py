"""Load generation and latency statistics.

Two ways to send: closed loop (`closed_loop`: `concurrency` workers, each sending its next
query when the last one answered) and open loop (`open_loop`: queries leave at a fixed rate
whatever the answers do, and each latency counts from when the query was due, so a stall
shows in the tail instead of slowing the sender down: no coordinated omission).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson

from tessera.credentials import Credentials

CLIENT_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Sample:
    latency_ms: float
    query_id: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


Send = Callable[[aiohttp.ClientSession], Awaitable[str]]


def graphql_sender(url: str, credentials: Credentials, query: str) -> Send:
    """POST a GraphQL query with the researcher's identity and permits; the query id of the
    answer, or an exception naming what failed."""
    body = orjson.dumps({"query": query})
    headers = [*credentials.headers(), ("Content-Type", "application/json")]

    async def send(session: aiohttp.ClientSession) -> str:
        async with session.post(url, data=body, headers=headers) as response:
            payload = await response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        answer: dict[str, Any] = orjson.loads(payload)
        if answer.get("errors"):
            raise RuntimeError(str(answer["errors"][0].get("extensions", {}).get("code")))
        cohort = answer["data"]["cohort"]
        statuses = {n["status"] for n in cohort["byJurisdiction"]}
        if statuses != {"OK"}:
            raise RuntimeError(f"node status {sorted(statuses)}")
        query_id: str = cohort["queryId"]
        return query_id

    return send


def baseline_sender(url: str) -> Send:
    async def send(session: aiohttp.ClientSession) -> str:
        async with session.post(url, data=b"{}") as response:
            payload = await response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        query_id: str = orjson.loads(payload)["queryId"]
        return query_id

    return send


def client_session(connections: int = 1100) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
        timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
    )


async def _timed(session: aiohttp.ClientSession, send: Send, since: float) -> Sample:
    try:
        query_id = await send(session)
    except Exception as e:  # a failed query is a sample too: it counts as an error
        return Sample((time.perf_counter() - since) * 1000, None, f"{type(e).__name__}: {e}")
    return Sample((time.perf_counter() - since) * 1000, query_id)


async def closed_loop(
    session: aiohttp.ClientSession, send: Send, *, queries: int, concurrency: int = 1
) -> list[Sample]:
    samples: list[Sample] = []
    left = iter(range(queries))

    async def worker() -> None:
        for _ in left:
            samples.append(await _timed(session, send, time.perf_counter()))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


async def open_loop(
    session: aiohttp.ClientSession, send: Send, *, rate: float, duration_s: float
) -> list[Sample]:
    """`rate` queries per second for `duration_s`, each timed from when it was due."""
    total = max(1, round(rate * duration_s))
    start = time.perf_counter() + 0.01
    tasks: list[asyncio.Task[Sample]] = []
    for i in range(total):
        due = start + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
        tasks.append(asyncio.create_task(_timed(session, send, due)))
    return list(await asyncio.gather(*tasks))


async def one_burst(session: aiohttp.ClientSession, send: Send, *, queries: int) -> list[Sample]:
    """`queries` sent at once: all of them in flight together."""
    now = time.perf_counter()
    return list(await asyncio.gather(*(_timed(session, send, now) for _ in range(queries))))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    n: int
    errors: int
    p50: float
    p90: float
    p99: float
    mean: float

    @classmethod
    def of(cls, values: Sequence[float], errors: int = 0) -> Summary:
        return cls(
            n=len(values),
            errors=errors,
            p50=percentile(values, 50),
            p90=percentile(values, 90),
            p99=percentile(values, 99),
            mean=sum(values) / len(values) if values else math.nan,
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "errors": self.errors,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "mean": self.mean,
        }
