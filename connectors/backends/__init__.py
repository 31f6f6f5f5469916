"""Database backends: DuckDB embedded, PostgreSQL, and a fake for tests."""

from connectors.backends.base import Backend, CohortRun, PersonIds

__all__ = ["Backend", "CohortRun", "PersonIds"]
