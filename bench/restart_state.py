"""What restart-proof state costs on the request path: the node's replay cache and the
gateway's rate limiter in SQLite (what the services use without Redis), against the
in-memory fakes that forget everything on restart, and against syncing every write
(`synchronous=FULL`).

    .venv/bin/python -m bench.restart_state [--operations 2000] [--dir DIR]

`--dir` puts the files on the disk to measure (default: a temporary directory; on tmpfs a
sync costs nothing). Prints the time per operation of each, and the ratios to the memory
fake, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway.ratelimit import Bucket, MemoryRateLimiter, SqliteRateLimiter
from trust.replay import MemoryReplayCache, SqliteReplayCache

# A query to two jurisdictions: a researcher's and an approval's bucket in each.
BUCKETS = [
    Bucket(f"{kind}:x:{j}", capacity=10**9, per_second=10**6)
    for j in ("FR", "DE")
    for kind in ("researcher", "approval")
]


async def timed(operations: int, operation: Callable[[int], Awaitable[object]]) -> float:
    started = time.perf_counter()
    for i in range(operations):
        await operation(i)
    return (time.perf_counter() - started) / operations


async def run(directory: Path, operations: int) -> None:
    memory_replay = MemoryReplayCache()
    normal_replay = SqliteReplayCache(directory / "replay-normal.sqlite3")
    full_replay = SqliteReplayCache(directory / "replay-full.sqlite3", started_at=lambda: None)
    replay = {
        "memory (fake)": await timed(operations, lambda i: memory_replay.claim(f"n:{i}", 60)),
        "SQLite, NORMAL + machine start": await timed(
            operations, lambda i: normal_replay.claim(f"n:{i}", 60)
        ),
        "SQLite, FULL": await timed(operations, lambda i: full_replay.claim(f"n:{i}", 60)),
    }
    await normal_replay.close()
    await full_replay.close()
    memory_limiter = MemoryRateLimiter()
    normal_limiter = SqliteRateLimiter(directory / "rate-normal.sqlite3")
    full_limiter = SqliteRateLimiter(directory / "rate-full.sqlite3", synchronous="FULL")
    limits = {
        "memory (fake)": await timed(operations, lambda i: memory_limiter.acquire(BUCKETS)),
        "SQLite, NORMAL": await timed(operations, lambda i: normal_limiter.acquire(BUCKETS)),
        "SQLite, FULL": await timed(operations, lambda i: full_limiter.acquire(BUCKETS)),
    }
    await normal_limiter.close()
    await full_limiter.close()
    for title, figures in (
        ("node replay cache, per request", replay),
        ("gateway rate limits, per query (4 buckets)", limits),
    ):
        print(title)
        base = figures["memory (fake)"]
        for name, seconds in figures.items():
            print(f"  {name:32s} {seconds * 1000:8.3f} ms  {seconds / base:8.0f}x memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(run(args.dir, args.operations))
        return
    with tempfile.TemporaryDirectory(prefix="tessera-restart-state-") as directory:
        asyncio.run(run(Path(directory), args.operations))


if __name__ == "__main__":
    main()
