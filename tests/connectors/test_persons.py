"""Stable person indexes: the same person keeps their index across re-prepares, rebuilt
databases with other person_ids and opt-out updates; the secret and the index file fail
closed; and the data release label."""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pytest

from connectors import persons as persons_module
from connectors.cli import register
from connectors.omop import CDM_DDL
from connectors.persons import (
    INDEX_FILE,
    LOCK_FILE,
    SECRET_BYTES,
    SECRET_FILE,
    PersonIndex,
    PersonStateError,
    person_hashes,
    person_index_size,
    read_secret,
)
from connectors.prepare import DEFAULT_RELEASE, prepare_database

# (person_id, person_source_value)
Person = tuple[int, str | None]
PEOPLE: list[Person] = [
    (3, "FR-100000000003"),
    (17, "FR-100000000017"),
    (101, None),  # no source value: identified by its person_id
    (5000, "  "),  # blank counts as none
    (123456789012, "FR-100000000042"),
]


def _cdm(path: Path, people: Sequence[Person]) -> Path:
    """A database with only the CDM tables and the given persons, inserted in that order."""
    con = duckdb.connect(str(path))
    for ddl in CDM_DDL:
        con.execute(ddl)
    if people:
        con.executemany(
            "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, "
            "ethnicity_concept_id, person_source_value) VALUES (?, 8532, 1970, 0, 0, ?)",
            list(people),
        )
    con.close()
    return path


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _indexes(path: Path) -> dict[int, int]:
    rows = _rows(path, "SELECT person_id, person_index FROM tessera_person")
    return {int(str(p)): int(str(i)) for p, i in rows}


def _by_source(path: Path) -> dict[str, int]:
    """Each person's index, by source value (by `#person_id` for persons without one)."""
    rows = _rows(
        path,
        "SELECT coalesce(nullif(trim(p.person_source_value), ''), '#' || p.person_id), "
        "t.person_index FROM person AS p JOIN tessera_person AS t USING (person_id)",
    )
    return {str(s): int(str(i)) for s, i in rows}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def cdm(tmp_path: Path) -> Path:
    return _cdm(tmp_path / "hub.duckdb", PEOPLE)


# --- Stability --------------------------------------------------------------------------------


def test_first_prepare_indexes_every_person_densely_in_person_id_order(
    cdm: Path, state: Path
) -> None:
    report = prepare_database(cdm, state=state)

    assert _indexes(cdm) == {3: 0, 17: 1, 101: 2, 5000: 3, 123456789012: 4}
    assert (report.indexes_added, report.indexes_total, report.shared_indexes) == (5, 5, 0)
    assert report.secret_created
    assert person_index_size(state) == 5


def test_re_prepare_keeps_every_index_and_adds_none(cdm: Path, state: Path) -> None:
    prepare_database(cdm, state=state)
    before = _indexes(cdm)
    index_file = (state / INDEX_FILE).read_bytes()

    report = prepare_database(cdm, state=state)

    assert _indexes(cdm) == before
    assert (report.indexes_added, report.indexes_total) == (0, 5)
    assert not report.secret_created
    assert (state / INDEX_FILE).read_bytes() == index_file  # nothing new: not rewritten


def test_a_rebuild_with_renumbered_shuffled_person_ids_keeps_each_persons_index(
    tmp_path: Path, state: Path
) -> None:
    first = _cdm(tmp_path / "first.duckdb", PEOPLE)
    prepare_database(first, state=state)
    # The same people with a source value, other person_ids, inserted in another order.
    renumbered = [(900_000 - pid, source) for pid, source in PEOPLE if source and source.strip()]
    rebuilt = _cdm(tmp_path / "rebuilt.duckdb", renumbered[::-1])

    report = prepare_database(rebuilt, state=state)

    before, after = _by_source(first), _by_source(rebuilt)
    assert {s: after[s] for s in after} == {s: before[s] for s in after}
    assert report.indexes_added == 0
    assert len(after) == 3


def test_a_person_without_a_source_value_is_known_by_person_id(tmp_path: Path, state: Path) -> None:
    first = _cdm(tmp_path / "first.duckdb", [(101, None), (102, "")])
    prepare_database(first, state=state)
    # Same person_ids: same persons. Person 102 now has a source value: a new identity.
    again = _cdm(tmp_path / "again.duckdb", [(101, None), (102, "FR-1"), (103, None)])

    report = prepare_database(again, state=state)

    assert _indexes(first) == {101: 0, 102: 1}
    assert _indexes(again) == {101: 0, 102: 2, 103: 3}
    assert report.indexes_added == 2


