"""The SQL compiler: a `CohortQuery` becomes sqlglot syntax trees and then SQL text in which
every value is a bound parameter and every name comes from an allow-list (`names`)."""

from connectors.compiler.cohort import compile_query
from connectors.compiler.compiled import (
    DIALECTS,
    CompiledQuery,
    ConceptLookup,
    ConceptSet,
    CountCell,
    PopulationQuery,
    Row,
    Statement,
    TableLayout,
)
from connectors.compiler.concepts import ConceptResolver, compile_concept_lookup

__all__ = [
    "DIALECTS",
    "CompiledQuery",
    "ConceptLookup",
    "ConceptResolver",
    "ConceptSet",
    "CountCell",
    "PopulationQuery",
    "Row",
    "Statement",
    "TableLayout",
    "compile_concept_lookup",
    "compile_query",
]
