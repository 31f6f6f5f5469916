"""Who a person is to the node, across data reloads: a stable, dense person index.

The node's privacy ledger keeps each person's spend in arrays indexed by person. That index
must outlive everything a hub does to its database: running `tessera connector prepare`
again, rebuilding the CDM (which may give the same persons new `person_id`s), updating the
opt-out register. So it is derived from who the person is, never from `person_id` alone:

- A person's stable identifier is OMOP `person.person_source_value`; where that is NULL or
  blank (only spaces), the `person_id` written as text. A hub whose ETL renumbers
  `person_id` on each rebuild must fill `person_source_value` (e.g. with its pseudonymous
  national id), or every rebuild restarts the budgets of the persons without one.
- The identifier is hashed with keyed BLAKE2b under the node's secret, truncated to 64 bits.
  The secret (`<state>/person.secret`, 32 random bytes, owner-only) is what stops anyone
  holding the state files from confirming a guessed national id against them.
- `<state>/person.index` maps each hash to a dense index: the n-th hash ever seen has index
  n - 1. New persons get the next indexes; a person no longer in the data keeps theirs and
  an index is never given to anyone else, so a ledger row never changes hands.

Two different identifiers whose hashes collide (2^-64 per pair: for 10^7 persons, a chance
of 3 in a million that any two do) share one index, and so do persons who share one
`person_source_value`. Sharing an index makes those persons share one budget: each is
charged at least what they spent themselves, so protection holds and only their usefulness
suffers.

Losing the secret means the index cannot be extended with the same hashes: prepare then
stops rather than start a new secret, because a new secret would silently restart every
person's budget. Back up the state directory, the secret with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import secrets
import stat
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import duckdb
import numpy as np
from numpy.typing import NDArray

from connectors.durability import sync_directory
from connectors.omop import PERSON_INDEX_TABLE

SECRET_FILE: Final = "person.secret"  # noqa: S105 (a file name, not a secret)
INDEX_FILE: Final = "person.index"
LOCK_FILE: Final = "person.lock"
SECRET_BYTES: Final = 32
# `tessera_person.person_index` is a (signed 32-bit) INTEGER.
MAX_INDEXES: Final = 2**31

UInt64s = NDArray[np.uint64]
UInt32s = NDArray[np.uint32]
Int64s = NDArray[np.int64]
Objects = NDArray[np.object_]

# BLAKE2b personalisations keep the three uses of the one secret apart.
_HASH_PERSONAL: Final = b"tessera.person"
_CHECK_PERSONAL: Final = b"tessera.check"
_MAC_PERSONAL: Final = b"tessera.index"

# person.index: a 64-byte header, then the hashes in index order, uint64 little-endian.
#   magic (8) | count (uint64) | secret check (16) | MAC of the rest of the file (32)
_MAGIC: Final = b"TSPIDX\x00\x01"
_HEAD: Final = struct.Struct("<8sQ16s")  # what the MAC covers, with the hashes
_MAC_BYTES: Final = 32
_HEADER_BYTES: Final = _HEAD.size + _MAC_BYTES
_HASH_DTYPE: Final = np.dtype("<u8")
_HASH_CHUNK: Final = 1 << 20

# Identifiers are tagged by kind, so a source value "17" and the person_id 17 of a person
# without one stay two different persons.
_IDENTIFIERS: Final = (
    "SELECT person_id, encode(CASE WHEN trim(person_source_value) <> '' "
    "THEN 's' || trim(person_source_value) "
    "ELSE 'p' || CAST(person_id AS VARCHAR) END) AS identifier "
    "FROM person ORDER BY person_id"
)
_TABLE_EXISTS: Final = "SELECT count(*) FROM information_schema.tables WHERE table_name = ?"
_INDEXED_ROWS: Final = f"SELECT count(*) FROM {PERSON_INDEX_TABLE}"  # noqa: S608
_NEVER_ANEW: Final = "a new secret would restart every person's privacy budget"


class PersonStateError(Exception):
    """The node's person state (secret, index) is missing, damaged or inconsistent; the
    message says what to do. Nothing was changed."""


@dataclass(frozen=True, slots=True)
class IndexedPersons:
    """Every person of `person` and their index, in `person_id` order."""

    person_ids: Int64s
    indexes: UInt32s
    added: int  # indexes given to persons seen for the first time
    total: int  # indexes ever given at this node
    shared: int  # persons who share their index with another person of this data
    secret_created: bool


def person_hashes(identifiers: Iterable[bytes | bytearray], secret: bytes) -> UInt64s:
    """The keyed 64-bit hash of each identifier (UTF-8 bytes), as unsigned integers.

    One BLAKE2b per identifier, from a copy of a state that has already absorbed the key:
    about half a microsecond each, so 10^7 persons take a few seconds."""
    _check_secret(secret)
    copy = hashlib.blake2b(key=secret, digest_size=8, person=_HASH_PERSONAL).copy
    chunks: list[UInt64s] = []
    pending = iter(identifiers)
    # In chunks, so that the digests of 10^7 persons never wait as 10^7 bytes objects.
    while chunk := list(itertools.islice(pending, _HASH_CHUNK)):
        digests: list[bytes] = []
        append = digests.append
        for identifier in chunk:
            h = copy()
            h.update(identifier)
            append(h.digest())
        chunks.append(np.frombuffer(b"".join(digests), dtype=_HASH_DTYPE).astype(np.uint64))
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=np.uint64)


class PersonIndex:
    """The persistent hash → index mapping of one state directory. `assign` extends it in
    memory; `save` writes it atomically (temporary file, fsync, rename)."""

    def __init__(self, path: Path, secret: bytes, hashes: UInt64s, saved: int) -> None:
        self.path = path
        self._secret = secret
        self._hashes = hashes
        self._saved = saved

    @classmethod
    def load(cls, state: Path, secret: bytes) -> PersonIndex:
        """The index in `state`, empty if there is none yet. A file that was not written
        with `secret`, or whose contents do not verify, is an error."""
        _check_secret(secret)
        path = Path(state) / INDEX_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls(path, secret, np.empty(0, dtype=np.uint64), 0)
        if len(data) < _HEADER_BYTES:
            raise _damaged(path, "its header is cut short")
        magic, count, check = _HEAD.unpack_from(data)
        if magic != _MAGIC:
            raise PersonStateError(f"{path} is not a Tessera person index")
        if len(data) != _HEADER_BYTES + 8 * count:
            raise _damaged(path, f"{len(data)} bytes where its header says {count} persons")
        if not secrets.compare_digest(check, _secret_check(secret)):
            raise PersonStateError(
                f"{path} was made with another secret than {path.parent / SECRET_FILE}: "
                "restore the secret this index was made with"
            )
        view = memoryview(data)
        mac = _mac(secret, view[: _HEAD.size], view[_HEADER_BYTES:])
        if not secrets.compare_digest(bytes(view[_HEAD.size : _HEADER_BYTES]), mac):
            raise _damaged(path, "its contents do not verify")
        hashes = np.frombuffer(data, dtype=_HASH_DTYPE, offset=_HEADER_BYTES).astype(np.uint64)
        return cls(path, secret, hashes, count)

    def __len__(self) -> int:
        return len(self._hashes)

    @property
    def unsaved(self) -> int:
        """Indexes given since the index was loaded or last saved."""
        return len(self._hashes) - self._saved

    def assign(self, hashes: UInt64s) -> UInt32s:
        """The index of each hash, giving the next free indexes to hashes never seen, in
        order of first appearance in `hashes`."""
        hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        known = len(self._hashes)
        result = np.full(len(hashes), -1, dtype=np.int64)
        if known and len(hashes):
            rows, indexes = _join(self._hashes, hashes)
            result[rows] = indexes
        fresh_rows = np.flatnonzero(result < 0)
        # Two persons whose hashes collide (2^-64 per pair) get one index, as if one person.
        if fresh_rows.size:
            fresh, given = _number_in_order(hashes[fresh_rows])
            if known + len(fresh) > MAX_INDEXES:
                raise PersonStateError(f"{self.path} is full ({MAX_INDEXES} persons)")
            result[fresh_rows] = known + given
            self._hashes = np.concatenate([self._hashes, fresh])
        return result.astype(np.uint32)

    def save(self) -> None:
        """Writes the index under a temporary name, syncs it and renames it over the old
        one: a reader, or a crash at any moment, sees the old index or the whole new one."""
        hashes = np.ascontiguousarray(self._hashes, dtype=_HASH_DTYPE)
        body = hashes.data.cast("B")
        head = _HEAD.pack(_MAGIC, len(hashes), _secret_check(self._secret))
        header = head + _mac(self._secret, memoryview(head), body)
        temporary = self.path.with_name(f".{INDEX_FILE}.{os.getpid()}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(header)
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        sync_directory(self.path.parent)
        self._saved = len(hashes)


def read_secret(state: Path) -> bytes:
    """The node's person secret. Missing, malformed or readable by others is an error."""
    path = Path(state) / SECRET_FILE
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise PersonStateError(f"{path} is not a file")
        if info.st_mode & 0o077:
            raise PersonStateError(
                f"{path} is accessible to others (mode {stat.S_IMODE(info.st_mode):o}): "
                f"chmod 600 {path}"
            )
        secret = path.read_bytes()
    except FileNotFoundError:
        raise PersonStateError(f"{path} is missing") from None
    if len(secret) != SECRET_BYTES:
        raise PersonStateError(
            f"{path} is malformed (it must hold exactly {SECRET_BYTES} bytes): restore it from "
            f"a backup ({_NEVER_ANEW})"
        )
    return secret


