"""The ledger's journal: records read back as written, what an emptied file held before never
read again, a record whose sync failed written over by the next, a torn record and what follows
it never read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from connectors import journal
from connectors.journal import Charge, Journal, Record

SPARSE = Charge(
    ("r1", "o1"),
    np.array([3, 70_000], dtype=np.uint32),
    (np.array([10, 60], dtype=np.uint16), np.array([10, 20], dtype=np.uint16)),
)
DENSE = Charge(("r1",), None, (np.array([0, 5, 5], dtype=np.uint16),))


def written(*charges: Charge, totals: tuple[tuple[str, int], ...] = ()) -> list[bytes]:
    return journal.encode(totals, charges)


def failing_sync(fd: int) -> None:
    raise OSError("I/O error")


def read(records: list[Record]) -> list[tuple[object, ...]]:
    return [
        (
            record.totals,
            [
                (
                    c.keys,
                    None if c.persons is None else c.persons.tolist(),
                    [v.tolist() for v in c.values],
                )
                for c in record.charges
            ],
        )
        for record in records
    ]


def test_records_read_back_as_written(tmp_path: Path) -> None:
    files = Journal(tmp_path, 4096)
    files.append(written(SPARSE, DENSE, totals=(("r1", 70), ("o1", 30))))
    files.append(written(totals=(("r1", 80),)))
    files.close()
    assert read(Journal(tmp_path, 4096).records()) == [
        (
            (("r1", 70), ("o1", 30)),
            [
                (("r1", "o1"), [3, 70_000], [[10, 60], [10, 20]]),
                (("r1",), None, [[0, 5, 5]]),
            ],
        ),
        ((("r1", 80),), []),
    ]


def test_a_charge_is_recorded_as_the_smaller_of_persons_and_values(tmp_path: Path) -> None:
    spend = np.arange(100, dtype=np.uint16)
    few = Charge.of([("r1", spend)], np.array([2, 90], dtype=np.intp))
    assert few.persons is not None
    assert few.values[0].tolist() == [2, 90]
    most = Charge.of([("r1", spend)], np.arange(0, 90, dtype=np.intp))
    assert most.persons is None
    assert most.values[0].tolist() == list(range(90))
    target = np.zeros(100, dtype=np.uint16)
    target[5] = 200
    for charge in (few, most):
        charge.replay(target, charge.values[0])
    # Raised to the recorded values, never lowered.
    assert target[:6].tolist() == [0, 1, 2, 3, 4, 200]
    assert target[90] == 90


def test_an_emptied_file_forgets_its_records_even_those_a_shorter_record_leaves_behind(
    tmp_path: Path,
) -> None:
    files = Journal(tmp_path, 4096)
    files.append(written(SPARSE))
    files.append(written(DENSE))
    files.empty(0)
    assert files.records() == []
    files.append(written(DENSE))  # shorter than the first: the second is still on disk after it
    files.close()
    assert read(Journal(tmp_path, 4096).records()) == [((), [(("r1",), None, [[0, 5, 5]])])]


@pytest.mark.parametrize(
    ("failed", "read_back"),
    [
        # The record whose sync failed is written over by the next.
        ("append", [(), (("r1", 5),)]),
        # The first header zeroed but not synced: the next record goes first all the same.
        ("empty", [(("r1", 5),)]),
    ],
)
def test_a_failed_sync_leaves_the_next_record_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failed: str, read_back: list[object]
) -> None:
    files = Journal(tmp_path, 4096)
    files.append(written(DENSE))
    monkeypatch.setattr(journal, "_datasync", failing_sync)
    failing = (
        (lambda: files.append(written(SPARSE, SPARSE)))
        if failed == "append"
        else (lambda: files.empty(0))
    )
    with pytest.raises(OSError, match="I/O error"):
        failing()
    monkeypatch.undo()
    files.append(written(totals=(("r1", 5),)))
    files.close()
    assert [r.totals for r in Journal(tmp_path, 4096).records()] == read_back


@pytest.mark.parametrize("damage", ["payload", "length"])
def test_a_torn_record_and_what_follows_it_are_never_read(tmp_path: Path, damage: str) -> None:
    files = Journal(tmp_path, 4096)
    start = files.append(written(totals=(("r1", 1),)))
    end = files.append(written(totals=(("r1", 2),)))
    files.append(written(totals=(("r1", 3),)))
    files.close()
    path = tmp_path / "charges-0.journal"
    data = bytearray(path.read_bytes())
    if damage == "payload":
        data[end - 1] ^= 0xFF
    else:  # a header torn in its write: its length (after the magic and generation) garbled
        data[start + 12 : start + 16] = b"\xff" * 4
    path.write_bytes(bytes(data))
    assert [r.totals for r in Journal(tmp_path, 4096).records()] == [(("r1", 1),)]
