"""Backends chosen by URL: the scheme picks the backend and its dialect, a bare path is a
DuckDB file, an unknown scheme names the schemes there are, and a password is never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.backends import (
    SCHEMES,
    BackendOptions,
    DatabaseURL,
    database_url,
    open_backend,
    password_masked,
)
from connectors.backends.duckdb import DuckDBBackend
from connectors.backends.postgres import PostgresBackend
from connectors.backends.schemas import SchemaLayout
from connectors.compiler import DIALECTS, DUCKDB, POSTGRES, SPARK
from connectors.settings import ConnectorSettings
from schema.errors import ConfigError, SettingsError


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("cdm.duckdb", Path("cdm.duckdb")),
        ("/srv/hub/cdm.duckdb", Path("/srv/hub/cdm.duckdb")),
        ("duckdb:///cdm.duckdb", Path("cdm.duckdb")),
        ("duckdb:////srv/hub/cdm.duckdb", Path("/srv/hub/cdm.duckdb")),
        ("DuckDB:///data/cdm.duckdb", Path("data/cdm.duckdb")),
    ],
)
async def test_a_duckdb_file_by_path_or_url(url: str, path: Path) -> None:
    checked = database_url(url)
    assert (checked.dialect, checked.path) == (DUCKDB, path)
    backend = open_backend(url, BackendOptions(threads=3))
    assert isinstance(backend, DuckDBBackend)
    assert backend.dialect is DUCKDB
    await backend.close()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_a_postgresql_server_by_url(scheme: str) -> None:
    layout = SchemaLayout("cdm", "vocab")
    backend = open_backend(f"{scheme}://reader@db.hub/omop", BackendOptions(layout=layout))
    assert isinstance(backend, PostgresBackend)
    assert backend.dialect is POSTGRES
    assert backend.layout == layout
    assert database_url(f"{scheme}://reader@db.hub/omop").path is None
    await backend.close()


@pytest.mark.parametrize("url", ["mysql://reader:s3cret@db/omop", "sqlite:///cdm.db", "://x"])
def test_an_unknown_scheme_names_the_schemes_there_are(url: str) -> None:
    with pytest.raises(ConfigError, match="has a scheme Tessera has no backend for") as caught:
        open_backend(url)
    message = str(caught.value)
    assert message.endswith(
        "expected duckdb://, postgresql://, postgres://, spark://, sc:// or the path of a "
        "DuckDB file"
    )
    assert "s3cret" not in message


def test_a_duckdb_url_needs_its_three_slashes() -> None:
    with pytest.raises(ConfigError, match=r"expected duckdb:///PATH"):
        database_url("duckdb://cdm.duckdb")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://reader:s3cret@db.hub:5432/omop", "postgresql://reader:***@db.hub:5432/omop"),
        ("postgresql://reader:p@ss@db.hub/omop", "postgresql://reader:***@db.hub/omop"),
        ("postgresql://:s3cret@db.hub/omop", "postgresql://:***@db.hub/omop"),
        ("postgresql://reader@db.hub/omop", "postgresql://reader@db.hub/omop"),
        ("postgresql://db.hub/omop?sslmode=require", "postgresql://db.hub/omop?sslmode=require"),
        ("postgresql://reader:s3cret@[::1/omop", "postgresql://***"),
        ("cdm.duckdb", "cdm.duckdb"),
        (
            "sc://spark.hub:15002/;token=s3cret;user_id=t",
            "sc://spark.hub:15002/;token=***;user_id=t",
        ),
        (
            "sc://spark.hub:15002/;use_ssl=true;TOKEN=s3cret",
            "sc://spark.hub:15002/;use_ssl=true;TOKEN=***",
        ),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert password_masked(url) == shown
    assert "s3cret" not in password_masked(url)


def test_a_checked_url_prints_masked_and_keeps_the_password_for_the_driver() -> None:
    checked = database_url("postgresql://reader:s3cret@db.hub/omop")
    assert str(checked) == "postgresql://reader:***@db.hub/omop"
    assert checked.url == "postgresql://reader:s3cret@db.hub/omop"
    assert repr(checked) == "DatabaseURL('postgresql://reader:***@db.hub/omop')"


def test_every_scheme_opens_a_backend_of_a_registered_dialect() -> None:
    for name, scheme in SCHEMES.items():
        assert DIALECTS[scheme.dialect.name] is scheme.dialect, name
        assert isinstance(
            database_url(f"{name}:///x" if scheme.file else f"{name}://h/d"), DatabaseURL
        )


async def test_spark_by_url_a_cluster_or_local_parquet() -> None:
    """Nothing is opened (nor pyspark imported) before the first statement."""
    from connectors.backends.spark import SparkBackend

    layout = SchemaLayout("cdm", "vocab")
    cluster = open_backend("sc://spark.hub:15002/;token=s3cret", BackendOptions(layout=layout))
    assert isinstance(cluster, SparkBackend)
    assert (cluster.dialect, cluster.layout) == (SPARK, layout)
    local = database_url("spark:////srv/hub/cdm")
    assert (local.dialect, local.path) == (SPARK, Path("/srv/hub/cdm"))
    assert isinstance(open_backend(local), SparkBackend)
    with pytest.raises(ConfigError, match=r"expected spark:///PATH"):
        database_url("spark://local")
    await cluster.close()


def test_the_deprecated_dsn_is_the_database_under_another_name(tmp_path: Path) -> None:
    env = {
        "TESSERA_CONNECTOR_JURISDICTION": "FR",
        "TESSERA_CONNECTOR_DSN": "postgresql://postgres@127.0.0.1/cdm",
        "TESSERA_CONNECTOR_STATE_DIR": str(tmp_path / "state"),
        "TESSERA_CONNECTOR_AUDIT_DB": str(tmp_path / "audit.sqlite3"),
    }
    settings = ConnectorSettings.from_env(env)
    assert settings.target.scheme == "postgresql"
    assert settings.dsn is None
    both = {**env, "TESSERA_CONNECTOR_DATABASE": str(tmp_path / "cdm.duckdb")}
    with pytest.raises(SettingsError, match=r"^give --database .* only: --dsn .* deprecated"):
        ConnectorSettings.from_env(both)
