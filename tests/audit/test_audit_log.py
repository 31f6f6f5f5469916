"""`AuditLog`: durable before it returns, group commit, failures, restarts, signed heads."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from oversight.audit.log import AuditLog
from oversight.audit.sqlite import SqliteAuditStore
from oversight.audit.store import AuditStoreError, MemoryAuditStore
from schema.audit.chain import key_id, verify_chain
from tests.audit.audit_kit import record

CHAIN = "node:tessera-node-fr"
ROOT = Path(__file__).resolve().parents[2]


class CountingStore(MemoryAuditStore):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def append(self, chain, records):  # type: ignore[no-untyped-def]
        await self.gate.wait()
        self.batches.append(len(records))
        return await super().append(chain, records)


async def test_an_entry_is_stored_when_record_returns() -> None:
    store = MemoryAuditStore()
    log = AuditLog(store, CHAIN, signing_key=None)
    await log.start()
    entry = await log.record(record(1))
    assert (await store.head(CHAIN)) == (1, entry.hash)
    await log.close()


async def test_records_waiting_for_a_write_share_the_next_one() -> None:
    store = CountingStore()
    log = AuditLog(store, CHAIN, signing_key=None)
    await log.start()
    store.gate.clear()
    first = asyncio.create_task(log.record(record(0)))
    await asyncio.sleep(0.01)  # the first write is now under way, held at the gate
    rest = [asyncio.create_task(log.record(record(i))) for i in range(1, 50)]
    await asyncio.sleep(0.01)
    store.gate.set()
    entries = await asyncio.gather(first, *rest)
    assert store.batches == [1, 49]
    assert sorted(e.seq for e in entries) == list(range(1, 51))
    assert verify_chain(CHAIN, await store.entries(CHAIN)).ok
    await log.close()


async def test_a_failed_write_fails_its_callers_and_the_log_recovers() -> None:
    store = MemoryAuditStore()
    log = AuditLog(store, CHAIN, signing_key=None)
    await log.start()
    await log.record(record(1))
    store.fail = True
    with pytest.raises(AuditStoreError):
        await log.record(record(2))
    store.fail = False
    entry = await log.record(record(3))
    assert entry.seq == 2
    assert verify_chain(CHAIN, await store.entries(CHAIN)).entries == 2
    await log.close()


async def test_a_cancelled_caller_does_not_cancel_the_write() -> None:
    store = CountingStore()
    log = AuditLog(store, CHAIN, signing_key=None)
    await log.start()
    store.gate.clear()
    caller = asyncio.create_task(log.record(record(1)))
    await asyncio.sleep(0.01)
    caller.cancel()
    store.gate.set()
    await log.close()
    assert (await store.head(CHAIN))[0] == 1


async def test_recording_after_close_is_refused() -> None:
    store = MemoryAuditStore()
    log = AuditLog(store, CHAIN, signing_key=None)
    assert (await log.record(record(1))).seq == 1  # not started: starts writing anyway
    await log.close()
    with pytest.raises(AuditStoreError):
        await log.record(record(1))


async def test_heads_are_signed_every_n_entries_and_at_close() -> None:
    key = Ed25519PrivateKey.generate()
    store = MemoryAuditStore()
    log = AuditLog(store, CHAIN, signing_key=key, sign_every=3)
    await log.start()
    for i in range(7):
        await log.record(record(i))
    assert [h.seq for h in await store.heads(CHAIN)] == [3, 6]
    await log.close()
    heads = await store.heads(CHAIN)
    assert [h.seq for h in heads] == [3, 6, 7]
    keys = {key_id(key.public_key()): key.public_key()}
    assert verify_chain(CHAIN, await store.entries(CHAIN), heads, keys).heads_signed == 3


async def test_a_moved_head_is_signed_after_the_interval() -> None:
    store = MemoryAuditStore()
    log = AuditLog(store, CHAIN, signing_key=Ed25519PrivateKey.generate(), sign_interval_s=0.05)
    await log.start()
    await log.record(record(1))
    for _ in range(100):
        if await store.heads(CHAIN):
            break
        await asyncio.sleep(0.01)
    assert [h.seq for h in await store.heads(CHAIN)] == [1]
    await log.close()


async def test_a_restart_resumes_the_chain_and_signs_what_was_left_unsigned(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "audit.sqlite3"
    first = SqliteAuditStore(path)
    # No key: as if the process had died before it signed anything.
    log = AuditLog(first, CHAIN, signing_key=None)
    await log.start()
    for i in range(3):
        await log.record(record(i))
    await log.close()
    await first.close()

    second = SqliteAuditStore(path)
    log = AuditLog(second, CHAIN, signing_key=key)
    await log.start()
    assert [h.seq for h in await second.heads(CHAIN)] == [3]
    assert (await log.record(record(4))).seq == 4
    await log.close()
    result = verify_chain(
        CHAIN,
        await second.entries(CHAIN),
        await second.heads(CHAIN),
        {key_id(key.public_key()): key.public_key()},
    )
    assert (result.ok, result.entries, result.heads_signed) == (True, 4, 2)
    await second.close()


WRITER = """
import asyncio, sys
from oversight.audit.log import AuditLog
from oversight.audit.sqlite import SqliteAuditStore
from tests.audit.audit_kit import record

async def main():
    log = AuditLog(SqliteAuditStore(sys.argv[1]), "node:tessera-node-fr", signing_key=None)
    await log.start()
    n = 0
    while True:
        await asyncio.gather(*(log.record(record(n + i)) for i in range(20)))
        n += 20
        print(n, flush=True)

asyncio.run(main())
"""


async def test_a_killed_writer_leaves_a_chain_that_verifies_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, read from a thread
        [sys.executable, "-c", WRITER, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    acknowledged = 0
    while acknowledged < 200:
        line = await asyncio.to_thread(process.stdout.readline)
        assert line, "the writer died"
        acknowledged = int(line)
    process.send_signal(signal.SIGKILL)  # mid-write, most likely
    process.wait()
    store = SqliteAuditStore(path)
    rows = await store.entries(CHAIN, limit=1000)
    rows += await store.entries(CHAIN, after=len(rows), limit=1000)
    result = verify_chain(CHAIN, rows)
    assert result.ok
    # Every entry whose write was acknowledged is there.
    assert result.entries >= acknowledged
    log = AuditLog(store, CHAIN, signing_key=None)
    await log.start()
    assert (await log.record(record(0))).seq == result.entries + 1
    await log.close()
    await store.close()
