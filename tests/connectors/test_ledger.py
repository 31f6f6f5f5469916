"""The file ledger: charges and worst cases on disk once flushed, a flush that returns only when
every charge before it is written (even one another flush took), and charges a failed flush
could not write kept for the next."""

from __future__ import annotations

import asyncio
import mmap
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from connectors.errors import LedgerUnavailable
from connectors.ledger import Account, FileLedger

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