def test_a_source_value_equal_to_another_persons_id_is_another_person(
    cdm: Path, state: Path, tmp_path: Path
) -> None:
    # Person 101 has no source value; a person whose source value is "101" is someone else.
    hub = _cdm(tmp_path / "other.duckdb", [(101, None), (7, "101")])
    prepare_database(hub, state=state)

    assert _indexes(hub) == {7: 0, 101: 1}


def test_new_persons_get_the_next_indexes_and_gone_persons_keep_theirs(
    tmp_path: Path, state: Path
) -> None:
    people = [(1, "A"), (2, "B"), (3, "C")]
    prepare_database(_cdm(tmp_path / "v1.duckdb", people), state=state)
    # B leaves; D and E arrive (E with the lower person_id: first in person_id order).
    v2 = _cdm(tmp_path / "v2.duckdb", [(1, "A"), (3, "C"), (9, "D"), (8, "E")])
    prepare_database(v2, state=state)
    # B comes back, F is new: B has their old index, F the next one, never B's.
    v3 = _cdm(tmp_path / "v3.duckdb", [(4, "B"), (5, "F"), (1, "A")])
    report = prepare_database(v3, state=state)

    assert _by_source(v2) == {"A": 0, "C": 2, "E": 3, "D": 4}
    assert _by_source(v3) == {"A": 0, "B": 1, "F": 5}
    assert (report.indexes_added, report.indexes_total) == (1, 6)
    assert person_index_size(state) == 6


def test_opt_out_updates_change_no_index(cdm: Path, state: Path) -> None:
    prepare_database(cdm, state=state)
    before = _indexes(cdm)

    prepare_database(cdm, state=state, optout_ids=[17, 101], register_version="v2")
    assert _indexes(cdm) == before
    prepare_database(cdm, state=state, optout_ids=[], register_version="v3")
    assert _indexes(cdm) == before


def test_persons_sharing_a_source_value_share_an_index(tmp_path: Path, state: Path) -> None:
    hub = _cdm(tmp_path / "dup.duckdb", [(1, "X"), (2, "X"), (3, "Y"), (4, " X ")])

    report = prepare_database(hub, state=state)

    assert _indexes(hub) == {1: 0, 2: 0, 3: 1, 4: 0}
    assert report.shared_indexes == 3
    assert report.indexes_total == 2


def test_tessera_person_is_rewritten_not_merged(tmp_path: Path, state: Path) -> None:
    hub = _cdm(tmp_path / "hub.duckdb", [(1, "A"), (2, "B")])
    prepare_database(hub, state=state)
    con = duckdb.connect(str(hub))
    con.execute("DELETE FROM person WHERE person_id = 1")
    con.execute("UPDATE person SET person_id = 20 WHERE person_id = 2")
    con.close()

    prepare_database(hub, state=state)

    assert _indexes(hub) == {20: 1}


def test_every_state_directory_is_its_own_index(tmp_path: Path) -> None:
    a = _cdm(tmp_path / "a.duckdb", PEOPLE)
    b = _cdm(tmp_path / "b.duckdb", PEOPLE)
    prepare_database(a, state=tmp_path / "state-a")
    prepare_database(b, state=tmp_path / "state-b")

    assert _indexes(a) == _indexes(b)  # both dense, in person_id order
    assert read_secret(tmp_path / "state-a") != read_secret(tmp_path / "state-b")
    index_a = (tmp_path / "state-a" / INDEX_FILE).read_bytes()
    index_b = (tmp_path / "state-b" / INDEX_FILE).read_bytes()
    assert index_a[64:] != index_b[64:]  # other secrets, other hashes


def test_an_empty_person_table_is_prepared(tmp_path: Path, state: Path) -> None:
    hub = _cdm(tmp_path / "empty.duckdb", [])

    report = prepare_database(hub, state=state)

    assert (report.persons, report.indexes_total) == (0, 0)
    assert _indexes(hub) == {}


# --- The secret -------------------------------------------------------------------------------