def person_index_size(state: Path) -> int:
    """How many indexes this node has ever given (0 before the first prepare): the size of
    a dense per-person array. Reads the index's header only, and needs no secret."""
    path = Path(state) / INDEX_FILE
    try:
        with path.open("rb") as f:
            header = f.read(_HEAD.size)
    except FileNotFoundError:
        return 0
    if len(header) < _HEAD.size or header[: len(_MAGIC)] != _MAGIC:
        raise PersonStateError(f"{path} is not a Tessera person index")
    count: int = _HEAD.unpack(header)[1]
    return count


def stable_identifiers(con: duckdb.DuckDBPyConnection) -> tuple[Int64s, Objects]:
    """Every person_id of `person`, ascending, and the person's stable identifier (UTF-8, tagged
    by kind: `s` + the source value, or `p` + the person_id), to hash with `person_hashes`."""
    columns = con.execute(_IDENTIFIERS).fetchnumpy()
    ids = columns["person_id"]
    if np.ma.isMaskedArray(ids) and np.ma.is_masked(ids):
        raise ValueError("person has rows without a person_id")
    person_ids = np.asarray(ids, dtype=np.int64)
    if len(person_ids) > 1 and not np.all(np.diff(person_ids) > 0):
        repeated = int(np.count_nonzero(np.diff(person_ids) == 0))
        raise ValueError(f"person_id must be unique in person: {repeated} ids repeat")
    identifiers: Objects = columns["identifier"]  # bytearray each (encode() gives BLOBs)
    return person_ids, identifiers


