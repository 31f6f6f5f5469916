"""The populations a node has answered, per approval: what the differencing guard
(policies.differencing) compares a new question's population with.

Populations are Roaring bitmaps of person ids (pyroaring's 64-bit `BitMap64`): a cohort of a
million persons takes a few hundred kilobytes, and the overlap of two is computed without
expanding either. The shipped store keeps them in a small SQLite file next to the node, so a
restart does not reset the guard; `MemoryHistory` is the fake for tests.

`check_and_record` is atomic per node: two questions racing cannot both pass against a history
that neither has been added to yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import struct
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final, Protocol

import numpy as np
from numpy.typing import NDArray
from pyroaring import BitMap, BitMap64

from policies.differencing import differencing_refusal
from policies.profiles import DisclosureProfile
from schema.codes import Jurisdiction
from schema.result import Reason

Population = BitMap64

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS population (
    request_id TEXT NOT NULL,
    digest BLOB NOT NULL,
    persons INTEGER NOT NULL,
    bitmap BLOB NOT NULL,
    PRIMARY KEY (request_id, digest)
)
"""


def population_of(person_ids: Iterable[int] | NDArray[np.uint64]) -> Population:
    """The bitmap of `person_ids` (a NumPy column is the fast way in)."""
    ids = person_ids if isinstance(person_ids, np.ndarray) else np.fromiter(person_ids, np.uint64)
    if not ids.size:
        return BitMap64()
    if int(ids.max()) < 2**32:
        # Ids below 2^32 all fall in bucket 0 of the 64-bit format (a count of buckets, then each
        # bucket's high half and its 32-bit bitmap), and a 32-bit bitmap builds ~2x faster.
        low = array("I")
        low.frombytes(ids.astype(np.uint32).tobytes())
        return BitMap64.deserialize(_ONE_BUCKET_ZERO + BitMap(low).serialize())
    wide = array("Q")
    wide.frombytes(ids.astype(np.uint64).tobytes())
    return BitMap64(wide)


_ONE_BUCKET_ZERO: Final = struct.pack("<QI", 1, 0)


class PopulationHistory(Protocol):
    async def check_and_record(
        self,
        request_id: str,
        population: Population,
        profile: DisclosureProfile,
        jurisdiction: Jurisdiction | None,
    ) -> Reason | None:
        """The reason to refuse `population` under this approval, or None after recording
        it as answered."""
        ...

    async def close(self) -> None: ...


class MemoryHistory:
    """Populations in memory: the base of the SQLite store, and the fake for tests."""

    def __init__(self) -> None:
        self._populations: dict[str, dict[bytes, Population]] = {}
        self._lock = asyncio.Lock()

    async def _load(self, request_id: str) -> dict[bytes, Population]:
        return self._populations.setdefault(request_id, {})

    async def _store(self, request_id: str, digest: bytes, population: Population) -> None:
        return None

    async def check_and_record(
        self,
        request_id: str,
        population: Population,
        profile: DisclosureProfile,
        jurisdiction: Jurisdiction | None,
    ) -> Reason | None:
        size = len(population)
        async with self._lock:
            known = await self._load(request_id)
            overlaps = (
                (len(earlier), population.intersection_cardinality(earlier))
                for earlier in known.values()
            )
            refusal = differencing_refusal(size, overlaps, profile, jurisdiction)
            if refusal is not None:
                return refusal
            digest = _digest(population)
            if digest not in known:
                await self._store(request_id, digest, population)
                known[digest] = population
        return None

    async def close(self) -> None:
        return None


class SqliteHistory(MemoryHistory):
    """Populations in a SQLite file (created with its directory when missing), read once
    per approval and then kept in memory."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, check_same_thread=False)
            connection.execute(_SCHEMA)
            connection.commit()
            self._connection = connection
        return self._connection

    async def _run(self, work: Callable[[sqlite3.Connection], object]) -> object:
        return await asyncio.to_thread(lambda: work(self._connect()))

    async def _load(self, request_id: str) -> dict[bytes, Population]:
        if request_id not in self._populations:
            rows = await self._run(
                lambda c: c.execute(
                    "SELECT digest, bitmap FROM population WHERE request_id = ?", (request_id,)
                ).fetchall()
            )
            assert isinstance(rows, list)
            self._populations[request_id] = {
                bytes(digest): BitMap64.deserialize(bytes(blob)) for digest, blob in rows
            }
        return self._populations[request_id]

    async def _store(self, request_id: str, digest: bytes, population: Population) -> None:
        blob = population.serialize()

        def insert(c: sqlite3.Connection) -> None:
            with c:
                c.execute(
                    "INSERT OR IGNORE INTO population VALUES (?, ?, ?, ?)",
                    (request_id, digest, len(population), blob),
                )

        await self._run(insert)

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await asyncio.to_thread(connection.close)


def _digest(population: Population) -> bytes:
    return hashlib.sha256(population.serialize()).digest()
