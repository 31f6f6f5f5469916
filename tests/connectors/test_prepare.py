"""Node preparation on a hub's own OMOP database: Tessera tables, opt-outs, record keys."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from connectors.omop import (
    CDM_DDL,
    DATA_RELEASE_TABLE,
    OPTOUT_REGISTER_TABLE,
    OPTOUT_TABLE,
    PERSON_INDEX_TABLE,
    RECORD_KEY_TABLE,
)
from connectors.prepare import (
    EMPTY_REGISTER_VERSION,
    RECORD_KEY_BOUND,
    prepare_database,
    read_optout_csv,
)


def _cdm(path: Path, person_ids: list[int]) -> Path:
    """A database with only the CDM tables and a few hand-written persons."""
    con = duckdb.connect(str(path))
    for ddl in CDM_DDL:
        con.execute(ddl)
    con.executemany(
        "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, "
        "ethnicity_concept_id) VALUES (?, 8532, 1970, 0, 0)",
        [(pid,) for pid in person_ids],
    )
    con.close()
    return path


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _state(database: Path) -> Path:
    return database.parent / "state"


def _keys(path: Path) -> dict[int, int]:
    rows = _rows(path, "SELECT person_id, record_key FROM tessera_record_key")
    return {int(str(p)): int(str(k)) for p, k in rows}


@pytest.fixture
def cdm(tmp_path: Path) -> Path:
    return _cdm(tmp_path / "hub.duckdb", [3, 17, 101, 5000, 123456789012])


def test_first_run_adds_tables_keys_and_an_empty_register(cdm: Path) -> None:
    report = prepare_database(cdm, state=_state(cdm))

    assert report.persons == 5
    assert report.keys_added == 5
    assert report.optout_count == 0
    assert report.register_version == EMPTY_REGISTER_VERSION
    keys = _keys(cdm)
    assert sorted(keys) == [3, 17, 101, 5000, 123456789012]
    assert all(0 <= key < RECORD_KEY_BOUND for key in keys.values())
    assert _rows(cdm, "SELECT version FROM tessera_optout_register") == [("empty",)]


def test_cdm_tables_are_left_untouched(cdm: Path) -> None:
    before = _rows(cdm, "SELECT table_name, column_name FROM information_schema.columns")
    prepare_database(cdm, state=_state(cdm))
    after = _rows(cdm, "SELECT table_name, column_name FROM information_schema.columns")

    added = set(after) - set(before)
    assert {table for table, _ in added} == {
        OPTOUT_TABLE,
        OPTOUT_REGISTER_TABLE,
        RECORD_KEY_TABLE,
        PERSON_INDEX_TABLE,
        DATA_RELEASE_TABLE,
    }
    assert set(before) <= set(after)
    assert _rows(cdm, "SELECT count(*) FROM person") == [(5,)]


def test_rerun_is_idempotent_and_keeps_keys(cdm: Path) -> None:
    prepare_database(cdm, state=_state(cdm), optout_ids=[17], register_version="2026-01")
    keys = _keys(cdm)

    again = prepare_database(cdm, state=_state(cdm))

    assert again.keys_added == 0
    assert again.optout_count == 1
    assert again.register_version == "2026-01"
    assert _keys(cdm) == keys
    assert _rows(cdm, "SELECT count(*) FROM tessera_optout_register") == [(1,)]


def test_new_persons_get_keys_and_old_keys_never_change(cdm: Path) -> None:
    prepare_database(cdm, state=_state(cdm))
    keys = _keys(cdm)
    con = duckdb.connect(str(cdm))
    con.execute(
        "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, "
        "ethnicity_concept_id) VALUES (7, 8507, 1990, 0, 0)"
    )
    con.close()

    report = prepare_database(cdm, state=_state(cdm))

    assert report.keys_added == 1
    after = _keys(cdm)
    assert set(after) == set(keys) | {7}
    assert {pid: after[pid] for pid in keys} == keys


def test_keys_are_secret_not_derived_from_the_data(tmp_path: Path) -> None:
    ids = list(range(1, 201))
    first = _cdm(tmp_path / "a.duckdb", ids)
    second = _cdm(tmp_path / "b.duckdb", ids)
    prepare_database(first, state=_state(first))
    prepare_database(second, state=_state(second))

    # Same persons, same data: independent draws must still differ (chance of equality ~0).
    assert _keys(first) != _keys(second)
    assert len(set(_keys(first).values())) > 190


def test_optout_register_is_replaced_not_merged(cdm: Path) -> None:
    first = prepare_database(cdm, state=_state(cdm), optout_ids=[3, 17, 17], register_version="v1")
    assert first.optout_count == 2
    assert first.register_version == "v1"

    second = prepare_database(cdm, state=_state(cdm), optout_ids=iter([101]), register_version="v2")

    assert second.optout_count == 1
    assert _rows(cdm, "SELECT person_id FROM tessera_optout") == [(101,)]
    assert _rows(cdm, "SELECT version FROM tessera_optout_register") == [("v2",)]


def test_an_empty_optout_list_empties_the_register(cdm: Path) -> None:
    prepare_database(cdm, state=_state(cdm), optout_ids=[3], register_version="v1")
    report = prepare_database(cdm, state=_state(cdm), optout_ids=[], register_version="v2")

    assert report.optout_count == 0
    assert report.register_version == "v2"


def test_default_register_version_is_a_utc_timestamp(cdm: Path) -> None:
    report = prepare_database(cdm, state=_state(cdm), optout_ids=[3])

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", report.register_version)


def test_hand_loaded_optouts_are_not_reported_as_empty(cdm: Path) -> None:
    prepare_database(cdm, state=_state(cdm))
    con = duckdb.connect(str(cdm))
    con.execute("DELETE FROM tessera_optout_register")
    con.execute("INSERT INTO tessera_optout VALUES (3)")
    con.close()

    report = prepare_database(cdm, state=_state(cdm))

    assert report.register_version.startswith("unversioned-")


def test_version_without_ids_is_refused(cdm: Path) -> None:
    with pytest.raises(ValueError, match="register_version"):
        prepare_database(cdm, state=_state(cdm), register_version="v1")


@pytest.mark.parametrize("bad", [["12"], [1.5], [-1], [True]])
def test_bad_optout_ids_are_refused_and_nothing_changes(cdm: Path, bad: list[object]) -> None:
    with pytest.raises((TypeError, ValueError)):
        prepare_database(cdm, state=_state(cdm), optout_ids=bad, register_version="v1")  # type: ignore[arg-type]

    tables = _rows(cdm, "SELECT table_name FROM information_schema.tables")
    assert (RECORD_KEY_TABLE,) not in tables
    assert not _state(cdm).exists()


def test_missing_database_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.duckdb"
    with pytest.raises(FileNotFoundError):
        prepare_database(path, state=_state(path))
    assert not path.exists()


def test_a_database_without_a_person_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    duckdb.connect(str(path)).close()

    with pytest.raises(ValueError, match="person"):
        prepare_database(path, state=_state(path))
    assert _rows(path, "SELECT count(*) FROM information_schema.tables") == [(0,)]


def test_read_optout_csv_with_header_blank_lines_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "optout.csv"
    path.write_text("\ufeffperson_id\r\n12\r\n\r\n 7 \r\n12\r\n", encoding="utf-8")

    assert read_optout_csv(path) == [12, 7, 12]


def test_read_optout_csv_without_header(tmp_path: Path) -> None:
    path = tmp_path / "optout.csv"
    path.write_text("5\n6\n", encoding="utf-8")

    assert read_optout_csv(path) == [5, 6]


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("person_id\n1\nabc\n", 3),
        ("1\n2\n-3\n", 3),
        ("1\n2.0\n", 2),
        ("1\n\n1;2\n", 3),
        ("1\nperson_id\n", 2),  # a header is only a header on the first line
        ("99999999999999999999\n", 1),
    ],
)
def test_read_optout_csv_names_the_bad_line(tmp_path: Path, content: str, line: int) -> None:
    path = tmp_path / "optout.csv"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(ValueError, match=rf"line {line}:"):
        read_optout_csv(path)