def index_persons(con: duckdb.DuckDBPyConnection, state: Path) -> IndexedPersons:
    """The index of every person of the OMOP `person` table on `con`, extending and saving
    the index in `state` (created, with a new secret, on first use).

    Refuses, changing nothing, when the state is inconsistent: an index without its secret,
    or a database indexed before (it has `tessera_person` rows) against a state directory
    that holds no index, which is what a mistyped `--state` looks like."""
    state = Path(state)
    _check_not_elsewhere(con, state)  # before creating anything in a mistyped directory
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(state):
        _check_not_elsewhere(con, state)
        person_ids, identifiers = stable_identifiers(con)
        has_index = (state / INDEX_FILE).exists()
        secret, created = _secret(state, has_index)
        index = PersonIndex.load(state, secret)
        indexes = index.assign(person_hashes(identifiers, secret))
        added = index.unsaved
        if added:
            index.save()
    persons_on = np.bincount(indexes, minlength=len(index))
    return IndexedPersons(
        person_ids=person_ids,
        indexes=indexes,
        added=added,
        total=len(index),
        shared=int(np.count_nonzero(persons_on[indexes] > 1)),
        secret_created=created,
    )


def _check_not_elsewhere(con: duckdb.DuckDBPyConnection, state: Path) -> None:
    if not (state / INDEX_FILE).exists() and _indexed_before(con):
        raise PersonStateError(
            f"this database was indexed before, but {state} holds no person index: is it "
            "the state directory the database was prepared with? (To restart every "
            f"person's privacy budget on purpose, drop the table {PERSON_INDEX_TABLE} first.)"
        )


