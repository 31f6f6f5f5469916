"""Where a PostgreSQL hub keeps its tables: the OHDSI layout puts the CDM (and Tessera's
tables beside it) in one schema and the standardised vocabularies in another (`cdm` and
`vocab`, say). The compiler names tables unqualified; `qualify` rewrites each statement's
syntax tree once per statement text, so that every table the compiler names reads from its
schema, whatever the connection's `search_path`."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final

import sqlglot
from sqlglot import exp

from connectors.compiler.dialect import POSTGRES, Dialect
from connectors.compiler.names import COHORT_TABLE, EXCLUDED_PERSONS

# The OMOP CDM 5.4 standardised vocabulary tables: in the vocabulary schema.
VOCABULARY_TABLES: Final = frozenset(
    {
        "concept",
        "concept_ancestor",
        "concept_class",
        "concept_relationship",
        "concept_synonym",
        "domain",
        "drug_strength",
        "relationship",
        "source_to_concept_map",
        "vocabulary",
    }
)
# A PostgreSQL identifier as a hub names its schemas: unquoted, so it needs no escaping.
SCHEMA_NAME: Final = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")
# Statement texts are one per query shape; a few hundred shapes cover any workload.
CACHE_SIZE: Final = 512


@dataclass(frozen=True, slots=True)
class SchemaLayout:
    """The CDM schema (Tessera's tables live there too) and the vocabulary schema."""

    cdm: str
    vocabulary: str

    def __post_init__(self) -> None:
        for name in (self.cdm, self.vocabulary):
            if not SCHEMA_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a schema name (lower-case letters, digits, _ and $)"
                )

    def schema_of(self, table: str) -> str:
        return self.vocabulary if table in VOCABULARY_TABLES else self.cdm


def qualify(sql: str, layout: SchemaLayout, dialect: Dialect = POSTGRES) -> str:
    """`sql` with every unqualified table placed in its schema; common table expressions,
    table functions, a question's own temporary relations (`SESSION_RELATIONS`) and tables
    already qualified (`information_schema.tables`) unchanged."""
    return _qualify(sql, layout, dialect)


# Relations a backend makes for one question in its session, never in a schema.
SESSION_RELATIONS: Final = frozenset({COHORT_TABLE, EXCLUDED_PERSONS})


@functools.lru_cache(maxsize=CACHE_SIZE)
def _qualify(sql: str, layout: SchemaLayout, dialect: Dialect) -> str:
    tree = sqlglot.parse_one(sql, dialect=dialect.sqlglot)
    local = {cte.alias_or_name for cte in tree.find_all(exp.CTE)} | SESSION_RELATIONS
    for table in tree.find_all(exp.Table):
        if table.args.get("db") is None and table.name and table.name not in local:
            table.set("db", exp.to_identifier(layout.schema_of(table.name)))
    return tree.sql(dialect=dialect.sqlglot)
