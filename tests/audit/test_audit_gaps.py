"""What a trail rewritten with its heads removed looks like to `tessera audit verify|export`,
run as the command an auditor runs (a subprocess): gaps no head covers, chains whose entries
are gone, heads kept in the service log, an unknown chain."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from oversight.audit.log import MAX_UNSIGNED, AuditLog
from oversight.audit.log import log as audit_logger
from oversight.audit.store import ENTRIES_TABLE, HEADS_TABLE
from oversight.audit.stores import open_store
from schema.audit.chain import HEAD_LOG_MARKER
from schema.audit.entry import STORED_COLUMNS, StoredEntry, seal
from tests.audit.audit_kit import record

GATEWAY = "gateway:tessera-gateway"
NODE = "node:fr"
ENTRIES = 2057
FORGED = 1028


def tessera(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tessera", "audit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_trail(db: Path, log_file: Path, key: Ed25519PrivateKey, chains: dict[str, int]) -> None:
    """Each chain with its number of entries, written as the services write them (signed
    every 100 entries and at close), the service log's lines in `log_file`."""
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    audit_logger.addHandler(handler)
    previous_level = audit_logger.level
    audit_logger.setLevel(logging.INFO)

    async def write() -> None:
        store = open_store(str(db))
        for chain, n in chains.items():
            log = AuditLog(store, chain, signing_key=key)
            await log.start()
            for start in range(1, n + 1, 50):
                await asyncio.gather(
                    *(log.record(record(i)) for i in range(start, min(n, start + 49) + 1))
                )
            await log.close()
        await store.close()

    try:
        asyncio.run(write())
    finally:
        audit_logger.removeHandler(handler)
        audit_logger.setLevel(previous_level)
        handler.close()


def rewrite_from(db: Path, chain: str, seq: int) -> None:
    """What someone with write access to the store does: change entry `seq` (its purpose),
    re-hash the chain from there, and delete the signed heads from there on, which they
    cannot re-sign."""
    with sqlite3.connect(db) as connection:
        for trigger in ("entries_no_update", "entries_no_delete", "heads_no_delete"):
            connection.execute(f"DROP TRIGGER IF EXISTS tessera_audit_{trigger}")
        rows = [
            StoredEntry(*row)
            for row in connection.execute(
                f"SELECT {STORED_COLUMNS} FROM {ENTRIES_TABLE} "  # noqa: S608
                "WHERE chain = ? AND seq >= ? ORDER BY seq",
                (chain, seq - 1),
            )
        ]
        prev = rows[0].hash
        connection.execute(
            f"DELETE FROM {ENTRIES_TABLE} WHERE chain = ? AND seq >= ?",  # noqa: S608
            (chain, seq),
        )
        connection.execute(
            f"DELETE FROM {HEADS_TABLE} WHERE chain = ? AND seq >= ?",  # noqa: S608
            (chain, seq),
        )
        for row in rows[1:]:
            changed = row.record()
            if row.seq == seq:
                changed = changed.model_copy(update={"purpose": "advertising_marketing"})
            entry = seal(chain, row.seq, prev, changed)
            connection.execute(
                f"INSERT INTO {ENTRIES_TABLE} ({STORED_COLUMNS}) "  # noqa: S608
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                StoredEntry.of(entry).as_row(),
            )
            prev = entry.hash


def delete_chain(db: Path, chain: str, *, heads: bool) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TRIGGER IF EXISTS tessera_audit_entries_no_delete")
        connection.execute("DROP TRIGGER IF EXISTS tessera_audit_heads_no_delete")
        connection.execute(f"DELETE FROM {ENTRIES_TABLE} WHERE chain = ?", (chain,))  # noqa: S608
        if heads:
            connection.execute(f"DELETE FROM {HEADS_TABLE} WHERE chain = ?", (chain,))  # noqa: S608


