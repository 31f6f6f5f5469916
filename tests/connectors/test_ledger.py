"""The file ledger: charges and worst cases on disk once flushed, a flush that returns only when
every charge before it is written (even one another flush took, or one still being written
after its question was admitted), and charges a failed flush could not write kept for the
next."""

from __future__ import annotations

import asyncio
import mmap
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from connectors.errors import LedgerUnavailable
from connectors.ledger import Account, FileLedger, PersonIndexes

RESEARCHER = Account("researcher", "r@example.org", cap=100)
ORGANISATION = Account("organisation", "Example Institute", cap=100)
ACCOUNTS = (RESEARCHER, ORGANISATION)


def persons(*indexes: int) -> np.ndarray[tuple[int], np.dtype[np.uint32]]:
    return np.array(indexes, dtype=np.uint32)


def worst_cases_on_disk(directory: Path) -> dict[str, int]:
    with sqlite3.connect(directory / "ledger.sqlite3") as db:
        return dict(db.execute("SELECT account, worst_case FROM account").fetchall())


async def test_flushed_charges_and_worst_cases_outlive_the_ledger(tmp_path: Path) -> None:
    ledger = FileLedger(tmp_path)
    first = await ledger.admit(ACCOUNTS, persons(3, 70_000), 60)
    assert first.counted.tolist() == [True, True]
    await ledger.flush()
    assert worst_cases_on_disk(tmp_path) == {RESEARCHER.key: 60, ORGANISATION.key: 60}
    await ledger.close()

    again = FileLedger(tmp_path)
    assert await again.worst_case(RESEARCHER) == 60
    # 60 + 60 passes the cap of 100 for the persons charged before; index 5 is new.
    second = await again.admit(ACCOUNTS, persons(5, 70_000, 3), 60)
    assert second.counted.tolist() == [True, False, False]
    assert second.worst_case == {RESEARCHER.key: 120, ORGANISATION.key: 120}
    await again.close()


class GatedLedger(FileLedger):
    """A file ledger whose writes wait for `gate` (or fail while `failing`)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.gate = threading.Event()
        self.gate.set()
        self.failing = False
        self.writes: list[list[str]] = []

    def _write(self, totals: Sequence[tuple[str, int]], maps: Sequence[mmap.mmap]) -> None:
        self.gate.wait(timeout=10)
        if self.failing:
            raise OSError("disk full")
        self.writes.append(sorted(key for key, _ in totals))
        super()._write(totals, maps)


async def test_a_flush_returns_only_when_the_flush_that_took_its_charges_has_written_them(
    tmp_path: Path,
) -> None:
    ledger = GatedLedger(tmp_path)
    await ledger.admit(ACCOUNTS, persons(1, 2), 10)
    ledger.gate.clear()
    first = asyncio.ensure_future(ledger.flush())
    await asyncio.sleep(0.05)  # the first flush has taken the charges and is writing them
    second = asyncio.ensure_future(ledger.flush())
    await asyncio.sleep(0.05)
    assert not first.done()
    assert not second.done()
    ledger.gate.set()
    await asyncio.gather(first, second)
    assert ledger.writes == [sorted(a.key for a in ACCOUNTS)]  # nothing left for the second
    assert worst_cases_on_disk(tmp_path) == {a.key: 10 for a in ACCOUNTS}
    await ledger.close()


async def test_charges_a_failed_flush_could_not_write_are_written_by_the_next(
    tmp_path: Path,
) -> None:
    ledger = GatedLedger(tmp_path)
    await ledger.admit(ACCOUNTS, persons(1, 2), 10)
    ledger.failing = True
    with pytest.raises(LedgerUnavailable):
        await ledger.flush()
    ledger.failing = False
    await ledger.flush()
    assert worst_cases_on_disk(tmp_path) == {a.key: 10 for a in ACCOUNTS}
    await ledger.close()


class SlowChargeLedger(FileLedger):
    """A file ledger whose charges are written only once `gate` opens."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.gate = threading.Event()

    def _decide(
        self, accounts: Sequence[Account], persons: PersonIndexes, cost: int
    ) -> tuple[NDArray[np.bool_], Callable[[], None]]:
        counted, charge = super()._decide(accounts, persons, cost)

        def gated() -> None:
            self.gate.wait(timeout=10)
            charge()

        return counted, gated


def spend_on_disk(directory: Path, account: Account, index: int) -> int:
    return int(np.fromfile(directory / "spend" / f"{account.key}.u16", dtype=np.uint16)[index])


async def test_a_charge_written_after_admitting_is_waited_for_by_the_next_question_and_the_flush(
    tmp_path: Path,
) -> None:
    ledger = SlowChargeLedger(tmp_path)
    first = await ledger.admit(ACCOUNTS, persons(1, 2), 60)  # returns before its charge
    assert first.counted.tolist() == [True, True]
    second = asyncio.ensure_future(ledger.admit(ACCOUNTS, persons(2, 3), 60))
    flushed = asyncio.ensure_future(ledger.flush())
    await asyncio.sleep(0.05)
    assert not second.done()
    assert not flushed.done()
    ledger.gate.set()
    # Person 2 was charged 60 by the first question: 60 more passes the cap of 100.
    assert (await second).counted.tolist() == [False, True]
    await flushed
    assert spend_on_disk(tmp_path, RESEARCHER, 1) == 60
    await ledger.close()
    assert [spend_on_disk(tmp_path, ORGANISATION, i) for i in (1, 2, 3)] == [60, 60, 60]


async def test_a_new_applicants_files_are_made_ready_as_wide_as_the_others(tmp_path: Path) -> None:
    ledger = FileLedger(tmp_path)
    await ledger.admit((RESEARCHER,), persons(3, 200_000), 10)
    newcomer = Account("researcher", "new@example.org", cap=100)
    await ledger.prepare((newcomer,))
    files = {path.name: path.stat().st_size for path in (tmp_path / "spend").iterdir()}
    assert files == {f"{a.key}.u16": 2 * 262_144 for a in (RESEARCHER, newcomer)}
    assert (await ledger.admit((newcomer,), persons(200_000), 10)).counted.tolist() == [True]
    await ledger.close()
    assert spend_on_disk(tmp_path, newcomer, 200_000) == 10
