"""Node preparation: what a hub runs on its own OMOP CDM 5.4 DuckDB database before serving.

It adds Tessera's tables beside the CDM (never touching CDM tables), loads the national
opt-out register (EHDS Art. 71), records the hub's data release label, gives every person
their stable index (`connectors.persons`, kept in the node's state directory) and a secret
record key. Record keys are drawn from the operating system's randomness, never from
anything reproducible, and a key once given is never changed: perturbation seeded by these
keys must stay the same for the same person across queries, or repeated queries could
average the noise away.

The data release label names the data answers are computed from: stored answers are kept
per release. A hub sets a new label when its data changed enough that questions asked again
should be answered afresh (and charged again); a rebuild of the same data keeps the label,
and every stored answer with it.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import duckdb
import numpy as np
from numpy.typing import NDArray

from connectors.omop import (
    DATA_RELEASE_TABLE,
    OPTOUT_REGISTER_TABLE,
    OPTOUT_TABLE,
    PERSON_INDEX_DDL,
    PERSON_INDEX_TABLE,
    RECORD_KEY_TABLE,
    TESSERA_DDL,
)
from connectors.persons import IndexedPersons, index_persons

RECORD_KEY_BOUND: Final = 2**31  # keys are uniform over [0, 2**31)
EMPTY_REGISTER_VERSION: Final = "empty"
DEFAULT_RELEASE: Final = "1"
RELEASE_LABEL: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}")
_MAX_PERSON_ID: Final = 2**63 - 1
_PERSON_ID_LINE: Final = re.compile(r"[0-9]+")
_SCAN: Final = "__tessera_prepare_scan"

Int64s = NDArray[np.int64]

# Table names below are constants from connectors.omop, never input, so building these
# statements with f-strings cannot inject anything (hence the S608 suppressions).
_COUNT_PERSONS: Final = "SELECT count(*) FROM person"
_COUNT_OPTOUTS: Final = f"SELECT count(*) FROM {OPTOUT_TABLE}"  # noqa: S608
_COUNT_VERSIONS: Final = f"SELECT count(*) FROM {OPTOUT_REGISTER_TABLE}"  # noqa: S608
_SELECT_VERSION: Final = f"SELECT version FROM {OPTOUT_REGISTER_TABLE}"  # noqa: S608
_CLEAR_OPTOUTS: Final = f"DELETE FROM {OPTOUT_TABLE}"  # noqa: S608
_INSERT_OPTOUTS: Final = f"INSERT INTO {OPTOUT_TABLE} SELECT person_id FROM {_SCAN}"  # noqa: S608
_CLEAR_VERSION: Final = f"DELETE FROM {OPTOUT_REGISTER_TABLE}"  # noqa: S608
_INSERT_VERSION: Final = f"INSERT INTO {OPTOUT_REGISTER_TABLE} VALUES (?, ?)"  # noqa: S608
_PERSONS_WITHOUT_KEY: Final = (
    "SELECT DISTINCT p.person_id FROM person AS p "  # noqa: S608
    f"ANTI JOIN {RECORD_KEY_TABLE} AS k ON k.person_id = p.person_id"
)
_INSERT_KEYS: Final = f"INSERT INTO {RECORD_KEY_TABLE} SELECT person_id, record_key FROM {_SCAN}"  # noqa: S608
_DROP_PERSONS: Final = f"DROP TABLE IF EXISTS {PERSON_INDEX_TABLE}"
_INSERT_PERSONS: Final = (
    f"INSERT INTO {PERSON_INDEX_TABLE} SELECT person_id, person_index FROM {_SCAN}"  # noqa: S608
)
_SELECT_RELEASE: Final = f"SELECT release FROM {DATA_RELEASE_TABLE}"  # noqa: S608
_CLEAR_RELEASE: Final = f"DELETE FROM {DATA_RELEASE_TABLE}"  # noqa: S608
_INSERT_RELEASE: Final = f"INSERT INTO {DATA_RELEASE_TABLE} VALUES (?, ?)"  # noqa: S608


@dataclass(frozen=True, slots=True)
class PrepareReport:
    persons: int
    keys_added: int
    optout_count: int
    register_version: str
    release: str = DEFAULT_RELEASE
    indexes_added: int = 0  # persons indexed for the first time at this node
    indexes_total: int = 0  # indexes ever given at this node
    shared_indexes: int = 0  # persons sharing their index (their stable id) with another
    secret_created: bool = False


def prepare_database(
    path: Path,
    *,
    state: Path,
    optout_ids: Iterable[int] | None = None,
    register_version: str | None = None,
    release: str | None = None,
) -> PrepareReport:
    """Prepares the OMOP database at `path` for a Tessera connector; safe to run again.

    `state` is the node's state directory: its person secret and index (see
    `connectors.persons`), the same directory every time, kept and backed up.

    With `optout_ids`, the opt-out register is replaced by exactly those person ids and
    `register_version` (default: the current UTC time) is recorded. Without them the register
    is left alone; an empty register without a version is recorded as version "empty".
    `release` sets the data release label; without it the database's label is kept, and a
    database without one gets "1".
    """
    path = Path(path)
    if state is None or not str(state).strip():
        raise ValueError(
            "prepare needs the node's state directory (state=..., `--state DIR`): the person "
            "index kept there must outlive the database"
        )
    state = Path(state)
    if release is not None and not RELEASE_LABEL.fullmatch(release):
        raise ValueError(
            f"release label {release[:70]!r} is not 1-64 letters, digits and . _ : + - "
            "(starting with a letter or digit)"
        )
    if register_version is not None and optout_ids is None:
        raise ValueError("register_version is only meaningful together with optout_ids")
    if register_version is not None and not register_version.strip():
        raise ValueError("register_version must not be blank")
    if not path.is_file():
        raise FileNotFoundError(f"no OMOP database at {path}")
    ids = None if optout_ids is None else _person_ids(optout_ids)

    con = duckdb.connect(str(path))
    try:
        # DuckDB's progress bar would write to stdout, in the middle of the caller's output.
        con.execute("SET enable_progress_bar = false")
        if not _has_table(con, "person"):
            raise ValueError(f"{path} has no OMOP `person` table; is it an OMOP CDM database?")
        con.execute("BEGIN TRANSACTION")
        try:
            for ddl in TESSERA_DDL:
                con.execute(ddl)
            if ids is not None:
                _replace_register(con, ids, register_version or _timestamp_version())
            elif _scalar(con, _COUNT_VERSIONS) == 0:
                # Opt-outs loaded by hand leave no version; say so rather than claim "empty".
                has_rows = _scalar(con, _COUNT_OPTOUTS) > 0
                _record_version(
                    con,
                    f"unversioned-{_timestamp_version()}" if has_rows else EMPTY_REGISTER_VERSION,
                )
            keys_added = _add_record_keys(con)
            label = _record_release(con, release)
            # Last before the commit: the person index is saved (extended) inside, so a failure
            # after it leaves indexes given and unused, never one index given twice.
            indexed = index_persons(con, state)
            _write_person_indexes(con, indexed)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        persons = _scalar(con, _COUNT_PERSONS)
        optout_count = _scalar(con, _COUNT_OPTOUTS)
        version = con.execute(_SELECT_VERSION).fetchone()
    finally:
        con.close()
    assert version is not None  # the transaction above always leaves one register row
    return PrepareReport(
        persons,
        keys_added,
        optout_count,
        str(version[0]),
        release=label,
        indexes_added=indexed.added,
        indexes_total=indexed.total,
        shared_indexes=indexed.shared,
        secret_created=indexed.secret_created,
    )


def read_optout_csv(path: Path) -> list[int]:
    """Person ids from an opt-out file: one id per line, optionally under a `person_id`
    header. Blank lines are skipped; anything else that is not an id is an error."""
    ids: list[int] = []
    seen_content = False
    with Path(path).open(encoding="utf-8-sig") as lines:  # -sig: files saved by spreadsheets
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line:
                continue
            is_header = not seen_content and line.lower() == "person_id"
            seen_content = True
            if is_header:
                continue
            if not _PERSON_ID_LINE.fullmatch(line) or int(line) > _MAX_PERSON_ID:
                raise ValueError(
                    f"{path}, line {number}: expected a person_id (a non-negative integer), "
                    f"got {line[:40]!r}"
                )
            ids.append(int(line))
    return ids


def _person_ids(values: Iterable[int]) -> Int64s:
    """The distinct ids, checked without a Python loop: registers can hold millions."""
    array = values if isinstance(values, np.ndarray) else np.asarray(list(values))
    if array.size == 0:
        return np.empty(0, dtype=np.int64)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise TypeError("opt-out person ids must be a flat sequence of integers")
    too_big = array.dtype.kind == "u" and int(array.max()) > _MAX_PERSON_ID
    if too_big or int(array.min()) < 0:
        raise ValueError("opt-out person ids must lie between 0 and 2**63 - 1")
    unique: Int64s = np.unique(array.astype(np.int64))
    return unique


def _replace_register(con: duckdb.DuckDBPyConnection, ids: Int64s, version: str) -> None:
    con.execute(_CLEAR_OPTOUTS)
    if len(ids):
        con.register(_SCAN, {"person_id": ids})
        try:
            con.execute(_INSERT_OPTOUTS)
        finally:
            con.unregister(_SCAN)
    _record_version(con, version)


def _record_version(con: duckdb.DuckDBPyConnection, version: str) -> None:
    con.execute(_CLEAR_VERSION)
    con.execute(
        _INSERT_VERSION,
        [version, dt.datetime.now(dt.UTC).replace(tzinfo=None)],
    )


def _add_record_keys(con: duckdb.DuckDBPyConnection) -> int:
    missing = con.execute(_PERSONS_WITHOUT_KEY).fetchnumpy()["person_id"]
    count = len(missing)
    if count == 0:
        return 0
    rng = np.random.default_rng(secrets.randbits(128))
    keys = rng.integers(0, RECORD_KEY_BOUND, size=count, dtype=np.int64)
    con.register(_SCAN, {"person_id": np.asarray(missing, dtype=np.int64), "record_key": keys})
    try:
        con.execute(_INSERT_KEYS)
    finally:
        con.unregister(_SCAN)
    return count


def _record_release(con: duckdb.DuckDBPyConnection, release: str | None) -> str:
    """The label `release`, or the one recorded, or the default; recorded with the time."""
    if release is None:
        recorded = [str(row[0]) for row in con.execute(_SELECT_RELEASE).fetchall()]
        if len(recorded) > 1:
            raise ValueError(
                f"{DATA_RELEASE_TABLE} holds {len(recorded)} labels; set one with --release"
            )
        release = recorded[0] if recorded else DEFAULT_RELEASE
    con.execute(_CLEAR_RELEASE)
    con.execute(_INSERT_RELEASE, [release, dt.datetime.now(dt.UTC).replace(tzinfo=None)])
    return release


def _write_person_indexes(con: duckdb.DuckDBPyConnection, indexed: IndexedPersons) -> None:
    # Rewritten whole: a rebuilt CDM may give the same persons other person_ids. Dropped and
    # created again, because DuckDB deletes and re-inserts primary keys 4x slower.
    con.execute(_DROP_PERSONS)
    con.execute(PERSON_INDEX_DDL)
    if not len(indexed.person_ids):
        return
    con.register(
        _SCAN,
        {"person_id": indexed.person_ids, "person_index": indexed.indexes.astype(np.int32)},
    )
    try:
        con.execute(_INSERT_PERSONS)
    finally:
        con.unregister(_SCAN)


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return (
        _scalar(
            con,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
            [name],
        )
        > 0
    )


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> int:
    row = con.execute(sql, params or []).fetchone()
    return int(row[0]) if row else 0


def _timestamp_version() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