@pytest.fixture
def key(tmp_path: Path) -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    path = tmp_path / "audit.pub.pem"
    path.write_bytes(
        private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return private, str(path)


def test_a_rewrite_with_its_heads_removed_fails_verify_and_is_not_exported(
    tmp_path: Path, key: tuple[Ed25519PrivateKey, str]
) -> None:
    db, service_log = tmp_path / "audit.sqlite3", tmp_path / "gateway.log"
    write_trail(db, service_log, key[0], {GATEWAY: ENTRIES})
    intact = tessera("verify", "--db", str(db), "--key", key[1], "--heads", str(service_log))
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout == (
        f"{GATEWAY}: OK: {ENTRIES} entries, 21 signed heads, 21 signatures verified, "
        "21 heads kept elsewhere match\n"
    )

    rewrite_from(db, GATEWAY, FORGED)
    # The chain is consistent in itself and every head left in the store matches it ...
    forged = tessera("verify", "--db", str(db), "--key", key[1])
    # ... but 1057 entries at its end have no head, where the service leaves at most 355.
    assert forged.returncode == 1
    assert forged.stdout == (
        f"{GATEWAY}: BROKEN: no signed head covers entries 1001 to {ENTRIES} (1057 entries, "
        f"but the service leaves at most {MAX_UNSIGNED} unsigned): heads after entry 1000 "
        "were removed, and the entries up to the end of the chain may have been rewritten\n"
    )
    exported = tessera("export", "--db", str(db), "--key", key[1], "--format", "json")
    assert exported.returncode == 1
    assert exported.stdout == ""
    assert "nothing exported" in exported.stderr
    assert "advertising_marketing" not in exported.stdout

    # The heads the service logged name the entry that was changed.
    logged = tessera("verify", "--db", str(db), "--heads", str(service_log))
    assert logged.returncode == 1
    assert "entry 1100 differs from the one whose hash was signed" in logged.stdout


def test_a_rewrite_within_the_grace_needs_the_logged_heads(
    tmp_path: Path, key: tuple[Ed25519PrivateKey, str]
) -> None:
    """The documented limit: the newest entries, up to MAX_UNSIGNED past the last head left
    in the store, can be rewritten unseen by the store alone; heads kept elsewhere show it."""
    db, service_log = tmp_path / "audit.sqlite3", tmp_path / "gateway.log"
    write_trail(db, service_log, key[0], {GATEWAY: 450})
    rewrite_from(db, GATEWAY, 420)
    alone = tessera("verify", "--db", str(db), "--key", key[1])
    assert alone.returncode == 0, alone.stdout
    logged = tessera("verify", "--db", str(db), "--key", key[1], "--heads", str(service_log))
    assert logged.returncode == 1
    assert logged.stdout == (
        f"{GATEWAY}: BROKEN: entry 450 differs from the one whose hash was signed\n"
    )


def test_every_chain_with_entries_or_heads_is_listed(
    tmp_path: Path, key: tuple[Ed25519PrivateKey, str]
) -> None:
    db, service_log = tmp_path / "audit.sqlite3", tmp_path / "services.log"
    write_trail(db, service_log, key[0], {GATEWAY: 120, NODE: 120})
    delete_chain(db, NODE, heads=False)
    result = tessera("verify", "--db", str(db), "--key", key[1])
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{GATEWAY}: OK: 120 entries, 2 signed heads, 2 signatures verified",
        f"{NODE}: BROKEN: 2 signed heads name this chain but the store holds none of its "
        "entries (its entries were deleted)",
    ]
    # Its heads deleted too, the chain is gone from the store but not from the log.
    delete_chain(db, NODE, heads=True)
    assert tessera("verify", "--db", str(db)).returncode == 0
    result = tessera("verify", "--db", str(db), "--heads", str(service_log))
    assert result.returncode == 1
    assert f"{NODE}: BROKEN: 2 signed heads name this chain" in result.stdout


def test_a_chain_without_heads_past_the_cadence_fails(tmp_path: Path) -> None:
    async def write() -> None:
        store = open_store(str(db))
        log = AuditLog(store, GATEWAY, signing_key=None)
        for start in range(1, MAX_UNSIGNED + 2, 50):
            await asyncio.gather(*(log.record(record(i)) for i in range(start, start + 50)))
        await log.close()
        await store.close()

    db = tmp_path / "audit.sqlite3"
    asyncio.run(write())
    result = tessera("verify", "--db", str(db))
    assert result.returncode == 1
    assert "no signed head covers entries 1 to 400" in result.stdout
    assert tessera("verify", "--db", str(db), "--max-unsigned", "400").returncode == 0


def test_an_unknown_chain_or_an_unreadable_heads_file_is_an_error(
    tmp_path: Path, key: tuple[Ed25519PrivateKey, str]
) -> None:
    db, service_log = tmp_path / "audit.sqlite3", tmp_path / "gateway.log"
    write_trail(db, service_log, key[0], {GATEWAY: 3})
    result = tessera("verify", "--db", str(db), "--chain", "node:xx")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"tessera audit: the store holds no entry and no head of chain 'node:xx' "
        f"(its chains: {GATEWAY})\n"
    )
    empty = tmp_path / "empty.log"
    empty.write_text("nothing here\n")
    result = tessera("verify", "--db", str(db), "--heads", str(empty))
    assert (result.returncode, result.stderr) == (
        0,
        f"tessera audit: warning: {empty} holds no signed head yet (lines with "
        "'tessera-audit-head', as the services log them)\n",
    )
    garbled = tmp_path / "garbled.log"
    garbled.write_text(f"x\n{HEAD_LOG_MARKER}{{not json\n")
    result = tessera("export", "--db", str(db), "--heads", str(garbled))
    assert result.returncode == 2
    assert "line 2 holds no readable signed head" in result.stderr


def test_the_logged_line_is_the_head(tmp_path: Path, key: tuple[Ed25519PrivateKey, str]) -> None:
    db, service_log = tmp_path / "audit.sqlite3", tmp_path / "gateway.log"
    write_trail(db, service_log, key[0], {GATEWAY: 3})
    (line,) = service_log.read_text().splitlines()
    assert f"INFO oversight.audit.log audit chain {GATEWAY} signed at entry 3: " in line
    assert HEAD_LOG_MARKER + '{"chain":"gateway:tessera-gateway",' in line


def test_a_head_deleted_from_the_store_is_found_by_its_logged_copy(
    tmp_path: Path, key: tuple[Ed25519PrivateKey, str]
) -> None:
    db, service_log = tmp_path / "audit.sqlite3", tmp_path / "gateway.log"
    write_trail(db, service_log, key[0], {GATEWAY: 450})
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TRIGGER tessera_audit_heads_no_delete")
        connection.execute(f"DELETE FROM {HEADS_TABLE} WHERE seq = 200")  # noqa: S608
    assert tessera("verify", "--db", str(db)).returncode == 0  # 100 to 300: within the cadence
    # The log given twice: each head counts once.
    logged = tessera(
        "verify", "--db", str(db), "--heads", str(service_log), "--heads", str(service_log)
    )
    assert logged.returncode == 1
    assert logged.stdout == (
        f"{GATEWAY}: BROKEN: the head signed at entry 200 (kept elsewhere) is missing from the "
        "store (heads were removed)\n"
    )
