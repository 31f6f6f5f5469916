"""`open_store(url)`: the audit store a URL names, chosen by its scheme.

The stores import `oversight.audit.store` (the protocol and the tables), never this module:
only here are they all known, so the protocol and its implementations import no cycle. A
store's module is imported when its scheme is first opened (asyncpg only for PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from oversight.audit.store import AuditStore

StoreFactory = Callable[[str], AuditStore]


def _sqlite(url: str) -> AuditStore:
    from oversight.audit.sqlite import SqliteAuditStore

    return SqliteAuditStore(url.removeprefix("sqlite:///"))


def _postgres(url: str) -> AuditStore:
    from oversight.audit.postgres import PostgresAuditStore

    return PostgresAuditStore(url)


# Anything without a scheme of its own is the path of an SQLite file.
FACTORIES: Final[Mapping[str, StoreFactory]] = {
    "postgresql": _postgres,
    "postgres": _postgres,
    "sqlite": _sqlite,
}
DEFAULT: Final[StoreFactory] = _sqlite


def scheme(url: str) -> str:
    """The URL's scheme as written (`postgresql`), or "" for a path."""
    name, separator, _ = url.partition("://")
    return name if separator else ""


def is_postgres_url(url: str) -> bool:
    return FACTORIES.get(scheme(url)) is _postgres


def open_store(url: str) -> AuditStore:
    """A store for `url`: `postgresql://...` or a path of an SQLite file (created when
    missing). Nothing is opened until the first use."""
    return FACTORIES.get(scheme(url), DEFAULT)(url)
