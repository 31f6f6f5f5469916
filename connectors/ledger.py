"""What each applicant has been told, per person: the node's privacy ledger.

Every released table charges each person counted in it rho = 1/(2 sd^2) (zero-concentrated
differential privacy; `connectors.noise`). The ledger keeps, per account — an applicant
researcher, and the organisation they ask for (`schema.approval.ApplicantId`), across every
approval and every HDAB — each person's total, in integer units of 1e-5 rho, in one array
per account indexed by the person index (`tessera_person`, stable across data reloads).

A question is admitted in one step (`admit`): the persons of its cohort whose spend plus the
question's cost stays within every account's cap are charged and counted; the others drop out
of its counts without a word (an individual privacy filter: Feldman & Zrnic 2021). Who drops
out depends on the data, but only as the noise of the answer covers it; what an applicant is
told of its spend (`Spend`) is the worst case over persons, which depends only on the
questions asked.

`FileLedger` memory-maps each account's array from a file of its own in the node's state
directory: a charge is a few NumPy operations on the cohort's indexes, and `flush` appends the
charges since the last flush and the worst cases that grew to the journal
(`connectors.journal`) with one sync before the answer leaves. A flush can start as soon as the
question is charged, while the database computes its tables. The arrays and the worst cases'
database are written back at a checkpoint (the journal past a bound or a minute old, on a
worker thread while questions go on; and on close), which then empties the journal; opening
the ledger replays whatever the journal holds. `MemoryLedger` is the fake for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import mmap
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from connectors import journal
from connectors.durability import sync_directory
from connectors.errors import LedgerUnavailable, ledger_failures
from schema.approval import ApplicantId

# Spend is counted in units of 1e-5 rho. A uint16 holds 0.65535 rho, above the largest cap
# (policies.profiles.MAX_RHO = 0.5): a person is only ever charged up to the cap.
UNITS_PER_RHO: Final = 100_000
SPEND_DTYPE: Final = np.dtype(np.uint16)
MAX_CAP_UNITS: Final = int(np.iinfo(np.uint16).max)
_WHAT: Final = "privacy ledger"
# Arrays grow in steps of this many persons (a multiple of the page size in bytes / 2).
_GROWTH: Final = 1 << 16
# Who of a cohort this size or smaller is counted is decided on the event loop (~1 ms for
# 50,000 persons): a worker thread's hand-off costs more than that on a busy machine.
_INLINE_PERSONS: Final = 50_000
_PAGE_PERSONS: Final = mmap.PAGESIZE // SPEND_DTYPE.itemsize

PersonIndexes = NDArray[np.uint32]
Kind = Literal["researcher", "organisation"]


def units(rho: float) -> int:
    """`rho` in ledger units, rounded up: a charge is never smaller than its cost."""
    return math.ceil(rho * UNITS_PER_RHO - 1e-9)


def rho_of(amount: int) -> float:
    return amount / UNITS_PER_RHO


@dataclass(frozen=True, slots=True)
class Account:
    """One budget: an applicant researcher or organisation, and its cap in units."""

    kind: Kind
    id: str
    cap: int

    def __post_init__(self) -> None:
        if not 0 < self.cap <= MAX_CAP_UNITS:
            raise ValueError(f"a cap must lie between 1 and {MAX_CAP_UNITS} units")

    @property
    def key(self) -> str:
        """A name for the account's files and rows that does not spell its identity."""
        digest = hashlib.sha256(f"{self.kind}\0{self.id}".encode()).hexdigest()
        return f"{self.kind[0]}{digest[:40]}"


def accounts_of(
    applicant: ApplicantId, *, researcher_cap: float, organisation_cap: float
) -> tuple[Account, ...]:
    """The accounts a question of `applicant` is charged to, caps given in rho."""
    found = [Account("researcher", applicant.researcher, units(researcher_cap))]
    if applicant.organisation is not None:
        found.append(Account("organisation", applicant.organisation, units(organisation_cap)))
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Admitted:
    """The persons of a cohort counted in a question (a mask over the cohort's indexes) and
    each account's worst-case spend, this question included."""

    counted: NDArray[np.bool_]
    worst_case: dict[str, int]


