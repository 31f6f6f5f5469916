"""Whether a database can serve queries: the same checks for every backend, over the
backend's own way of running a statement."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from sqlglot import exp

from connectors.backends.schemas import SchemaLayout
from connectors.compiler import Dialect, Row
from connectors.compiler.dialect import numbered
from connectors.errors import BackendFailed, BackendNotReady
from connectors.omop import (
    DATA_RELEASE_TABLE,
    OPTOUT_REGISTER_TABLE,
    OPTOUT_TABLE,
    PERSON_INDEX_TABLE,
)

PREPARE_HINT: Final = "run `tessera connector prepare` on this database"
CDM_TABLES: Final = (
    "person",
    "observation_period",
    "condition_occurrence",
    "drug_exposure",
    "measurement",
    "death",
    "visit_occurrence",
    "concept",
    "concept_ancestor",
)
TESSERA_TABLES: Final = (
    OPTOUT_TABLE,
    OPTOUT_REGISTER_TABLE,
    PERSON_INDEX_TABLE,
    DATA_RELEASE_TABLE,
)

Fetch = Callable[[str, tuple[object, ...]], Awaitable[list[Row]]]


# Generated once per dialect: sqlglot takes ~0.6 ms to print a statement, on every query.
@functools.cache
def tables_present_sql(dialect: Dialect) -> str:
    return dialect.sql(
        exp.select("table_name")
        .from_("information_schema.tables")
        .where("table_schema = current_schema()"),
        pretty=False,
    )


@dataclass(frozen=True, slots=True)
class Label:
    """A one-row table `prepare` keeps beside the CDM, naming what the answers come from."""

    what: str
    column: str
    table: str
    order: str
    missing: str


REGISTER_VERSION: Final = Label(
    "the opt-out register", "version", OPTOUT_REGISTER_TABLE, "updated_at", "no version"
)
DATA_RELEASE: Final = Label(
    "the data release", "release", DATA_RELEASE_TABLE, "prepared_at", "no label"
)


@functools.cache
def label_sql(label: Label, dialect: Dialect) -> str:
    return dialect.sql(
        exp.select(label.column).from_(label.table).order_by(f"{label.order} DESC").limit(1),
        pretty=False,
    )


@functools.cache
def tables_in_schemas_sql(dialect: Dialect) -> str:
    """The tables of two schemas (`$1`, `$2`), as `schema.table`."""
    return dialect.sql(
        exp.select(exp.func("concat", "table_schema", exp.Literal.string("."), "table_name"))
        .from_("information_schema.tables")
        .where(exp.column("table_schema").isin(numbered(1), numbered(2))),
        pretty=False,
    )


async def _present(fetch: Fetch, dialect: Dialect, layout: SchemaLayout | None) -> set[str]:
    """The tables there are: by name alone in the current schema, or as `schema.table` in
    the layout's schemas."""
    if layout is None:
        return {str(row[0]) for row in await fetch(tables_present_sql(dialect), ())}
    rows = await fetch(tables_in_schemas_sql(dialect), (layout.cdm, layout.vocabulary))
    return {str(row[0]) for row in rows}


async def check_ready(
    fetch: Fetch,
    dialect: Dialect,
    layout: SchemaLayout | None = None,
    *,
    present: Callable[[], Awaitable[set[str]]] | None = None,
) -> None:
    """Raise `BackendNotReady` naming what is missing: CDM tables, Tessera's tables, or a
    version of the opt-out register (never answer without knowing which opt-outs apply).
    With a `layout`, each table is looked for in its own schema (the OHDSI layout). An engine
    without `information_schema` (Spark) lists its tables itself (`present`: by name, or as
    `schema.table` with a `layout`)."""
    present_tables = await (_present(fetch, dialect, layout) if present is None else present())

    def placed(table: str) -> str:
        return table if layout is None else f"{layout.schema_of(table)}.{table}"

    missing_cdm = [placed(t) for t in CDM_TABLES if placed(t) not in present_tables]
    if missing_cdm:
        raise BackendNotReady(
            f"the database lacks OMOP CDM tables: {', '.join(missing_cdm)}", missing=missing_cdm
        )
    missing = [placed(t) for t in TESSERA_TABLES if placed(t) not in present_tables]
    if missing:
        raise BackendNotReady(
            f"the database lacks Tessera's tables ({', '.join(missing)}): {PREPARE_HINT}",
            missing=missing,
        )
    await register_version(fetch, dialect)
    await data_release(fetch, dialect)


async def read_label(fetch: Fetch, dialect: Dialect, label: Label) -> str:
    try:
        rows = await fetch(label_sql(label, dialect), ())
    except BackendFailed as exc:
        raise BackendNotReady(f"{label.what} cannot be read: {PREPARE_HINT}") from exc
    if not rows or rows[0][0] is None:
        raise BackendNotReady(f"{label.what} has {label.missing}: {PREPARE_HINT}")
    return str(rows[0][0])


async def register_version(fetch: Fetch, dialect: Dialect) -> str:
    return await read_label(fetch, dialect, REGISTER_VERSION)


async def data_release(fetch: Fetch, dialect: Dialect) -> str:
    return await read_label(fetch, dialect, DATA_RELEASE)