def test_the_secret_is_32_random_bytes_only_the_owner_can_read(cdm: Path, state: Path) -> None:
    prepare_database(cdm, state=state)

    secret = state / SECRET_FILE
    assert len(secret.read_bytes()) == SECRET_BYTES
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / INDEX_FILE).stat().st_mode) == 0o600
    # No temporary file is left beside them.
    assert sorted(p.name for p in state.iterdir()) == [INDEX_FILE, LOCK_FILE, SECRET_FILE]


def test_a_lost_secret_fails_loudly_and_is_never_replaced(cdm: Path, state: Path) -> None:
    prepare_database(cdm, state=state)
    before = _indexes(cdm)
    (state / SECRET_FILE).unlink()

    with pytest.raises(PersonStateError, match=r"person\.secret is missing.*restore"):
        prepare_database(cdm, state=state, release="2")

    assert not (state / SECRET_FILE).exists()
    assert _indexes(cdm) == before
    assert _rows(cdm, "SELECT release FROM tessera_data_release") == [(DEFAULT_RELEASE,)]


@pytest.mark.parametrize("content", [b"", b"\x00" * 31, b"\x00" * 33])
def test_a_malformed_secret_fails(cdm: Path, state: Path, content: bytes) -> None:
    prepare_database(cdm, state=state)
    (state / SECRET_FILE).write_bytes(content)

    with pytest.raises(PersonStateError, match="malformed"):
        prepare_database(cdm, state=state)
    assert (state / SECRET_FILE).read_bytes() == content


def test_a_malformed_secret_is_not_overwritten_even_before_any_index(
    cdm: Path, state: Path
) -> None:
    state.mkdir()
    (state / SECRET_FILE).write_bytes(b"short")
    (state / SECRET_FILE).chmod(0o600)

    with pytest.raises(PersonStateError, match="malformed"):
        prepare_database(cdm, state=state)
    assert (state / SECRET_FILE).read_bytes() == b"short"
    assert not (state / INDEX_FILE).exists()


def test_another_secret_is_refused(cdm: Path, state: Path) -> None:
    prepare_database(cdm, state=state)
    (state / SECRET_FILE).write_bytes(os.urandom(SECRET_BYTES))

    with pytest.raises(PersonStateError, match="another secret"):
        prepare_database(cdm, state=state)


def test_a_secret_others_can_read_is_refused(cdm: Path, state: Path) -> None:
    prepare_database(cdm, state=state)
    (state / SECRET_FILE).chmod(0o640)

    with pytest.raises(PersonStateError, match="chmod 600"):
        prepare_database(cdm, state=state)


def test_a_secret_placed_before_the_first_prepare_is_used(cdm: Path, state: Path) -> None:
    secret = os.urandom(SECRET_BYTES)
    state.mkdir()
    (state / SECRET_FILE).write_bytes(secret)
    (state / SECRET_FILE).chmod(0o600)

    report = prepare_database(cdm, state=state)

    assert not report.secret_created
    assert read_secret(state) == secret
    index = PersonIndex.load(state, secret)
    assert len(index) == 5


def test_a_mistyped_state_directory_is_refused_and_not_created(
    cdm: Path, state: Path, tmp_path: Path
) -> None:
    prepare_database(cdm, state=state)

    with pytest.raises(PersonStateError, match="prepared with"):
        prepare_database(cdm, state=tmp_path / "stat")
    assert not (tmp_path / "stat").exists()


def test_an_index_without_a_database_table_is_still_the_index(
    cdm: Path, state: Path, tmp_path: Path
) -> None:
    # A rebuilt database has no tessera_person yet: the state's index decides.
    prepare_database(cdm, state=state)
    rebuilt = _cdm(tmp_path / "rebuilt.duckdb", PEOPLE[::-1])

    prepare_database(rebuilt, state=state)

    assert _indexes(rebuilt) == _indexes(cdm)


# --- The index file ---------------------------------------------------------------------------


