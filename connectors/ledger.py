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
directory: a charge is a few NumPy operations on the cohort's indexes, and `flush` writes the
worst cases that grew (one SQLite transaction) and the touched arrays to disk before the
answer leaves. A flush can start as soon as the question is charged, while the database
computes its tables. `MemoryLedger` is the fake for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import mmap
import os
import sqlite3
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from connectors.errors import ledger_failures
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
        self, accounts: Sequence[Account], persons: PersonIndexes, cost: int
    ) -> Admitted:
        """Charge `cost` units to every person of `persons` who can afford it in every
        account; the others are not counted. `cost` 0 charges nothing and counts everyone."""
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
        self, accounts: Sequence[Account], persons: PersonIndexes, cost: int
    ) -> Admitted:
        if cost < 0:
            raise ValueError("a cost is never negative")
        async with self._lock:
            with ledger_failures(_WHAT):
                await self._charged()
                worst = {a.key: await self.worst_case(a) for a in accounts}
                if cost == 0:
                    return Admitted(np.ones(len(persons), dtype=np.bool_), worst)
                if len(persons) <= _INLINE_PERSONS:
                    counted, charge = self._decide(accounts, persons, cost)
                else:
                    counted, charge = await asyncio.to_thread(self._decide, accounts, persons, cost)
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
        self, accounts: Sequence[Account], persons: PersonIndexes, cost: int
    ) -> tuple[NDArray[np.bool_], Callable[[], None]]:
        """Who of `persons` can afford `cost` in every account, and the charge to write."""
        size = int(persons.max()) + 1 if len(persons) else 0
        arrays = [(a, self.array(a, size)) for a in accounts]
        # Indexes in NumPy's own index type, converted once (NumPy would convert a uint32
        # index array again for every look-up: half the time of a charge).
        indexes = persons.astype(np.intp)
        counted = np.ones(len(persons), dtype=np.bool_)
        for account, spend in arrays:
            if cost > account.cap:
                counted[:] = False
                break
            # Compared in the array's own type: spend <= cap - cost cannot overflow.
            counted &= spend[indexes] <= account.cap - cost
        charged = indexes[counted]

        def charge() -> None:
            for _, spend in arrays:
                # Indexes in a cohort are distinct, so a fancy-indexed add charges each once.
                spend[charged] += np.uint16(cost)

        return counted, charge

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


class FileLedger(MemoryLedger):
    """Spend arrays memory-mapped from `<directory>/spend/<account>.u16`, worst-case totals in
    `<directory>/ledger.sqlite3`; both created when missing."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self._maps: dict[str, mmap.mmap] = {}
        self._dirty: set[str] = set()
        # Accounts whose worst case grew since the last flush took them.
        self._unsaved: set[str] = set()
        # One flush at a time: a flush that found nothing left to write may return only once
        # the flush that took its charges has written them.
        self._flushing = asyncio.Lock()
        self._connection: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.directory / "ledger.sqlite3", check_same_thread=False, isolation_level=None
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(_SCHEMA)
            self._connection = connection
        return self._connection

    def array(self, account: Account, size: int) -> NDArray[np.uint16]:
        spend = self._arrays.get(account.key)
        if spend is not None and len(spend) >= size:
            self._dirty.add(account.key)
            return spend
        path = self.directory / "spend" / f"{account.key}.u16"
        path.parent.mkdir(parents=True, exist_ok=True)
        length = _grown(max(size, _file_persons(path)))
        old = self._maps.pop(account.key, None)
        self._arrays.pop(account.key, None)
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
        self._maps[account.key] = mapped
        spend = self._arrays[account.key] = np.frombuffer(mapped, dtype=SPEND_DTYPE)
        self._dirty.add(account.key)
        return spend

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

    async def flush(self) -> None:
        async with self._flushing:
            async with self._lock:
                with ledger_failures(_WHAT):
                    await self._charged()
                dirty, self._dirty = self._dirty, set()
                unsaved, self._unsaved = self._unsaved, set()
                totals = [(key, self._worst[key]) for key in unsaved]
                maps = [self._maps[key] for key in dirty if key in self._maps]
            if not (totals or maps):
                return
            try:
                with ledger_failures(_WHAT):
                    await asyncio.to_thread(self._write, totals, maps)
            except BaseException:
                # Written by the next flush, which fails too while the disk does.
                async with self._lock:
                    self._dirty |= dirty
                    self._unsaved |= unsaved
                raise

    def _write(self, totals: Sequence[tuple[str, int]], maps: Sequence[mmap.mmap]) -> None:
        # The worst cases first: should the node stop in between, they overstate the spend
        # on disk, never understate it.
        if totals:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO account VALUES (?, ?) "
                    "ON CONFLICT (account) DO UPDATE SET worst_case = excluded.worst_case",
                    totals,
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        for mapped in maps:
            mapped.flush()

    async def close(self) -> None:
        await self.flush()
        async with self._lock:
            self._arrays.clear()
            for mapped in self._maps.values():
                with contextlib.suppress(BufferError):  # a view is still referenced
                    mapped.close()
            self._maps.clear()
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def _file_persons(path: Path) -> int:
    try:
        return path.stat().st_size // SPEND_DTYPE.itemsize
    except FileNotFoundError:
        return 0
