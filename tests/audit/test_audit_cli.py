"""`tessera audit verify|export` on SQLite and PostgreSQL trails."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from oversight.audit.log import AuditLog
from oversight.audit.sqlite import SCHEMA
from oversight.audit.store import ENTRIES_TABLE
from oversight.audit.stores import open_store
from schema.approval import ApplicantId
from schema.audit.entry import (
    FORMAT_VERSION,
    GENESIS,
    STORED_COLUMNS,
    Decision,
    NodeDecision,
    NodeStep,
    PermitRecord,
    StoredEntry,
    canonical_json,
    digest,
    jurisdictions_column,
)
from schema.codes import Jurisdiction, NodeStatus
from schema.errors import ErrorCode
from tessera.cli import main
from tests.audit.audit_kit import postgres_database, record

CHAIN = "gateway:tessera-gateway"


def fill(url: str, key: Ed25519PrivateKey, n: int = 6) -> None:
    async def write() -> None:
        store = open_store(url)
        log = AuditLog(store, CHAIN, signing_key=key, sign_every=4)
        await log.start()
        for i in range(1, n + 1):
            refused = {"decision": Decision.REFUSED, "error_code": ErrorCode.FORBIDDEN}
            await log.record(record(i, **(refused if i == 2 else {})))
        await log.close()
        await store.close()

    asyncio.run(write())


@pytest.fixture
def key(tmp_path: Path) -> tuple[Ed25519PrivateKey, Path]:
    private = Ed25519PrivateKey.generate()
    path = tmp_path / "audit.pub.pem"
    path.write_bytes(
        private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return private, path


def test_verify_and_export_an_intact_trail(
    tmp_path: Path, key: tuple[Ed25519PrivateKey, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "audit.sqlite3"
    fill(str(db), key[0])
    assert main(["audit", "verify", "--db", str(db), "--key", str(key[1])]) == 0
    assert capsys.readouterr().out == (
        f"{CHAIN}: OK: 6 entries, 2 signed heads, 2 signatures verified\n"
    )
    assert main(["audit", "export", "--db", str(db), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    # Entry 2 was refused: it accessed no data and is not in the register.
    assert [r["query_id"] for r in rows] == [f"q-0000000{i}" for i in (1, 3, 4, 5, 6)]
    assert rows[0] == {
        "time": rows[0]["time"],
        "query_id": "q-00000001",
        "data_user": "researcher-1@example.eu",
        "organisation": "",
        "issuer": "https://hdab.test",
        "data_request": "DR-1",
        "purpose": "scientific_research",
        "datasets": "",
        "jurisdictions": "FR DK",
        "permits": "",
        "decision": "ANSWERED",
    }
    out = tmp_path / "register.json"
    assert main(["audit", "export", "--db", str(db), "--format", "json", "--out", str(out)]) == 0
    assert [r["data_user"] for r in json.loads(out.read_text())][:2] == [
        "researcher-1@example.eu",
        "researcher-0@example.eu",
    ]


def test_a_broken_trail_fails_verify_and_is_not_exported(
    tmp_path: Path, key: tuple[Ed25519PrivateKey, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "audit.sqlite3"
    fill(str(db), key[0])
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TRIGGER tessera_audit_entries_no_update")
        connection.execute(
            "UPDATE tessera_audit_entries SET body = replace(body, 'DR-0', 'DR-9') WHERE seq = 4"
        )
    assert main(["audit", "verify", "--db", str(db)]) == 1
    assert capsys.readouterr().out.startswith(f"{CHAIN}: BROKEN at entry 4: the hash")
    assert main(["audit", "export", "--db", str(db)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "nothing exported" in captured.err


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--db", str(tmp_path / "none.sqlite3")]) == 2
    assert "no audit store" in capsys.readouterr().err
    not_a_key = tmp_path / "x.pem"
    not_a_key.write_text("nope")
    assert main(["audit", "verify", "--db", "x", "--key", str(not_a_key)]) == 2
    assert main(["audit", "verify", "--db", "postgresql://postgres@127.0.0.1:1/none"]) == 2
    assert "unavailable" in capsys.readouterr().err


def test_tampering_with_a_postgres_trail_is_detected(
    key: tuple[Ed25519PrivateKey, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    async def tamper(dsn: str) -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute("ALTER TABLE tessera_audit_entries DISABLE TRIGGER ALL")
            await connection.execute("DELETE FROM tessera_audit_entries WHERE seq = 3")
        finally:
            await connection.close()

    async def scenario() -> tuple[int, int]:
        async with postgres_database() as dsn:
            await asyncio.to_thread(fill, dsn, key[0])
            intact = await asyncio.to_thread(
                main, ["audit", "verify", "--db", dsn, "--key", str(key[1])]
            )
            await tamper(dsn)
            broken = await asyncio.to_thread(main, ["audit", "verify", "--db", dsn])
            return intact, broken

    assert asyncio.run(scenario()) == (0, 1)
    out = capsys.readouterr().out
    assert f"{CHAIN}: OK: 6 entries" in out
    assert f"{CHAIN}: BROKEN at entry 3: expected entry 3 here, found 4" in out


def write_old_entry(db: Path) -> None:
    """Entry 1 as a gateway wrote it before permits existed: its record has neither
    `applicant` nor `permits`."""
    old = record(1).model_dump(mode="json")
    del old["applicant"], old["permits"]
    body = canonical_json(
        {"v": FORMAT_VERSION, "chain": CHAIN, "seq": 1, "prev": GENESIS, "record": old}
    )
    row = StoredEntry(
        chain=CHAIN,
        seq=1,
        hash=digest(body),
        prev=GENESIS,
        time=old["time"],
        query_id=old["query_id"],
        principal=old["principal"],
        approval=old["approval"],
        decision=old["decision"],
        jurisdictions=jurisdictions_column(record(1).jurisdictions),
        body=body,
    )
    with sqlite3.connect(db) as connection:
        connection.executescript(SCHEMA)
        connection.execute(
            f"INSERT INTO {ENTRIES_TABLE} ({STORED_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
            row.as_row(),
        )


def test_a_trail_from_before_permits_still_verifies_and_exports(
    tmp_path: Path, key: tuple[Ed25519PrivateKey, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "audit.sqlite3"
    write_old_entry(db)
    permits = [
        PermitRecord(
            jurisdiction=Jurisdiction.FR,
            issuer="https://hdab.fr.test",
            request_id="DR-2026-0042-FR",
            application_id="DR-2026-0042",
            organisation="Example Hospital",
        ),
        PermitRecord(
            jurisdiction=Jurisdiction.DK, issuer="https://hdab.dk.test", request_id="DK-7"
        ),
    ]

    async def append() -> None:
        store = open_store(str(db))
        log = AuditLog(store, CHAIN, signing_key=key[0])
        await log.start()  # continues the old chain
        applicant = ApplicantId(researcher="researcher-1@example.eu", organisation="Example")
        await log.record(record(3, applicant=applicant, permits=permits))
        await log.close()
        await store.close()

    asyncio.run(append())
    assert main(["audit", "verify", "--db", str(db), "--key", str(key[1])]) == 0
    assert ": OK: 2 entries" in capsys.readouterr().out
    assert main(["audit", "export", "--db", str(db), "--format", "json"]) == 0
    old, new = json.loads(capsys.readouterr().out)
    assert (old["organisation"], old["permits"]) == ("", "")
    assert (new["organisation"], new["permits"]) == (
        "Example",
        "FR=DR-2026-0042-FR@https://hdab.fr.test DK=DK-7@https://hdab.dk.test",
    )


def test_an_older_entry_every_jurisdiction_denied_is_not_an_access(
    tmp_path: Path, key: tuple[Ed25519PrivateKey, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before such questions were recorded REFUSED, they were PARTIAL with every node
    DENIED: the register leaves them out too."""
    denied = NodeStep(
        jurisdiction=Jurisdiction.FR, decision=NodeDecision.DENIED, status=NodeStatus.DENIED
    )

    async def write() -> None:
        store = open_store(str(db))
        log = AuditLog(store, CHAIN, signing_key=key[0])
        await log.record(record(1, decision=Decision.PARTIAL, nodes=[denied]))
        await log.record(record(3))
        await log.close()
        await store.close()

    db = tmp_path / "audit.sqlite3"
    asyncio.run(write())
    assert main(["audit", "export", "--db", str(db), "--format", "json"]) == 0
    assert [r["query_id"] for r in json.loads(capsys.readouterr().out)] == ["q-00000003"]
