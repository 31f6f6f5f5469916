"""Database backends: DuckDB embedded, PostgreSQL, Apache Spark, and a fake for tests.

A connector names its database by URL, as audit stores are named
(`oversight.audit.stores.open_store`): the URL's scheme picks the backend and its dialect
(`SCHEMES`), `open_backend` opens it. `duckdb:///` is followed by the file's path as written
(`duckdb:///cdm.duckdb` relative, `duckdb:////srv/cdm.duckdb` absolute, as SQLAlchemy spells
it), and a bare path is a DuckDB file too; `spark:///` by a directory of Parquet tables (a
local Spark session), and `sc://HOST:PORT` is a Spark Connect server, as pyspark spells it.
A URL is never shown with its password or token (`DatabaseURL.__str__`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from connectors.backends.base import Backend, CohortRun, PersonIndexes
from connectors.backends.schemas import SchemaLayout
from connectors.compiler import DUCKDB, POSTGRES, SPARK, Dialect
from schema.errors import ConfigError


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """How to open a backend: what each engine takes from the connector's settings."""

    threads: int = 2  # DuckDB's worker threads; a local Spark session's cores
    connections: int = 4  # PostgreSQL's pool size
    layout: SchemaLayout | None = None  # the schemas of a server's tables


@dataclass(frozen=True, slots=True)
class Scheme:
    """One URL scheme: the dialect its backend speaks and how to open it. `file`: the URL
    names a local file, beside which the node's state and audit trail go by default;
    `schemas`: its tables may live in schemas of their own (`SchemaLayout`)."""

    dialect: Dialect
    open: Callable[[DatabaseURL, BackendOptions], Backend]
    file: bool = False
    schemas: bool = False


@dataclass(frozen=True, slots=True, repr=False)
class DatabaseURL:
    """A database URL whose scheme is one of `SCHEMES` (`database_url` checks it). `url`
    goes to the driver; printed, it is masked."""

    url: str
    scheme: str

    @property
    def kind(self) -> Scheme:
        return SCHEMES[self.scheme]

    @property
    def dialect(self) -> Dialect:
        return self.kind.dialect

    @property
    def path(self) -> Path | None:
        """The database file, for a scheme naming one."""
        if not self.kind.file:
            return None
        return Path(self.url.removeprefix(f"{self.scheme}:///"))

    def __str__(self) -> str:
        return password_masked(self.url)

    def __repr__(self) -> str:
        return f"DatabaseURL({password_masked(self.url)!r})"


def _open_duckdb(url: DatabaseURL, options: BackendOptions) -> Backend:
    from connectors.backends.duckdb import DuckDBBackend

    assert url.path is not None  # a file scheme
    return DuckDBBackend(url.path, threads=options.threads)


def _open_postgres(url: DatabaseURL, options: BackendOptions) -> Backend:
    from connectors.backends.postgres import PostgresBackend

    return PostgresBackend(url.url, connections=options.connections, layout=options.layout)


def _open_spark_local(url: DatabaseURL, options: BackendOptions) -> Backend:
    from connectors.backends.spark import SparkBackend

    assert url.path is not None  # a file scheme: the directory of Parquet tables
    return SparkBackend(parquet=url.path, threads=options.threads)


def _open_spark_connect(url: DatabaseURL, options: BackendOptions) -> Backend:
    from connectors.backends.spark import SparkBackend

    return SparkBackend(connect=url.url, threads=options.threads, layout=options.layout)


POSTGRESQL: Final = Scheme(POSTGRES, _open_postgres, schemas=True)
SCHEMES: Final[Mapping[str, Scheme]] = {
    "duckdb": Scheme(DUCKDB, _open_duckdb, file=True),
    "postgresql": POSTGRESQL,
    "postgres": POSTGRESQL,
    "spark": Scheme(SPARK, _open_spark_local, file=True),
    "sc": Scheme(SPARK, _open_spark_connect, schemas=True),
}
# Spark Connect's parameters after the port (`sc://host:15002/;token=…;user_id=…`): the
# token is a secret.
_SECRET_PARAMETER: Final = re.compile(r"(;token=)[^;]*", re.IGNORECASE)
# A URL without a scheme is the path of a DuckDB file.
BARE_PATH: Final = "duckdb"


def password_masked(url: str) -> str:
    """`url` with its password, if any, replaced by `***` (and a Spark Connect token): what
    logs and errors may show."""
    url = _SECRET_PARAMETER.sub(r"\1***", url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL urllib can read: show none of what may follow its scheme
        scheme, sep, _ = url.partition("://")
        return f"{scheme}://***" if sep else "***"
    if password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


def database_url(url: str) -> DatabaseURL:
    """`url` checked: its scheme one of `SCHEMES`, or none at all (a DuckDB file's path).
    Raises `ConfigError` naming the schemes there are, the URL shown without its password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return DatabaseURL(f"{BARE_PATH}:///{url}", BARE_PATH)
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        supported = ", ".join(f"{name}://" for name in SCHEMES)
        raise ConfigError(
            f"the database {password_masked(url)} has a scheme Tessera has no backend for: "
            f"expected {supported} or the path of a DuckDB file"
        )
    if SCHEMES[scheme].file and not rest.startswith("/"):
        raise ConfigError(f"the database {password_masked(url)}: expected {scheme}:///PATH")
    return DatabaseURL(f"{scheme}://{rest}", scheme)


def open_backend(url: str | DatabaseURL, options: BackendOptions | None = None) -> Backend:
    """The backend for the database at `url` (nothing is opened before its first use)."""
    checked = url if isinstance(url, DatabaseURL) else database_url(url)
    return checked.kind.open(checked, options or BackendOptions())


__all__ = [
    "SCHEMES",
    "Backend",
    "BackendOptions",
    "CohortRun",
    "DatabaseURL",
    "PersonIndexes",
    "Scheme",
    "database_url",
    "open_backend",
    "password_masked",
]
