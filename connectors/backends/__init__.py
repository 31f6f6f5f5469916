"""Database backends: DuckDB embedded, and a fake for tests. PostgreSQL comes later."""

from connectors.backends.base import Backend

__all__ = ["Backend"]