class Ledger(Protocol):
    async def admit(
        self, accounts: Sequence[Account], persons: PersonIndexes, cost: int, *, reserve: int = 0
    ) -> Admitted:
        """Charge `cost` units to every person of `persons` who can afford it in every
        account, and `reserve` more (not charged: what the rest of a fit may still cost); the
        others are not counted. `cost` 0 charges nothing and counts everyone."""
        ...

    async def worst_case(self, account: Account) -> int:
        """The account's worst-case spend per person so far (data-independent)."""
        ...

    async def prepare(self, accounts: Sequence[Account]) -> None:
        """Make ready what admitting a question of `accounts` reads (their worst cases,
        their arrays): called while the cohort is being listed."""
        ...

    async def flush(self) -> None:
        """Make every charge so far durable."""
        ...

    async def close(self) -> None: ...


class _Arrays(Protocol):
    def array(self, account: Account, size: int) -> NDArray[np.uint16]: ...


class MemoryLedger:
    """Spend in memory: the base of the file ledger, and the fake for tests."""

    def __init__(self) -> None:
        self._arrays: dict[str, NDArray[np.uint16]] = {}
        self._worst: dict[str, int] = {}
        # One question at a time decides and charges: two racing questions must not both
        # count a person who can afford only one of them.
        self._lock = asyncio.Lock()
        self._charging: asyncio.Future[None] | None = None

    def array(self, account: Account, size: int) -> NDArray[np.uint16]:
        spend = self._arrays.get(account.key)
        if spend is None or len(spend) < size:
            grown = np.zeros(_grown(size), dtype=SPEND_DTYPE)
            if spend is not None:
                grown[: len(spend)] = spend
            spend = self._arrays[account.key] = grown
        return spend

    async def _load_worst(self, account: Account) -> int:
        return self._worst.get(account.key, 0)

    def _spent(self, account: Account) -> None:
        """Called when the account's worst case has grown (with the lock held)."""

    async def prepare(self, accounts: Sequence[Account]) -> None:
        for account in accounts:
            await self.worst_case(account)
        if any(a.key not in self._arrays for a in accounts):
            async with self._lock:
                # As wide as the widest array open: every account's array grows to the
                # persons' highest index. (A file ledger creates and maps files here.)
                size = max((len(spend) for spend in self._arrays.values()), default=0)
                with ledger_failures(_WHAT):
                    await asyncio.to_thread(self._open, accounts, size)

    def _open(self, accounts: Sequence[Account], size: int) -> None:
        for account in accounts:
            if account.key not in self._arrays:
                spend = self.array(account, size)
                # One read per page maps each page now rather than in the admission's first
                # reads (~1,000 page faults for two accounts of 1M persons).
                int(spend[::_PAGE_PERSONS].max(initial=0))

    async def worst_case(self, account: Account) -> int:
        if account.key not in self._worst:
            with ledger_failures(_WHAT):
                loaded = await self._load_worst(account)
            # May be called outside the lock (to look the accounts up early): a question
            # charged meanwhile has the account's value already, and it stands.
            self._worst.setdefault(account.key, loaded)
        return self._worst[account.key]

    async def admit(
        self, accounts: Sequence[Account], persons: PersonIndexes, cost: int, *, reserve: int = 0
    ) -> Admitted:
        if cost < 0 or reserve < 0:
            raise ValueError("a cost is never negative")
        async with self._lock:
            with ledger_failures(_WHAT):
                await self._charged()
                worst = {a.key: await self.worst_case(a) for a in accounts}
                if cost == 0:
                    return Admitted(np.ones(len(persons), dtype=np.bool_), worst)
                if len(persons) <= _INLINE_PERSONS:
                    counted, charge = self._decide(accounts, persons, cost, reserve)
                else:
                    counted, charge = await asyncio.to_thread(
                        self._decide, accounts, persons, cost, reserve
                    )
                # The charge is written while the question goes on (the first write to a
                # memory-mapped page after a flush faults: ~2 ms for 39,000 persons); the
                # next question and the flush wait for it, under this lock.
                self._charging = _started(asyncio.to_thread(charge))
                for account in accounts:
                    worst[account.key] += cost
                    self._worst[account.key] = worst[account.key]
                    self._spent(account)
                return Admitted(counted, worst)

    async def _charged(self) -> None:
        """Wait for the last question's charge to be written (with the lock held); its
        failure fails every later question and flush until it is written."""
        charging = self._charging
        if charging is not None:
            await asyncio.shield(charging)
            self._charging = None

    def _decide(
        self, accounts: Sequence[Account], persons: PersonIndexes, cost: int, reserve: int = 0
    ) -> tuple[NDArray[np.bool_], Callable[[], None]]:
        """Who of `persons` can afford `cost` and `reserve` in every account, and the charge
        (of `cost`) to write."""
        size = int(persons.max()) + 1 if len(persons) else 0
        arrays = [(a, self.array(a, size)) for a in accounts]
        # Indexes in NumPy's own index type, converted once (NumPy would convert a uint32
        # index array again for every look-up: half the time of a charge).
        indexes = persons.astype(np.intp)
        counted = np.ones(len(persons), dtype=np.bool_)
        for account, spend in arrays:
            if cost + reserve > account.cap:
                counted[:] = False
                break
            # Compared in the array's own type: spend <= cap - cost cannot overflow.
            counted &= spend[indexes] <= account.cap - cost - reserve
        charged = indexes[counted]

        def charge() -> None:
            for _, spend in arrays:
                # Indexes in a cohort are distinct, so a fancy-indexed add charges each once.
                spend[charged] += np.uint16(cost)
            self._charged_persons([(a.key, spend) for a, spend in arrays], charged)

        return counted, charge

    def _charged_persons(
        self, arrays: Sequence[tuple[str, NDArray[np.uint16]]], charged: NDArray[np.intp]
    ) -> None:
        """Called once a charge is written to `arrays` (on a worker thread, with the lock
        held)."""

    async def flush(self) -> None:
        async with self._lock:
            with ledger_failures(_WHAT):
                await self._charged()

    async def close(self) -> None:
        await self.flush()


