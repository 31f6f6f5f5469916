"""The SQL compiler: a `CohortQuery` becomes sqlglot syntax trees and then SQL text in which
every value is a bound parameter and every name comes from an allow-list (`names`)."""

from connectors.compiler.cohort import compile_measured, compile_persons, compile_query
from connectors.compiler.compiled import (
    CohortTable,
    CompiledQuery,
    ConceptLookup,
    ConceptSet,
    PopulationQuery,
    Row,
    SqlStatement,
    Statement,
    TableLayout,
    TableRows,
    TabulatedCell,
)
from connectors.compiler.concepts import ConceptResolver, compile_concept_lookup
from connectors.compiler.dialect import (
    DIALECTS,
    DUCKDB,
    POSTGRES,
    SPARK,
    TRINO,
    Dialect,
    dialect_named,
)

__all__ = [
    "DIALECTS",
    "DUCKDB",
    "POSTGRES",
    "SPARK",
    "TRINO",
    "CohortTable",
    "CompiledQuery",
    "ConceptLookup",
    "ConceptResolver",
    "ConceptSet",
    "Dialect",
    "PopulationQuery",
    "Row",
    "SqlStatement",
    "Statement",
    "TableLayout",
    "TableRows",
    "TabulatedCell",
    "compile_concept_lookup",
    "compile_measured",
    "compile_persons",
    "compile_query",
    "dialect_named",
]
