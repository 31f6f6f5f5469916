"""`AuditLog`: the one writer of a service's audit chain.

`record()` returns once the entry is durably stored: a service awaits it before it releases
an answer, so there is no answer without its entry. Records arriving while a write is under
way are written together in the next transaction (group commit), so concurrent queries share
one disk sync instead of queueing for one each.

Crash safety comes from the store: each batch is one transaction, sealed after the head it
reads inside that transaction. A crash loses at most the batch being written (whose answers
were not released), never leaves part of an entry, and a restart continues the chain from the
last committed entry. The head is signed every `sign_every` entries, every `sign_interval_s`
seconds when it moved, at start (covering what an earlier process left unsigned) and at close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from oversight.audit.store import AuditStore, AuditStoreError
from schema.audit.chain import SignedHead, head_log_line, sign_head
from schema.audit.entry import AuditEntry, AuditRecord, utc_now

log = logging.getLogger(__name__)

SIGN_EVERY: Final = 100
SIGN_INTERVAL_S: Final = 60.0
MAX_BATCH: Final = 256
# The most entries a healthy service leaves without a signed head: it signs once a batch
# takes the chain `SIGN_EVERY` past the last head, and a batch holds up to MAX_BATCH entries.
MAX_UNSIGNED: Final = SIGN_EVERY - 1 + MAX_BATCH

_Pending = tuple[AuditRecord, "asyncio.Future[AuditEntry]"]


class AuditLog:
    def __init__(
        self,
        store: AuditStore,
        chain: str,
        *,
        signing_key: Ed25519PrivateKey | None,
        sign_every: int = SIGN_EVERY,
        sign_interval_s: float = SIGN_INTERVAL_S,
    ) -> None:
        if sign_every < 1 or sign_interval_s <= 0:
            raise ValueError("sign_every and sign_interval_s must be positive")
        self.store = store
        self.chain = chain
        self._key = signing_key
        self._sign_every = sign_every
        self._sign_interval_s = sign_interval_s
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._seq = 0
        self._signed_seq = 0
        self._signed_at = 0.0  # loop time of the last signature (or check)

    @property
    def signs_heads(self) -> bool:
        return self._key is not None

    async def start(self) -> None:
        """Read the chain's state and sign its head if an earlier process left it unsigned.
        A store that cannot be reached is not fatal here: appends will fail (and answers be
        withheld) until it can."""
        try:
            self._seq, _ = await self.store.head(self.chain)
            heads = await self.store.heads(self.chain)
            self._signed_seq = max((h.seq for h in heads), default=0)
            await self._sign_if_moved()
        except AuditStoreError:
            log.error("audit chain %s: the store is unavailable at start", self.chain)
        self._writer = asyncio.create_task(self._write_forever(), name=f"audit:{self.chain}")

    async def record(self, record: AuditRecord) -> AuditEntry:
        """Append `record`; returns the sealed entry once it is durable. Raises
        `AuditStoreError` when it could not be stored."""
        if self._closing:
            raise AuditStoreError("the audit log is closed")
        if self._writer is None:  # not started: write without the start-up signature
            self._writer = asyncio.create_task(self._write_forever(), name=f"audit:{self.chain}")
        future: asyncio.Future[AuditEntry] = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        self._wake.set()
        # Shielded: a caller that gives up (a cancelled request) must not cancel the write
        # other callers' entries are part of.
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Write what is pending, sign the head, stop. The store stays open (its owner
        closes it)."""
        self._closing = True
        if self._writer is None:
            return
        self._wake.set()
        await self._writer
        self._writer = None
        with contextlib.suppress(AuditStoreError):
            await self._sign_if_moved()

    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                await self._write(batch)
            elif self._closing:
                return
            else:
                # Nothing can be appended between the check above and this clear: no await.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(self._next_signature()):
                        await self._wake.wait()
            deadline = self._next_signature()
            if deadline is not None and loop.time() >= deadline:
                with contextlib.suppress(AuditStoreError):
                    await self._sign_if_moved()

    def _next_signature(self) -> float | None:
        return None if self._key is None else self._signed_at + self._sign_interval_s

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            entries = await self.store.append(self.chain, [record for record, _ in batch])
        except Exception as exc:
            if not isinstance(exc, AuditStoreError):
                log.error("audit chain %s: append failed with %s", self.chain, type(exc).__name__)
                exc = AuditStoreError("the audit store is unavailable")
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), entry in zip(batch, entries, strict=True):
            if not future.done():
                future.set_result(entry)
        self._seq = entries[-1].seq
        if self._seq - self._signed_seq >= self._sign_every:
            with contextlib.suppress(AuditStoreError):
                await self._sign_if_moved()

    async def _sign_if_moved(self) -> SignedHead | None:
        if self._key is None:
            return None
        self._signed_at = asyncio.get_running_loop().time()
        seq, entry_hash = await self.store.head(self.chain)
        if seq == 0 or seq <= self._signed_seq:
            return None
        head = sign_head(self._key, self.chain, seq, entry_hash, utc_now())
        await self.store.add_head(head)
        self._seq = max(self._seq, seq)
        self._signed_seq = seq
        # Also in the service log, whole and parseable (`tessera audit verify --heads`): a
        # second place the head can be found, should the store's copy be removed along with
        # the entries it covers.
        log.info("audit chain %s signed at entry %d: %s", self.chain, seq, head_log_line(head))
        return head