def _started(work: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
    """`work` running on its own; its error is raised where it is awaited (and not reported
    as lost should the node stop first)."""
    future = asyncio.ensure_future(work)
    future.add_done_callback(lambda done: None if done.cancelled() else done.exception())
    return future


def _grown(size: int) -> int:
    return max(_GROWTH, -(-size // _GROWTH) * _GROWTH)


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS account (
    account TEXT PRIMARY KEY,
    worst_case INTEGER NOT NULL
)
"""
# Worst cases only grow: a total written again, or replayed after a newer one, changes nothing.
_SAVE_TOTALS: Final = (
    "INSERT INTO account VALUES (?, ?) ON CONFLICT (account) "
    "DO UPDATE SET worst_case = max(worst_case, excluded.worst_case)"
)
# A checkpoint once the active journal file holds this much, or once this long has passed
# since the last (checked after each flush), and on close.
CHECKPOINT_BYTES: Final = 32 << 20
CHECKPOINT_SECONDS: Final = 60.0
# Each journal file is filled with zeros to this size when created (it grows as needed).
JOURNAL_BYTES: Final = 4 << 20


class FileLedger(MemoryLedger):
    """Spend arrays memory-mapped from `<directory>/spend/<account>.u16`, worst-case totals in
    `<directory>/ledger.sqlite3`, charges since the last checkpoint in the journal
    (`<directory>/charges-{0,1}.journal`, `connectors.journal`); created when missing, the
    journal replayed when opened."""

    def __init__(
        self,
        directory: Path,
        *,
        checkpoint_bytes: int = CHECKPOINT_BYTES,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
        journal_bytes: int = JOURNAL_BYTES,
    ) -> None:
        super().__init__()
        self.directory = directory
        self._checkpoint_bytes = checkpoint_bytes
        self._checkpoint_seconds = checkpoint_seconds
        self._journal_bytes = journal_bytes
        self._maps: dict[str, mmap.mmap] = {}
        # Charges written to the arrays and not yet to the journal, in order.
        self._pending: list[journal.Charge] = []
        # Accounts whose worst case grew since the last flush took them.
        self._unsaved: set[str] = set()
        # Accounts whose array (`_dirty`) or worst case (`_unwritten`) changed since the last
        # checkpoint took them.
        self._dirty: set[str] = set()
        self._unwritten: set[str] = set()
        # One flush at a time: a flush that found nothing left to write may return only once
        # the flush that took its charges has written them.
        self._flushing = asyncio.Lock()
        self._checkpointing: asyncio.Future[None] | None = None
        self._checkpointed = time.monotonic()
        self._journal_end = 0
        self._closing = False
        self._opening = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._journal: journal.Journal | None = None

    def _db(self) -> sqlite3.Connection:
        return self._opened()[0]

    def _opened(self) -> tuple[sqlite3.Connection, journal.Journal]:
        """The worst cases' database and the journal, the journal replayed onto the arrays
        and the database on first use."""
        with self._opening:
            if self._connection is None or self._journal is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(
                    self.directory / "ledger.sqlite3",
                    check_same_thread=False,
                    isolation_level=None,
                )
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=FULL")
                connection.execute(_SCHEMA)
                charges = journal.Journal(self.directory, self._journal_bytes)
                self._replay(connection, charges)
                self._connection, self._journal = connection, charges
            return self._connection, self._journal

    def _replay(self, db: sqlite3.Connection, charges: journal.Journal) -> None:
        """Every charge and worst case the journal holds onto the arrays and the database,
        written back. The journal is left as it is: the records to come start each file
        afresh, in a generation of their own (a crash before replays it again, which only
        raises values to what they already are; a ledger opened beside a running node's to
        read it takes nothing from the node's journal)."""
        totals: dict[str, int] = {}
        keys: set[str] = set()
        for record in charges.records():
            for key, total in record.totals:
                totals[key] = max(total, totals.get(key, 0))
            for charge in record.charges:
                for key, values in zip(charge.keys, charge.values, strict=True):
                    charge.replay(self._mapped(key, charge.size), values)
                    keys.add(key)
        _write_back(db, sorted(totals.items()), [self._maps[key] for key in keys], self._spend)
        self._dirty -= keys

    @property
    def _spend(self) -> Path:
        return self.directory / "spend"

    def array(self, account: Account, size: int) -> NDArray[np.uint16]:
        self._opened()
        return self._mapped(account.key, size)

    def _mapped(self, key: str, size: int) -> NDArray[np.uint16]:
        spend = self._arrays.get(key)
        if spend is not None and len(spend) >= size:
            self._dirty.add(key)
            return spend
        path = self._spend / f"{key}.u16"
        path.parent.mkdir(parents=True, exist_ok=True)
        length = _grown(max(size, _file_persons(path)))
        old = self._maps.pop(key, None)
        self._arrays.pop(key, None)
        if old is not None:
            # Not closed: arrays viewing it may still be referenced; it closes when the last
            # one goes. Its charges are on disk first.
            old.flush()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < length * SPEND_DTYPE.itemsize:
                os.ftruncate(fd, length * SPEND_DTYPE.itemsize)  # new persons start at zero
            mapped = mmap.mmap(fd, length * SPEND_DTYPE.itemsize)
        finally:
            os.close(fd)
        self._maps[key] = mapped
        spend = self._arrays[key] = np.frombuffer(mapped, dtype=SPEND_DTYPE)
        self._dirty.add(key)
        return spend

    def _charged_persons(
        self, arrays: Sequence[tuple[str, NDArray[np.uint16]]], charged: NDArray[np.intp]
    ) -> None:
        if len(charged):
            self._pending.append(journal.Charge.of(arrays, charged))

    async def _load_worst(self, account: Account) -> int:
        def load() -> int:
            row = (
                self._db()
                .execute("SELECT worst_case FROM account WHERE account = ?", (account.key,))
                .fetchone()
            )
            return int(row[0]) if row else 0

        return await asyncio.to_thread(load)

    def _spent(self, account: Account) -> None:
        self._unsaved.add(account.key)
        self._unwritten.add(account.key)

    async def flush(self) -> None:
        await self._flush()
        if not self._closing and self._checkpoint_due():
            self._checkpointing = _started(self._checkpoint())

    async def _flush(self) -> None:
        async with self._flushing:
            async with self._lock:
                with ledger_failures(_WHAT):
                    await self._charged()
                charges, self._pending = self._pending, []
                unsaved, self._unsaved = self._unsaved, set()
                totals = [(key, self._worst[key]) for key in sorted(unsaved)]
            if not (totals or charges):
                return
            try:
                with ledger_failures(_WHAT):
                    self._journal_end = await asyncio.to_thread(self._append, totals, charges)
            except BaseException:
                # Written by the next flush, which fails too while the disk does.
                async with self._lock:
                    self._pending[:0] = charges
                    self._unsaved |= unsaved
                raise

    def _append(self, totals: Sequence[tuple[str, int]], charges: Sequence[journal.Charge]) -> int:
        """One record in the journal, synced: the file's length after it."""
        return self._opened()[1].append(journal.encode(totals, charges))

    def _checkpoint_due(self) -> bool:
        if self._checkpointing is not None and not self._checkpointing.done():
            return False
        return (
            self._journal_end >= self._checkpoint_bytes
            or time.monotonic() - self._checkpointed >= self._checkpoint_seconds
        )

    async def _checkpoint(self) -> None:
        """Write back the arrays and the worst cases, then empty the journal file that held
        their charges; flushes meanwhile append to the other."""
        async with self._flushing:
            # No flush is writing: every record of the file retired is in the arrays.
            db, charges = self._opened()
            async with self._lock:
                retired = charges.switch()
                self._journal_end = 0
                dirty, self._dirty = self._dirty, set()
                unwritten, self._unwritten = self._unwritten, set()
                totals = [(key, self._worst[key]) for key in sorted(unwritten)]
                maps = [self._maps[key] for key in dirty if key in self._maps]
            self._checkpointed = time.monotonic()
        try:
            with ledger_failures(_WHAT):
                await asyncio.to_thread(self._write_back, db, totals, maps, (retired,))
        except BaseException:
            # The retired file keeps its records; the next checkpoint writes them back.
            async with self._lock:
                self._dirty |= dirty
                self._unwritten |= unwritten
            raise

    def _write_back(
        self,
        db: sqlite3.Connection,
        totals: Sequence[tuple[str, int]],
        maps: Sequence[mmap.mmap],
        retired: Sequence[int],
    ) -> None:
        _write_back(db, totals, maps, self._spend)
        self._opened()[1].empty(*retired)

    async def close(self) -> None:
        self._closing = True
        if self._checkpointing is not None:
            # Its failure is the final checkpoint's to raise, should the disk still fail.
            with contextlib.suppress(LedgerUnavailable):
                await self._checkpointing
        await self._flush()
        async with self._flushing, self._lock:
            if self._journal is not None and self._connection is not None:
                # Every record of both files is in the arrays: write them all back.
                totals = [(key, self._worst[key]) for key in sorted(self._unwritten)]
                maps = list(self._maps.values())
                with ledger_failures(_WHAT):
                    await asyncio.to_thread(
                        self._write_back, self._connection, totals, maps, (0, 1)
                    )
                self._journal.close()
                self._journal = None
                self._connection.close()
                self._connection = None
            self._arrays.clear()
            for mapped in self._maps.values():
                with contextlib.suppress(BufferError):  # a view is still referenced
                    mapped.close()
            self._maps.clear()


def _write_back(
    db: sqlite3.Connection,
    totals: Sequence[tuple[str, int]],
    maps: Sequence[mmap.mmap],
    spend: Path,
) -> None:
    """Worst cases and arrays synced where they live (the worst cases first: should the node
    stop in between, they overstate the spend on disk, never understate it)."""
    if totals:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_SAVE_TOTALS, totals)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    for mapped in maps:
        mapped.flush()
    if maps:
        # The arrays' files may be new: their names must outlive the journal's records.
        sync_directory(spend)


def _file_persons(path: Path) -> int:
    try:
        return path.stat().st_size // SPEND_DTYPE.itemsize
    except FileNotFoundError:
        return 0
