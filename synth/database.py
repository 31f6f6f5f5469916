"""Writing synthetic rows into DuckDB: schema, vocabulary, and bulk inserts from numpy.

DuckDB scans a registered dict of numpy arrays directly, so a chunk of millions of rows is
inserted by one `INSERT ... SELECT` without Python-level loops or a dataframe library.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

import duckdb
import numpy as np
from numpy.typing import NDArray

from connectors.omop import CDM_DDL
from synth import vocabulary as v
from synth.arrays import MISSING, Column

# What a column to insert may hold besides numbers: strings, such as persons' source values.
Writable = Column | NDArray[np.str_]

_CHUNK_VIEW: Final = "__tessera_synth_chunk"
_EPOCH: Final = "DATE '1970-01-01'"


def create_cdm(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in CDM_DDL:
        con.execute(ddl)


def load_vocabulary(
    con: duckdb.DuckDBPyConnection, icd10_vocabulary: str = "ICD10"
) -> dict[str, int]:
    concepts = v.concepts(icd10_vocabulary)
    con.executemany(
        "INSERT INTO concept VALUES (?, ?, ?, ?, ?, ?, ?, DATE '1970-01-01', DATE '2099-12-31', "
        "NULL)",
        [
            (c.concept_id, c.name, c.domain, c.vocabulary, c.concept_class, c.standard, c.code)
            for c in concepts
        ],
    )
    ancestors = v.ancestor_rows()
    con.executemany("INSERT INTO concept_ancestor VALUES (?, ?, ?, ?)", ancestors)
    return {"concept": len(concepts), "concept_ancestor": len(ancestors)}


class IdMap:
    """Replaces ids in integer columns by a fixed mapping (ids it does not name stay)."""

    def __init__(self, mapping: Mapping[int, int]) -> None:
        moved = {k: t for k, t in mapping.items() if k != t}
        self._keys = np.array(sorted(moved), dtype=np.int64)
        self._values = np.array([moved[k] for k in sorted(moved)], dtype=np.int64)

    def __bool__(self) -> bool:
        return bool(self._keys.size)

    def __call__(self, column: NDArray[np.int64]) -> NDArray[np.int64]:
        if not self._keys.size or not column.size:
            return column
        at = np.clip(np.searchsorted(self._keys, column), 0, self._keys.size - 1)
        hit = self._keys[at] == column
        return np.where(hit, self._values[at], column)


def write_cdm_source(
    con: duckdb.DuckDBPyConnection,
    *,
    name: str,
    abbreviation: str,
    description: str,
    release: dt.date,
) -> None:
    con.execute(
        "INSERT INTO cdm_source VALUES (?, ?, ?, ?, NULL, NULL, ?, ?, 'v5.4', ?, ?)",
        [
            name,
            abbreviation,
            "Tessera synthetic data: no real persons",
            description,
            release,
            release,
            v.CDM_V54,
            v.VOCABULARY_VERSION,
        ],
    )


class TableWriter:
    """Inserts column dicts into CDM tables. Integer columns hold day numbers for DATE and
    TIMESTAMP columns and `MISSING` for NULL; `source_values` names VARCHAR columns to fill
    with the `concept_code` of a concept id column."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._types: dict[str, dict[str, str]] = {}

    def insert(
        self, table: str, columns: Mapping[str, Writable], source_values: Mapping[str, str]
    ) -> int:
        if not columns:
            return 0
        rows = len(next(iter(columns.values())))
        if rows == 0:
            return 0
        types = self._column_types(table)
        scan: dict[str, Any] = {}
        targets: list[str] = []
        values: list[str] = []
        for name, data in columns.items():
            kind = types[name]
            nullable = data.dtype.kind == "i" and bool((data == MISSING).any())
            expr = f'src."{name}"'
            scan[name] = data
            if kind in ("DATE", "TIMESTAMP"):
                scan[name] = data.astype(np.int32)  # DuckDB adds INTEGER days to a DATE
                expr = f"{_EPOCH} + {_null_if_missing(expr) if nullable else expr}"
                if kind == "TIMESTAMP":
                    expr = f"CAST({expr} AS TIMESTAMP)"
            else:
                if kind == "INTEGER" and data.dtype == np.int64 and _fits_int32(data):
                    # Half the bytes for DuckDB to scan (~8% of the generation time); a value
                    # out of range stays 64-bit, for DuckDB to refuse as before.
                    scan[name] = data.astype(np.int32)
                if nullable:
                    expr = _null_if_missing(expr)
            targets.append(f'"{name}"')
            values.append(expr)
        joins: list[str] = []
        for k, (target, id_column) in enumerate(source_values.items()):
            if id_column in columns:
                joins.append(f'LEFT JOIN concept AS c{k} ON c{k}.concept_id = src."{id_column}"')
                targets.append(f'"{target}"')
                values.append(f"c{k}.concept_code")
        # Every name here comes from this package's own tables and columns, never from input.
        sql = (
            f"INSERT INTO {table} ({', '.join(targets)}) "  # noqa: S608
            f"SELECT {', '.join(values)} FROM {_CHUNK_VIEW} AS src {' '.join(joins)}"
        )
        self._con.register(_CHUNK_VIEW, scan)
        try:
            self._con.execute(sql)
        finally:
            self._con.unregister(_CHUNK_VIEW)
        return rows

    def _column_types(self, table: str) -> dict[str, str]:
        if table not in self._types:
            found = self._con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ?",
                [table],
            ).fetchall()
            self._types[table] = {str(name): str(kind) for name, kind in found}
        return self._types[table]


def _fits_int32(data: Writable) -> bool:
    info = np.iinfo(np.int32)
    return not data.size or (info.min <= int(data.min()) and int(data.max()) <= info.max)


def _null_if_missing(expr: str) -> str:
    return f"NULLIF({expr}, {MISSING})"
