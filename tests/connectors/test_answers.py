"""The SQLite answer store: tables kept as drawn, found again, and the first stored winning when
the same question is stored twice (by racing questions, in one process or two)."""

from __future__ import annotations

import shutil
from pathlib import Path

from connectors.answers import Shelf, SqliteAnswers, StoredTable

SHELF = Shelf(owner="o1234", release="2026-01", sd=5.0)
BY_SEX = StoredTable({("FEMALE",): 112, ("MALE",): 9, ("UNKNOWN",): -2})
TOTAL = StoredTable({(): 121})


async def test_stored_tables_are_found_again_after_a_restart(tmp_path: Path) -> None:
    answers = SqliteAnswers(tmp_path / "answers.sqlite3")
    assert await answers.get(SHELF, ["q-sex", "q-total"]) == {}
    assert await answers.put(SHELF, {"q-sex": BY_SEX, "q-total": TOTAL}) == {
        "q-sex": BY_SEX,
        "q-total": TOTAL,
    }
    await answers.close()
    again = SqliteAnswers(tmp_path / "answers.sqlite3")
    found = await again.get(SHELF, ["q-sex", "q-total", "q-other"])
    assert found == {"q-sex": BY_SEX, "q-total": TOTAL}
    assert list(found["q-sex"].cells) == list(BY_SEX.cells)  # in the order stored
    # Another shelf (another organisation, release or sd) holds nothing of it.
    assert await again.get(Shelf("o1234", "2026-02", 5.0), ["q-sex"]) == {}
    await again.close()


async def test_the_first_table_stored_is_the_answer_for_every_later_one(tmp_path: Path) -> None:
    # Two stores on one file: two replicas of a node, or two questions racing in one.
    first = SqliteAnswers(tmp_path / "answers.sqlite3")
    second = SqliteAnswers(tmp_path / "answers.sqlite3")
    assert await first.put(SHELF, {"q-sex": BY_SEX}) == {"q-sex": BY_SEX}
    redrawn = StoredTable({("FEMALE",): 118, ("MALE",): 4, ("UNKNOWN",): 3})
    assert await second.put(SHELF, {"q-sex": redrawn, "q-total": TOTAL}) == {
        "q-sex": BY_SEX,
        "q-total": TOTAL,
    }
    assert await first.get(SHELF, ["q-sex"]) == {"q-sex": BY_SEX}
    await first.close()
    await second.close()


async def test_the_log_is_copied_into_the_database_file_after_enough_answers(
    tmp_path: Path,
) -> None:
    answers = SqliteAnswers(tmp_path / "answers.sqlite3", checkpoint_bytes=1)
    await answers.put(SHELF, {"q-sex": BY_SEX}, synced=False)
    assert await answers.get(SHELF, ["q-sex"]) == {"q-sex": BY_SEX}
    await answers.checkpointed()  # started by the answer, on a connection of its own
    # The database file alone, without its write-ahead log, holds the answer.
    alone = tmp_path / "copy.sqlite3"
    shutil.copyfile(tmp_path / "answers.sqlite3", alone)
    copy = SqliteAnswers(alone)
    assert await copy.get(SHELF, ["q-sex"]) == {"q-sex": BY_SEX}
    await copy.close()
    await answers.close()


def test_a_table_is_stored_as_key_and_value_pairs_in_its_order() -> None:
    # The format of answers already on disk: [[[dimension values...], noisy count], ...].
    assert BY_SEX.encode() == b'[[["FEMALE"],112],[["MALE"],9],[["UNKNOWN"],-2]]'
    assert TOTAL.encode() == b"[[[],121]]"
    assert StoredTable.decode(BY_SEX.encode()) == BY_SEX
