"""Helpers shared by the audit tests: records, stores of every kind, a PostgreSQL database.

Imported as `tests.audit.audit_kit` (`tests/test_kits.py`).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from oversight.audit.postgres import PostgresAuditStore
from oversight.audit.sqlite import SqliteAuditStore
from oversight.audit.store import AuditStore, MemoryAuditStore
from schema.audit.entry import AuditRecord, Decision, NodeDecision, NodeStep, utc_now
from schema.codes import Jurisdiction, NodeStatus

# The PostgreSQL the tests create their own databases in (trust auth on loopback).
ADMIN_DSN = os.environ.get("TESSERA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def record(n: int = 0, **changes: object) -> AuditRecord:
    base = AuditRecord(
        time=utc_now(),
        service="tessera-gateway",
        query_id=f"q-{n:08d}",
        trace_id=f"{n:032x}",
        principal=f"researcher-{n % 3}@example.eu",
        issuer="https://hdab.test",
        approval=f"DR-{n % 2}",
        purpose="scientific_research",
        jurisdictions=[Jurisdiction.FR, Jurisdiction.DK] if n % 2 else [Jurisdiction.DE],
        decision=Decision.ANSWERED if n % 4 else Decision.PARTIAL,
        nodes=[
            NodeStep(
                jurisdiction=Jurisdiction.FR,
                decision=NodeDecision.ALLOWED,
                status=NodeStatus.OK,
                latency_us=1200,
                rules=["PRIMARY_SUPPRESSION"],
                cells_suppressed=2,
            )
        ],
        rules=["PRIMARY_SUPPRESSION"],
        cells_suppressed=2,
        result_hash="ab" * 32,
    )
    return base.model_copy(update=changes)


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh database of its own; dropped afterwards."""
    name = f"tessera_audit_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = ADMIN_DSN.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def any_store(kind: str, tmp_path: Path) -> AsyncIterator[AuditStore]:
    store: AuditStore
    if kind == "memory":
        store = MemoryAuditStore()
        yield store
        await store.close()
    elif kind == "sqlite":
        store = SqliteAuditStore(tmp_path / "audit.sqlite3")
        yield store
        await store.close()
    else:
        async with postgres_database() as dsn:
            store = PostgresAuditStore(dsn)
            try:
                yield store
            finally:
                await store.close()
                await asyncio.sleep(0)
