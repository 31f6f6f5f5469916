"""The file ledger: charges and worst cases on disk once flushed (in the journal, written back
to the arrays and the database at a checkpoint), a flush that returns only when every charge
before it is written (even one another flush took, or one still being written after its
question was admitted), charges a failed flush could not write kept for the next, and the
journal replayed after a crash: every charge it holds counted once, a torn last record
ignored."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from connectors import journal
from connectors.errors import LedgerUnavailable
from connectors.journal import Charge, Journal
from connectors.ledger import Account, FileLedger, PersonIndexes

RESEARCHER = Account("researcher", "r@example.org", cap=100)
ORGANISATION = Account("organisation", "Example Institute", cap=100)
ACCOUNTS = (RESEARCHER, ORGANISATION)


def persons(*indexes: int) -> np.ndarray[tuple[int], np.dtype[np.uint32]]:
    return np.array(indexes, dtype=np.uint32)


def worst_cases_on_disk(directory: Path) -> dict[str, int]:
    with sqlite3.connect(directory / "ledger.sqlite3") as db:
        return dict(db.execute("SELECT account, worst_case FROM account").fetchall())


def journal_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("charges-*.journal"))


def crashed(directory: Path, into: Path, *, arrays: bool = False) -> Path:
    """The node's state as a power failure could leave it before a checkpoint: the journal as
    synced, the worst cases' database as last written back, and the spend arrays as last
    written back (`arrays`) or never written at all."""
    into.mkdir()
    for path in journal_files(directory):
        shutil.copy(path, into / path.name)
    if (directory / "ledger.sqlite3").exists():
        with (
            sqlite3.connect(directory / "ledger.sqlite3") as source,
            sqlite3.connect(into / "ledger.sqlite3") as copy,
        ):
            source.backup(copy)
    if arrays:
        shutil.copytree(directory / "spend", into / "spend")
    return into


async def recovered_worst_cases(directory: Path, into: Path) -> dict[str, int]:
    """The worst cases a ledger opened on `directory`'s journal alone (nothing written back)
    reads."""
    ledger = FileLedger(crashed(directory, into))
    found = {a.key: await ledger.worst_case(a) for a in ACCOUNTS}
    await ledger.close()
    return found


async def test_flushed_charges_and_worst_cases_outlive_the_ledger(tmp_path: Path) -> None:
    ledger = FileLedger(tmp_path)
    first = await ledger.admit(ACCOUNTS, persons(3, 70_000), 60)
    assert first.counted.tolist() == [True, True]
    await ledger.flush()
    await ledger.close()
    assert worst_cases_on_disk(tmp_path) == {RESEARCHER.key: 60, ORGANISATION.key: 60}

    again = FileLedger(tmp_path)
    assert await again.worst_case(RESEARCHER) == 60
    # 60 + 60 passes the cap of 100 for the persons charged before; index 5 is new.
    second = await again.admit(ACCOUNTS, persons(5, 70_000, 3), 60)
    assert second.counted.tolist() == [True, False, False]
    assert second.worst_case == {RESEARCHER.key: 120, ORGANISATION.key: 120}
    await again.close()


async def test_a_reserve_is_checked_and_not_charged(tmp_path: Path) -> None:
    # A regression's iteration counts only persons who can also afford what the rest of the
    # fit may cost (its reserve), and charges only the iteration.
    ledger = FileLedger(tmp_path)
    await ledger.admit(ACCOUNTS, persons(1), 50)
    admitted = await ledger.admit(ACCOUNTS, persons(1, 2), 20, reserve=40)
    # Person 1 (50 spent) cannot afford 20 + 40 within 100; person 2 can.
    assert admitted.counted.tolist() == [False, True]
    # Person 2 was charged 20, not 60: 20 + 20 + 60 is still within the cap.
    again = await ledger.admit(ACCOUNTS, persons(2), 20, reserve=60)
    assert again.counted.tolist() == [True]
    # Nobody could afford a reserve beyond the cap.
    assert (await ledger.admit(ACCOUNTS, persons(3), 1, reserve=100)).counted.tolist() == [False]
    await ledger.close()


class GatedLedger(FileLedger):
    """A file ledger whose writes wait for `gate` (or fail while `failing`)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.gate = threading.Event()
        self.gate.set()
        self.failing = False
        self.writes: list[list[str]] = []

    def _append(self, totals: Sequence[tuple[str, int]], charges: Sequence[Charge]) -> int:
        self.gate.wait(timeout=10)
        if self.failing:
            raise OSError("disk full")
        self.writes.append(sorted(key for key, _ in totals))
        return super()._append(totals, charges)


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
    assert await recovered_worst_cases(tmp_path, tmp_path / "crashed") == {
        a.key: 10 for a in ACCOUNTS
    }
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
    assert await recovered_worst_cases(tmp_path, tmp_path / "crashed") == {
        a.key: 10 for a in ACCOUNTS
    }
    await ledger.close()