def test_an_interrupted_save_leaves_the_old_index_and_database(
    cdm: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare_database(cdm, state=state)
    saved = (state / INDEX_FILE).read_bytes()
    before = _indexes(cdm)
    con = duckdb.connect(str(cdm))
    con.execute(
        "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, "
        "ethnicity_concept_id, person_source_value) VALUES (6, 8532, 1970, 0, 0, 'FR-6'), "
        "(7, 8507, 1980, 0, 0, 'FR-7')"
    )
    con.close()

    def crash(source: object, target: object) -> None:
        # The temporary file is written and synced; the process dies before the rename.
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(persons_module.os, "replace", crash)
        with pytest.raises(KeyboardInterrupt):
            prepare_database(cdm, state=state, release="2")

    assert (state / INDEX_FILE).read_bytes() == saved
    assert sorted(p.name for p in state.iterdir()) == [INDEX_FILE, LOCK_FILE, SECRET_FILE]
    assert _indexes(cdm) == before  # the database's transaction was rolled back
    assert _rows(cdm, "SELECT release FROM tessera_data_release") == [(DEFAULT_RELEASE,)]
    # The next prepare gives the new persons the next indexes, as if nothing had happened.
    report = prepare_database(cdm, state=state)
    assert report.indexes_added == 2
    assert _indexes(cdm) == {**before, 6: 5, 7: 6}


def test_temporary_files_left_by_a_killed_prepare_are_cleaned_up(cdm: Path, state: Path) -> None:
    prepare_database(cdm, state=state)
    leftovers = [state / f".{INDEX_FILE}.99999.tmp", state / f".{SECRET_FILE}.k2j4h1"]
    for leftover in leftovers:
        leftover.write_bytes(b"half written")

    prepare_database(cdm, state=state)

    assert sorted(p.name for p in state.iterdir()) == [INDEX_FILE, LOCK_FILE, SECRET_FILE]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:40], "cut short"),
        (lambda data: data[:-8], "header says"),
        (lambda data: data[:100] + bytes([data[100] ^ 1]) + data[101:], "do not verify"),
        (lambda data: b"NOTANIDX" + data[8:], "not a Tessera person index"),
    ],
    ids=["truncated-header", "truncated", "flipped-bit", "other-file"],
)
def test_a_damaged_index_is_refused(cdm: Path, state: Path, damage: object, message: str) -> None:
    prepare_database(cdm, state=state)
    path = state / INDEX_FILE
    damaged = damage(path.read_bytes())  # type: ignore[operator]
    path.write_bytes(damaged)
    before = _indexes(cdm)

    with pytest.raises(PersonStateError, match=message):
        prepare_database(cdm, state=state)
    assert path.read_bytes() == damaged
    assert _indexes(cdm) == before


