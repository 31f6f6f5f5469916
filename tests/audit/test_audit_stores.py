"""Every store keeps the same contract: memory (the fake), SQLite and PostgreSQL."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from oversight.audit.postgres import PostgresAuditStore
from oversight.audit.sqlite import SqliteAuditStore
from oversight.audit.store import (
    AuditQuery,
    AuditStore,
    AuditStoreError,
)
from oversight.audit.stores import open_store
from schema.audit.chain import key_id, sign_head, verify_chain
from schema.audit.entry import GENESIS, Decision
from schema.codes import Jurisdiction
from tests.audit.audit_kit import any_store, postgres_database, record

CHAIN = "gateway:tessera-gateway"
TAMPERING = (
    "UPDATE tessera_audit_entries SET principal = 'x'",
    "DELETE FROM tessera_audit_entries",
)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AuditStore]:
    async with any_store(request.param, tmp_path) as s:
        yield s


async def test_append_seals_after_the_head(store: AuditStore) -> None:
    assert await store.head(CHAIN) == (0, GENESIS)
    first = await store.append(CHAIN, [record(1), record(2)])
    second = await store.append(CHAIN, [record(3)])
    assert [e.seq for e in first + second] == [1, 2, 3]
    assert second[0].prev == first[-1].hash
    assert await store.head(CHAIN) == (3, second[0].hash)
    rows = await store.entries(CHAIN)
    assert [r.hash for r in rows] == [e.hash for e in first + second]
    assert verify_chain(CHAIN, rows).ok
    assert [r.seq for r in await store.entries(CHAIN, after=1, limit=1)] == [2]


async def test_chains_are_independent(store: AuditStore) -> None:
    await store.append(CHAIN, [record(1)])
    await store.append("node:tessera-node-fr", [record(1), record(2)])
    assert await store.chains() == ["gateway:tessera-gateway", "node:tessera-node-fr"]
    assert (await store.head("node:tessera-node-fr"))[0] == 2
    assert verify_chain(CHAIN, await store.entries(CHAIN)).ok


async def test_search_filters_newest_first(store: AuditStore) -> None:
    await store.append(CHAIN, [record(i) for i in range(1, 13)])
    everything = await store.search(CHAIN, AuditQuery(limit=100))
    assert [r.seq for r in everything] == list(range(12, 0, -1))
    by_principal = await store.search(CHAIN, AuditQuery(principal="researcher-1@example.eu"))
    assert [r.query_id for r in by_principal] == [
        "q-00000010",
        "q-00000007",
        "q-00000004",
        "q-00000001",
    ]
    fr = await store.search(CHAIN, AuditQuery(jurisdiction=Jurisdiction.FR, limit=100))
    assert {r.seq for r in fr} == {1, 3, 5, 7, 9, 11}
    partial = await store.search(CHAIN, AuditQuery(decision=Decision.PARTIAL.value))
    assert {r.seq for r in partial} == {4, 8, 12}
    page = await store.search(CHAIN, AuditQuery(approval="DR-0", before=9, limit=2))
    assert [r.seq for r in page] == [8, 6]
    one = await store.search(CHAIN, AuditQuery(query_id="q-00000005"))
    assert [r.seq for r in one] == [5]
    times = [r.time for r in await store.entries(CHAIN)]
    window = await store.search(CHAIN, AuditQuery(since=times[2], until=times[5], limit=100))
    assert {r.seq for r in window} == {3, 4, 5}
    assert await store.search("another", AuditQuery()) == []


async def test_signed_heads_are_kept(store: AuditStore) -> None:
    key = Ed25519PrivateKey.generate()
    (entry,) = await store.append(CHAIN, [record(1)])
    head = sign_head(key, CHAIN, 1, entry.hash, "2026-01-01T00:00:00.000000Z")
    await store.add_head(head)
    await store.add_head(head)  # idempotent
    assert await store.heads(CHAIN) == [head]
    rows = await store.entries(CHAIN)
    assert verify_chain(
        CHAIN, rows, await store.heads(CHAIN), {key_id(key.public_key()): key.public_key()}
    ).ok


async def test_concurrent_appends_never_fork_the_chain(store: AuditStore) -> None:
    await asyncio.gather(*(store.append(CHAIN, [record(i)]) for i in range(40)))
    rows = await store.entries(CHAIN)
    assert [r.seq for r in rows] == list(range(1, 41))
    assert verify_chain(CHAIN, rows).ok


async def test_two_sqlite_writers_of_one_file_share_one_chain(tmp_path: Path) -> None:
    a, b = SqliteAuditStore(tmp_path / "a.sqlite3"), SqliteAuditStore(tmp_path / "a.sqlite3")
    try:
        await asyncio.gather(*(s.append(CHAIN, [record(i)]) for i in range(10) for s in (a, b)))
        assert verify_chain(CHAIN, await a.entries(CHAIN)).entries == 20
    finally:
        await a.close()
        await b.close()


async def test_two_postgres_writers_share_one_chain() -> None:
    async with postgres_database() as dsn:
        a, b = PostgresAuditStore(dsn), PostgresAuditStore(dsn)
        try:
            await asyncio.gather(*(s.append(CHAIN, [record(i)]) for i in range(10) for s in (a, b)))
            assert verify_chain(CHAIN, await b.entries(CHAIN)).entries == 20
        finally:
            await a.close()
            await b.close()


async def test_sqlite_refuses_updates_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    store = SqliteAuditStore(path)
    await store.append(CHAIN, [record(1)])
    await store.close()
    with sqlite3.connect(path) as connection:
        for statement in TAMPERING:
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                connection.execute(statement)


async def test_postgres_refuses_updates_and_deletes() -> None:
    async with postgres_database() as dsn:
        store = PostgresAuditStore(dsn)
        await store.append(CHAIN, [record(1)])
        await store.close()
        connection = await asyncpg.connect(dsn)
        try:
            for statement in TAMPERING:
                with pytest.raises(asyncpg.RaiseError, match="append-only"):
                    await connection.execute(statement)
        finally:
            await connection.close()


async def test_a_closed_sqlite_trail_is_whole_in_its_file_though_a_reader_is_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.sqlite3"
    store = SqliteAuditStore(path)
    await store.append(CHAIN, [record(i) for i in range(1, 6)])
    # Someone else has the trail open (an operator's reader) while the service stops: SQLite
    # then leaves the entries in the -wal file, unless the store moves them at close.
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as reader:
        reader.execute("SELECT count(*) FROM tessera_audit_entries").fetchall()
        await store.close()
        archived = shutil.copy(path, tmp_path / "archived.sqlite3")  # the file alone
    copy = SqliteAuditStore(archived)
    try:
        assert verify_chain(CHAIN, await copy.entries(CHAIN)).entries == 5
    finally:
        await copy.close()


async def test_a_failed_sqlite_append_leaves_nothing(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.sqlite3")
    await store.append(CHAIN, [record(1)])
    # The second record of the batch cannot be stored (a NOT NULL column is bypassed by
    # a broken decision); the first must not be left behind either.
    broken = record(3).model_copy(update={"decision": None})
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever sealing a broken record raises
        await store.append(CHAIN, [record(2), broken])
    assert (await store.head(CHAIN))[0] == 1
    assert verify_chain(CHAIN, await store.entries(CHAIN)).ok
    await store.close()


async def test_unreachable_stores_fail_with_a_stable_code(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    for store in (
        open_store(str(tmp_path / "dir.sqlite3")),
        open_store("postgresql://postgres@127.0.0.1:1/none"),
    ):
        with pytest.raises(AuditStoreError) as caught:
            await store.append(CHAIN, [record(1)])
        assert caught.value.code.value == "AUDIT_UNAVAILABLE"
        assert str(tmp_path) not in caught.value.message
        await store.close()


@pytest.mark.parametrize(
    ("url", "kind", "where"),
    [
        ("trail.sqlite3", SqliteAuditStore, Path("trail.sqlite3")),
        ("sqlite:///var/trail.sqlite3", SqliteAuditStore, Path("var/trail.sqlite3")),
        ("sqlite:////var/trail.sqlite3", SqliteAuditStore, Path("/var/trail.sqlite3")),
        ("postgresql://tessera@db/audit", PostgresAuditStore, None),
        ("postgres://tessera@db/audit", PostgresAuditStore, None),
    ],
)
async def test_a_store_is_chosen_by_the_scheme_of_its_url(
    url: str, kind: type[AuditStore], where: Path | None
) -> None:
    store = open_store(url)
    assert type(store) is kind
    if isinstance(store, SqliteAuditStore):
        assert store.path == where
    await store.close()


def test_the_stores_do_not_import_the_module_that_opens_them() -> None:
    """`oversight.audit.stores` knows every store; a store importing it back would be the
    import cycle the registry is there to avoid."""
    package = Path(__file__).resolve().parents[2] / "oversight" / "audit"
    for name in ("store.py", "sqlite.py", "postgres.py", "log.py"):
        tree = ast.parse((package / name).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "oversight.audit.stores" not in imported, name