class SlowChargeLedger(FileLedger):
    """A file ledger whose charges are written only once `gate` opens."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.gate = threading.Event()

    def _decide(
        self, accounts: Sequence[Account], persons: PersonIndexes, cost: int, reserve: int = 0
    ) -> tuple[NDArray[np.bool_], Callable[[], None]]:
        counted, charge = super()._decide(accounts, persons, cost, reserve)

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


async def spend_of(directory: Path, account: Account, *indexes: int) -> list[int]:
    ledger = FileLedger(directory)
    await ledger.worst_case(account)
    spend = ledger.array(account, max(indexes) + 1)
    found = [int(spend[i]) for i in indexes]
    del spend
    await ledger.close()
    return found


@pytest.mark.parametrize("cohort", [persons(3, 70_000), np.arange(1, 90_000, dtype=np.uint32)])
async def test_charges_in_the_journal_outlive_a_crash_before_the_checkpoint(
    tmp_path: Path, cohort: PersonIndexes
) -> None:
    # A few persons are journalled one by one, most of the array's persons as its values.
    ledger = FileLedger(tmp_path / "node")
    await ledger.admit(ACCOUNTS, cohort, 60)
    await ledger.flush()
    state = crashed(tmp_path / "node", tmp_path / "crashed")
    assert not (state / "spend").exists()  # nothing written back: the journal alone
    await ledger.close()

    again = FileLedger(state)
    assert await again.worst_case(RESEARCHER) == 60
    assert await again.worst_case(ORGANISATION) == 60
    # Counted once: 60 more passes the cap of 100, 40 more does not.
    assert (await again.admit(ACCOUNTS, persons(3, 0), 60)).counted.tolist() == [False, True]
    assert (await again.admit(ACCOUNTS, persons(3), 40)).counted.tolist() == [True]
    await again.close()
    assert worst_cases_on_disk(state) == {a.key: 160 for a in ACCOUNTS}
    assert spend_on_disk(state, ORGANISATION, 3) == 100


async def test_a_crash_after_the_write_back_before_the_journal_is_emptied_charges_once(
    tmp_path: Path,
) -> None:
    ledger = FileLedger(tmp_path)
    await ledger.admit(ACCOUNTS, persons(3, 70_000), 60)
    await ledger.flush()
    kept = {path.name: path.read_bytes() for path in journal_files(tmp_path)}
    await ledger.close()  # writes the arrays and worst cases back, then empties the journal
    assert worst_cases_on_disk(tmp_path) == {a.key: 60 for a in ACCOUNTS}
    for name, data in kept.items():  # as if the node had stopped before emptying it
        (tmp_path / name).write_bytes(data)

    assert await spend_of(tmp_path, RESEARCHER, 3, 70_000) == [60, 60]
    assert worst_cases_on_disk(tmp_path) == {a.key: 60 for a in ACCOUNTS}
    again = FileLedger(tmp_path)
    assert await again.worst_case(RESEARCHER) == 60
    assert (await again.admit(ACCOUNTS, persons(3), 40)).counted.tolist() == [True]
    await again.close()


async def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    ledger = FileLedger(tmp_path / "node")
    await ledger.admit(ACCOUNTS, persons(3), 10)
    await ledger.flush()
    await ledger.admit(ACCOUNTS, persons(4), 20)
    await ledger.flush()
    state = crashed(tmp_path / "node", tmp_path / "crashed")
    await ledger.close()
    (active,) = [path for path in journal_files(state) if path.read_bytes()[:4] == b"TLJ1"]
    data = bytearray(active.read_bytes())
    # The second record's last bytes never reached the disk.
    end = len(data.rstrip(b"\0"))
    data[end - 4 : end] = bytes(4)
    active.write_bytes(bytes(data))

    assert await spend_of(state, RESEARCHER, 3, 4) == [10, 0]
    assert worst_cases_on_disk(state) == {a.key: 10 for a in ACCOUNTS}


async def test_close_checkpoints_and_empties_the_journal(tmp_path: Path) -> None:
    ledger = FileLedger(tmp_path)
    await ledger.admit(ACCOUNTS, persons(3, 70_000), 60)
    await ledger.flush()
    await ledger.close()
    assert worst_cases_on_disk(tmp_path) == {a.key: 60 for a in ACCOUNTS}
    assert spend_on_disk(tmp_path, RESEARCHER, 70_000) == 60
    assert Journal(tmp_path, 0).records() == []


async def test_a_journal_past_its_bound_is_checkpointed_while_questions_go_on(
    tmp_path: Path,
) -> None:
    ledger = FileLedger(tmp_path, checkpoint_bytes=1)
    await ledger.admit(ACCOUNTS, persons(3), 10)
    await ledger.flush()
    for _ in range(200):
        if worst_cases_on_disk(tmp_path):
            break
        await asyncio.sleep(0.01)
    assert worst_cases_on_disk(tmp_path) == {a.key: 10 for a in ACCOUNTS}
    # Flushes after it go to the other file; both outlive a crash.
    await ledger.admit(ACCOUNTS, persons(4), 20)
    await ledger.flush()
    state = crashed(tmp_path, tmp_path / "crashed", arrays=True)
    await ledger.close()
    assert await spend_of(state, RESEARCHER, 3, 4) == [10, 20]


async def test_a_flush_syncs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = FileLedger(tmp_path)
    await ledger.admit(ACCOUNTS, persons(3), 10)
    await ledger.admit(ACCOUNTS, persons(4, 5), 10)
    syncs: list[int] = []
    monkeypatch.setattr(journal, "_datasync", syncs.append)
    await ledger.flush()
    assert len(syncs) == 1
    monkeypatch.undo()
    await ledger.close()


async def test_charges_after_a_replay_outlive_another_crash(tmp_path: Path) -> None:
    ledger = FileLedger(tmp_path / "node")
    await ledger.admit(ACCOUNTS, persons(3), 10)
    await ledger.flush()
    state = crashed(tmp_path / "node", tmp_path / "crashed")
    await ledger.close()

    again = FileLedger(state)  # replays the charge and writes it back
    await again.admit(ACCOUNTS, persons(3, 4), 20)  # its record goes over the replayed one
    await again.flush()
    twice = crashed(state, tmp_path / "crashed twice", arrays=True)
    await again.close()
    assert await spend_of(twice, RESEARCHER, 3, 4) == [30, 20]
    assert worst_cases_on_disk(twice) == {a.key: 30 for a in ACCOUNTS}
