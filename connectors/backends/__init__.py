"""Database backends: DuckDB embedded, PostgreSQL, and a fake for tests."""

from connectors.backends.base import Backend, CohortRun, PersonIndexes

__all__ = ["Backend", "CohortRun", "PersonIndexes"]