def test_one_prepare_at_a_time_per_state_directory(cdm: Path, state: Path) -> None:
    prepare_database(cdm, state=state)
    fd = os.open(state / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(PersonStateError, match="another prepare"):
            prepare_database(cdm, state=state)
    finally:
        os.close(fd)
    prepare_database(cdm, state=state)


def test_index_assigns_in_order_of_first_appearance_and_round_trips(tmp_path: Path) -> None:
    secret = os.urandom(SECRET_BYTES)
    index = PersonIndex.load(tmp_path, secret)
    assert len(index) == 0

    first = index.assign(np.array([50, 10, 50, 30], dtype=np.uint64))
    second = index.assign(np.array([30, 99, 10, 7, 99], dtype=np.uint64))

    assert first.tolist() == [0, 1, 0, 2]
    assert second.tolist() == [2, 3, 1, 4, 3]
    assert (len(index), index.unsaved) == (5, 5)
    index.save()
    assert index.unsaved == 0
    loaded = PersonIndex.load(tmp_path, secret)
    assert loaded.assign(np.array([7, 50, 30, 10, 99], dtype=np.uint64)).tolist() == [
        4,
        0,
        2,
        1,
        3,
    ]
    assert loaded.unsaved == 0
    assert person_index_size(tmp_path) == 5


def test_index_size_needs_no_secret_and_is_zero_before_any_prepare(tmp_path: Path) -> None:
    assert person_index_size(tmp_path) == 0
    (tmp_path / INDEX_FILE).write_bytes(b"rubbish")
    with pytest.raises(PersonStateError):
        person_index_size(tmp_path)


# --- The hash ---------------------------------------------------------------------------------


def test_the_hash_is_keyed_blake2b_of_64_bits() -> None:
    secret = bytes(range(SECRET_BYTES))
    hashes = person_hashes([b"sFR-1", bytearray(b"p17")], secret)

    expected = hashlib.blake2b(b"sFR-1", key=secret, digest_size=8, person=b"tessera.person")
    assert hashes.dtype == np.uint64
    assert int(hashes[0]) == int.from_bytes(expected.digest(), "little")
    assert person_hashes([b"sFR-1"], secret)[0] == hashes[0]
    assert person_hashes([b"sFR-1"], os.urandom(SECRET_BYTES))[0] != hashes[0]


def test_a_secret_of_the_wrong_size_is_refused_by_the_hash() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        person_hashes([b"x"], b"short")


# --- Bad persons ------------------------------------------------------------------------------


def test_repeated_person_ids_are_refused(tmp_path: Path, state: Path) -> None:
    hub = _cdm(tmp_path / "dup.duckdb", [(1, "A"), (1, "B"), (2, "C")])

    with pytest.raises(ValueError, match="unique"):
        prepare_database(hub, state=state)
    assert not (state / INDEX_FILE).exists()
    assert not (state / SECRET_FILE).exists()


# --- The data release label -------------------------------------------------------------------


def test_release_defaults_to_1_then_is_kept_until_set(cdm: Path, state: Path) -> None:
    assert prepare_database(cdm, state=state).release == DEFAULT_RELEASE == "1"
    assert prepare_database(cdm, state=state, release="2026-11").release == "2026-11"
    assert prepare_database(cdm, state=state).release == "2026-11"
    assert prepare_database(cdm, state=state, optout_ids=[3], register_version="r").release == (
        "2026-11"
    )

    rows = _rows(cdm, "SELECT release, prepared_at FROM tessera_data_release")
    assert len(rows) == 1
    assert rows[0][0] == "2026-11"
    assert rows[0][1] is not None


@pytest.mark.parametrize("label", ["", " 2", "2026 11", "x" * 65, "-1", "é"])
def test_a_bad_release_label_is_refused_before_anything_changes(
    cdm: Path, state: Path, label: str
) -> None:
    with pytest.raises(ValueError, match="release label"):
        prepare_database(cdm, state=state, release=label)
    assert not state.exists()
    tables = _rows(cdm, "SELECT table_name FROM information_schema.tables")
    assert ("tessera_data_release",) not in tables


def test_several_release_rows_need_an_explicit_label(cdm: Path, state: Path) -> None:
    prepare_database(cdm, state=state)
    con = duckdb.connect(str(cdm))
    con.execute("INSERT INTO tessera_data_release VALUES ('other', now())")
    con.close()

    with pytest.raises(ValueError, match="--release"):
        prepare_database(cdm, state=state)
    assert prepare_database(cdm, state=state, release="3").release == "3"


# --- Without a state directory ----------------------------------------------------------------


def test_the_python_api_needs_a_state_directory(cdm: Path) -> None:
    with pytest.raises(TypeError, match="state"):
        prepare_database(cdm)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="state directory"):
        prepare_database(cdm, state=None)  # type: ignore[arg-type]


def _cli(args: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="tessera")
    register(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(args)
    result: int = parsed.handler(parsed)
    return result


def test_the_command_needs_state_and_says_when_it_creates_a_secret(
    cdm: Path, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _cli(["connector", "prepare", "--database", str(cdm)])
    assert exited.value.code == 2
    assert "--state" in capsys.readouterr().err

    assert _cli(["connector", "prepare", "--database", str(cdm), "--state", str(state)]) == 0
    first = capsys.readouterr().out
    assert "created the node's person secret" in first
    assert "data release 1" in first
    secret = read_secret(state)
    assert secret.hex() not in first  # never printed

    args = ["connector", "prepare", "--database", str(cdm), "--state", str(state)]
    assert _cli([*args, "--release", "R2"]) == 0
    second = capsys.readouterr().out
    assert "created" not in second
    assert "data release R2" in second


def test_the_command_reports_state_errors_without_a_traceback(
    cdm: Path, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["connector", "prepare", "--database", str(cdm), "--state", str(state)]
    assert _cli(args) == 0
    (state / SECRET_FILE).unlink()
    capsys.readouterr()

    assert _cli(args) == 2
    err = capsys.readouterr().err
    assert "person.secret is missing" in err
    assert "Traceback" not in err


def test_the_command_reports_a_database_in_use_without_a_traceback(cdm: Path, state: Path) -> None:
    # DuckDB lets no other process write a file this one holds open (a running connector).
    command = ["connector", "prepare", "--database", str(cdm), "--state", str(state)]
    with duckdb.connect(str(cdm)):
        run = subprocess.run(
            [sys.executable, "-m", "tessera", *command],
            capture_output=True,
            text=True,
            check=False,
        )
    assert run.returncode == 2
    assert "lock" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (state / SECRET_FILE).exists()
