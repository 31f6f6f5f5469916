"""What an audit entry costs on the answer path: one durable SQLite append per entry awaited
alone, against appends that arrive together and share one transaction (group commit).

    .venv/bin/python bench/audit_write.py [--entries 3000] [--db postgresql://.../scratch]

`--db` writes a chain of its own into that store: point it at a scratch database.

Prints both per-entry times and their ratio, measured side by side on the same store.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from oversight.audit.log import AuditLog
from oversight.audit.stores import open_store
from schema.audit.entry import AuditRecord, Decision, utc_now
from schema.codes import Jurisdiction


def record(n: int) -> AuditRecord:
    return AuditRecord(
        time=utc_now(),
        service="bench",
        query_id=f"q-{n:08d}",
        principal="researcher@example.eu",
        approval="DR-2026-0042",
        purpose="scientific_research",
        jurisdictions=[Jurisdiction.FR, Jurisdiction.DE],
        decision=Decision.ANSWERED,
        result_hash="ab" * 32,
    )


async def run(url: str, entries: int) -> None:
    store = open_store(url)
    log = AuditLog(store, f"bench-{time.time_ns()}", signing_key=None)
    await log.start()
    alone = max(entries // 10, 50)
    started = time.perf_counter()
    for i in range(alone):
        await log.record(record(i))
    one_by_one = (time.perf_counter() - started) / alone
    started = time.perf_counter()
    await asyncio.gather(*(log.record(record(i)) for i in range(entries)))
    together = (time.perf_counter() - started) / entries
    await log.close()
    await store.close()
    print(f"awaited one by one: {one_by_one * 1000:.3f} ms per entry ({alone} entries)")
    print(f"arriving together:  {together * 1000:.3f} ms per entry ({entries} entries)")
    print(f"ratio: {one_by_one / together:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=3000)
    parser.add_argument("--db", help="audit store URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    if args.db:
        asyncio.run(run(args.db, args.entries))
        return
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(run(str(Path(directory) / "audit.sqlite3"), args.entries))


if __name__ == "__main__":
    main()
