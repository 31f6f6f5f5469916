"""Where audit entries are kept: the `AuditStore` protocol, an in-memory fake, and the tables
every store keeps (`oversight.audit.stores` opens the real ones by URL).

A store seals entries itself, inside the transaction that appends them: it reads the chain's
head and writes the entries after it at once. Two writers of one chain can therefore never
fork it, and a restart resumes the chain where the last committed entry left it. An append
that fails leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from schema.audit.chain import SignedHead
from schema.audit.entry import GENESIS, AuditEntry, AuditRecord, StoredEntry, seal
from schema.codes import Jurisdiction
from schema.errors import ErrorCode, TesseraError

ENTRIES_TABLE: Final = "tessera_audit_entries"
HEADS_TABLE: Final = "tessera_audit_heads"
MAX_PAGE: Final = 1000


class AuditStoreError(TesseraError):
    """The store failed; the message is safe to show (no path, SQL or driver text)."""

    code = ErrorCode.AUDIT_UNAVAILABLE


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A search of one chain, newest first. Times compare as audit timestamps (`since`
    inclusive, `until` exclusive); `before` pages: only entries with a smaller seq."""

    since: str | None = None
    until: str | None = None
    principal: str | None = None
    approval: str | None = None
    jurisdiction: Jurisdiction | None = None
    decision: str | None = None
    query_id: str | None = None
    before: int | None = None
    limit: int = 50

    def matches(self, row: StoredEntry) -> bool:
        return (
            (self.since is None or row.time >= self.since)
            and (self.until is None or row.time < self.until)
            and (self.principal is None or row.principal == self.principal)
            and (self.approval is None or row.approval == self.approval)
            and (self.jurisdiction is None or f",{self.jurisdiction.value}," in row.jurisdictions)
            and (self.decision is None or row.decision == self.decision)
            and (self.query_id is None or row.query_id == self.query_id)
            and (self.before is None or row.seq < self.before)
        )


class AuditStore(Protocol):
    async def append(self, chain: str, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        """Seal `records` after the chain's head and store them in one transaction; durable
        when this returns. Raises `AuditStoreError`, having stored none of them."""
        ...

    async def head(self, chain: str) -> tuple[int, str]:
        """The newest entry's seq and hash; `(0, GENESIS)` for an empty chain."""
        ...

    async def entries(
        self, chain: str, *, after: int = 0, limit: int = MAX_PAGE
    ) -> list[StoredEntry]:
        """Entries as stored, by seq, from `after + 1` on: how verification reads a chain."""
        ...

    async def search(self, chain: str, query: AuditQuery) -> list[StoredEntry]: ...

    async def add_head(self, head: SignedHead) -> None: ...

    async def heads(self, chain: str) -> list[SignedHead]: ...

    async def chains(self) -> list[str]:
        """Every chain that has an entry or a signed head: a chain whose entries are gone
        but whose heads remain is still named, so that verification can report it."""
        ...

    async def close(self) -> None: ...


class MemoryAuditStore:
    """An `AuditStore` in memory, for tests. `fail` makes the next appends raise."""

    def __init__(self) -> None:
        self.rows: dict[str, list[StoredEntry]] = {}
        self.signed: dict[str, list[SignedHead]] = {}
        self.fail = False
        self.closed = False

    async def append(self, chain: str, records: Sequence[AuditRecord]) -> list[AuditEntry]:
        seq, prev = await self.head(chain)
        sealed = []
        for record in records:
            seq += 1
            entry = seal(chain, seq, prev, record)
            sealed.append(entry)
            prev = entry.hash
        self.rows.setdefault(chain, []).extend(StoredEntry.of(e) for e in sealed)
        return sealed

    async def head(self, chain: str) -> tuple[int, str]:
        if self.fail:
            raise AuditStoreError("the audit store is unavailable")
        rows = self.rows.get(chain)
        return (rows[-1].seq, rows[-1].hash) if rows else (0, GENESIS)

    async def entries(
        self, chain: str, *, after: int = 0, limit: int = MAX_PAGE
    ) -> list[StoredEntry]:
        return [r for r in self.rows.get(chain, []) if r.seq > after][:limit]

    async def search(self, chain: str, query: AuditQuery) -> list[StoredEntry]:
        found = [r for r in reversed(self.rows.get(chain, [])) if query.matches(r)]
        return found[: min(query.limit, MAX_PAGE)]

    async def add_head(self, head: SignedHead) -> None:
        heads = self.signed.setdefault(head.chain, [])
        if head not in heads:
            heads.append(head)

    async def heads(self, chain: str) -> list[SignedHead]:
        return list(self.signed.get(chain, []))

    async def chains(self) -> list[str]:
        return sorted(set(self.rows) | set(self.signed))

    async def close(self) -> None:
        self.closed = True


def tables_ddl(seq_type: str) -> str:
    """The audit tables and their indexes, the same in every store but for the integer type
    of sequence numbers; each store adds its own append-only triggers."""
    return f"""
CREATE TABLE IF NOT EXISTS {ENTRIES_TABLE} (
    chain TEXT NOT NULL,
    seq {seq_type} NOT NULL,
    hash TEXT NOT NULL,
    prev TEXT NOT NULL,
    time TEXT NOT NULL,
    query_id TEXT,
    principal TEXT,
    approval TEXT,
    decision TEXT NOT NULL,
    jurisdictions TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX IF NOT EXISTS {ENTRIES_TABLE}_time ON {ENTRIES_TABLE} (chain, time);
CREATE INDEX IF NOT EXISTS {ENTRIES_TABLE}_query ON {ENTRIES_TABLE} (query_id);
CREATE TABLE IF NOT EXISTS {HEADS_TABLE} (
    chain TEXT NOT NULL,
    seq {seq_type} NOT NULL,
    hash TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (chain, seq, key_id)
);
"""
