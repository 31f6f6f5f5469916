"""Reading audit stores for `tessera audit`: chain verification page by page, and the rows
of the transparency register."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from oversight.audit.store import MAX_PAGE, AuditStore
from oversight.audit.stores import is_postgres_url, open_store
from schema.audit.chain import (
    HEAD_LOG_MARKER,
    ChainVerifier,
    SignedHead,
    Verification,
    heads_from_log,
    key_id,
)
from schema.audit.entry import AuditRecord, Decision, PermitRecord, StoredEntry
from schema.codes import NodeStatus
from schema.errors import TesseraError

REGISTER_COLUMNS: Final = (
    "time",
    "query_id",
    "data_user",
    "organisation",
    "issuer",
    "data_request",
    "purpose",
    "datasets",
    "jurisdictions",
    "permits",
    "decision",
)


class Broken(Exception):
    def __init__(self, result: Verification) -> None:
        super().__init__(result.summary())
        self.result = result


def run(url: str, chain: str | None, work: Any, known: Sequence[str] = ()) -> list[Any] | None:
    """`await work(store, chain)` for the chain named, or for every chain of the store (and
    every chain of `known`, e.g. named by heads kept elsewhere); None (having said why) when
    there is no store, no chain, or no chain of that name."""
    if not is_postgres_url(url) and not Path(url.removeprefix("sqlite:///")).is_file():
        print(f"tessera audit: no audit store at {url}", file=sys.stderr)
        return None
    return asyncio.run(_each_chain(url, chain, work, known))


async def _each_chain(
    url: str, chain: str | None, work: Any, known: Sequence[str]
) -> list[Any] | None:
    store = open_store(url)
    try:
        return await _chains(store, chain, work, known)
    except TesseraError as e:
        print(f"tessera audit: {e.message}", file=sys.stderr)
        return None
    finally:
        await store.close()


async def _chains(
    store: AuditStore, chain: str | None, work: Any, known: Sequence[str]
) -> list[Any] | None:
    present = sorted(set(await store.chains()) | set(known))
    if chain is not None and chain not in present:
        names = ", ".join(present) or "none"
        print(
            f"tessera audit: the store holds no entry and no head of chain {chain!r} "
            f"(its chains: {names})",
            file=sys.stderr,
        )
        return None
    chains = [chain] if chain is not None else present
    if not chains:
        print("tessera audit: the store holds no chain", file=sys.stderr)
        return None
    return [await work(store, c) for c in chains]


def load_heads(paths: Sequence[Path]) -> list[SignedHead]:
    """The signed heads logged in each file (`tessera-audit-head {...}` lines of a service
    log). Raises ValueError naming the file when one cannot be read; says so on standard
    error when one holds none (a service that has not signed yet, or the wrong file)."""
    heads: list[SignedHead] = []
    for path in paths:
        try:
            with path.open(encoding="utf-8", errors="replace") as lines:
                found = heads_from_log(lines)
        except OSError as e:
            raise ValueError(f"cannot read the heads file {path}: {e.strerror}") from None
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        if not found:
            print(
                f"tessera audit: warning: {path} holds no signed head yet (lines with "
                f"{HEAD_LOG_MARKER.strip()!r}, as the services log them)",
                file=sys.stderr,
            )
        heads += found
    return heads


def load_keys(paths: Sequence[Path]) -> dict[str, Ed25519PublicKey] | None:
    """Public keys by key id; None when no key was given (signatures are then not checked)."""
    if not paths:
        return None
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            key = load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read the public key {path}: {e}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path} is not an Ed25519 public key")
        keys[key_id(key)] = key
    return keys


async def entries(store: AuditStore, chain: str) -> AsyncIterator[StoredEntry]:
    after = 0
    while True:
        page = await store.entries(chain, after=after, limit=MAX_PAGE)
        for row in page:
            yield row
        if len(page) < MAX_PAGE:
            return
        after = page[-1].seq


async def verify(
    store: AuditStore,
    chain: str,
    keys: dict[str, Ed25519PublicKey] | None,
    *,
    external: Sequence[SignedHead] = (),
    max_unsigned: int | None = None,
) -> Verification:
    verifier = ChainVerifier(
        chain, await store.heads(chain), external=external, max_unsigned=max_unsigned
    )
    async for row in entries(store, chain):
        if not verifier.feed(row):
            break
    return verifier.finish(keys)


def permits_text(permits: Sequence[PermitRecord]) -> str:
    """Each jurisdiction's permit as `FR=<data request>@<issuing HDAB>`, space-separated."""
    return " ".join(f"{p.jurisdiction.value}={p.request_id}@{p.issuer}" for p in permits)


async def register_rows(store: AuditStore, chain: str) -> AsyncIterator[dict[str, str]]:
    """The transparency register (EHDS Art. 58): one row per query that accessed data, with
    the permit each jurisdiction's part was answered under (entries written before permits
    existed leave `organisation` and `permits` empty)."""
    async for row in entries(store, chain):
        record = row.record()
        if not accessed(record):
            continue
        applicant = record.applicant
        yield {
            "time": record.time,
            "query_id": record.query_id or "",
            "data_user": record.principal or "",
            "organisation": (applicant.organisation if applicant else None) or "",
            "issuer": record.issuer or "",
            "data_request": record.approval or "",
            "purpose": record.purpose or "",
            "datasets": " ".join(record.datasets),
            "jurisdictions": " ".join(j.value for j in record.jurisdictions),
            "permits": permits_text(record.permits),
            "decision": record.decision.value,
        }


def accessed(record: AuditRecord) -> bool:
    """Whether the query an entry records accessed data: not when it was refused, nor when
    no jurisdiction answered (every one denied it, refused it or failed; trails written
    before such questions were recorded REFUSED hold them as PARTIAL)."""
    if record.decision is Decision.REFUSED:
        return False
    return not record.nodes or any(n.status is NodeStatus.OK for n in record.nodes)


def render_register(rows: list[dict[str, str]], kind: str) -> str:
    if kind == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REGISTER_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