def _secret(state: Path, has_index: bool) -> tuple[bytes, bool]:
    """The secret, and whether it was created now: only for a state without an index."""
    path = state / SECRET_FILE
    if has_index and not path.exists():
        raise PersonStateError(
            f"{path} is missing, and {state / INDEX_FILE} was made with it: restore it from "
            f"a backup ({_NEVER_ANEW})"
        )
    if path.exists():
        return read_secret(state), False
    secret = secrets.token_bytes(SECRET_BYTES)
    # Written in full under a temporary name (mkstemp: mode 0600), then linked into place:
    # the secret file is complete whenever it exists, and never replaces another.
    fd, name = tempfile.mkstemp(dir=state, prefix=f".{SECRET_FILE}.")
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(secret)
            out.flush()
            os.fsync(out.fileno())
        os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    sync_directory(state)
    return secret, True


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    """One prepare at a time per state directory (two could give one index twice)."""
    fd = os.open(state / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PersonStateError(f"another prepare is using {state}") from None
        # What a process killed mid-write left behind; nothing is written but under the lock.
        for pattern in (f".{INDEX_FILE}.*.tmp", f".{SECRET_FILE}.*"):
            for leftover in state.glob(pattern):
                leftover.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)


def _number_in_order(hashes: UInt64s) -> tuple[UInt64s, Int64s]:
    """The distinct hashes in order of first appearance, and each hash's position among them."""
    ordered = np.sort(hashes)
    if not np.any(ordered[1:] == ordered[:-1]):
        # The usual case, every person a stable id of their own: no argsort needed.
        return hashes, np.arange(len(hashes), dtype=np.int64)
    distinct, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return distinct[order], rank[inverse]


def _join(known: UInt64s, asked: UInt64s) -> tuple[Int64s, Int64s]:
    """(row in `asked`, index) of every asked hash that is known. DuckDB's hash join takes
    ~0.7 s for 10^7 against 10^7 on two cores, where NumPy would need two argsorts (~3 s)."""
    # 32-bit positions where they fit: a quarter less for DuckDB to move.
    position = np.int32 if max(len(known), len(asked)) < 2**31 else np.int64
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.register("known", {"h": known, "i": np.arange(len(known), dtype=position)})
        con.register("asked", {"h": asked, "r": np.arange(len(asked), dtype=position)})
        found = con.execute("SELECT asked.r, known.i FROM asked JOIN known USING (h)").fetchnumpy()
    finally:
        con.close()
    return np.asarray(found["r"], dtype=np.int64), np.asarray(found["i"], dtype=np.int64)


def _damaged(path: Path, why: str) -> PersonStateError:
    return PersonStateError(f"{path} is damaged ({why}): restore it from a backup")


def _check_secret(secret: bytes) -> None:
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"the person secret must be {SECRET_BYTES} bytes")


def _secret_check(secret: bytes) -> bytes:
    """Names the secret an index was made with, revealing nothing about it."""
    return hashlib.blake2b(b"", key=secret, digest_size=16, person=_CHECK_PERSONAL).digest()


def _mac(secret: bytes, head: memoryview, body: memoryview) -> bytes:
    mac = hashlib.blake2b(key=secret, digest_size=_MAC_BYTES, person=_MAC_PERSONAL)
    mac.update(head)
    mac.update(body)
    return mac.digest()


def _indexed_before(con: duckdb.DuckDBPyConnection) -> bool:
    return _scalar(con, _TABLE_EXISTS, [PERSON_INDEX_TABLE]) > 0 and _scalar(con, _INDEXED_ROWS) > 0


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> int:
    row = con.execute(sql, params or []).fetchone()
    return int(row[0]) if row else 0
