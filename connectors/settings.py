"""The connector's settings: every `TESSERA_CONNECTOR_*` variable is one field below, its
description what `tessera connector serve --help` prints (`serving.settings`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from connectors.backends import SCHEMES, DatabaseURL, database_url
from connectors.backends.schemas import SCHEMA_NAME, SchemaLayout
from connectors.compiler import SPARK
from policies.live import DEFAULT_RELOAD_S, MAX_RELOAD_S, MIN_RELOAD_S
from schema.codes import Jurisdiction
from schema.errors import ConfigError, SettingsError
from serving.settings import ServiceSettings, options
from trust.keys import ALGORITHMS, Algorithm
from trust.keysource import check_jwks_url
from trust.store import check_redis_url

__all__ = ["ConnectorSettings", "SettingsError"]

log = logging.getLogger(__name__)

PREFIX: Final = "TESSERA_CONNECTOR_"
DEFAULT_GATEWAY_ISSUER: Final = "tessera-gateway"


def _jurisdiction(raw: Any) -> Any:
    if not isinstance(raw, str) or isinstance(raw, Jurisdiction):
        return raw
    try:
        return Jurisdiction(raw.upper())
    except ValueError:
        raise ValueError(f"{raw!r} is not an EU/EEA ISO 3166-1 alpha-2 code") from None


def _keys(raw: Any) -> Any:
    """`kid=path.pem,kid2=path2.pem` from the environment; a mapping from the command line."""
    if not isinstance(raw, str):
        return raw
    keys: dict[str, Path] = {}
    for item in raw.split(","):
        kid, sep, path = item.strip().partition("=")
        if not sep or not kid.strip() or not path.strip():
            raise ValueError(f"expected kid=path.pem, got {item.strip()!r}")
        if kid.strip() in keys:
            raise ValueError(f"key id {kid.strip()!r} appears twice")
        keys[kid.strip()] = Path(path.strip())
    return keys


def _algorithms(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    names = tuple(dict.fromkeys(a.strip() for a in raw.split(",") if a.strip()))
    if not names or any(a not in ALGORITHMS for a in names):
        raise ValueError(f"expected some of {', '.join(ALGORITHMS)}")
    return names


class ConnectorSettings(ServiceSettings):
    """Settings of one connector. Build it with `ConnectorSettings.from_env`. Tracing is
    configured by the standard `OTEL_*` variables (see `oversight.tracing`)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX)
    OPTIONS: ClassVar = options(
        "jurisdiction database dsn cdm_schema vocabulary_schema audit_db ledger ledger_schema",
        state_dir="--state",
    )

    jurisdiction: Annotated[Jurisdiction, BeforeValidator(_jurisdiction)] = Field(
        description="ISO code of the node's jurisdiction, e.g. FR; picks the disclosure profile "
        "and the requests the node accepts."
    )
    # A URL, or a DuckDB file's path; `target` is it checked and read.
    database: str | Path | None = Field(
        None,
        description="The OMOP CDM database, by URL (required); its scheme picks the backend "
        "(connectors.backends.SCHEMES): duckdb:///PATH for a DuckDB file, opened read-only "
        "(duckdb:///cdm.duckdb relative, duckdb:////srv/cdm.duckdb absolute), "
        "postgresql://USER@HOST/DB for PostgreSQL, sc://HOST:PORT for a Spark cluster through "
        "Spark Connect (its token in SPARK_CONNECT_AUTHENTICATE_TOKEN), or spark:///PATH for a "
        "local Spark session over a directory of Parquet tables (the spark extra). A bare path "
        "is a DuckDB file.",
    )
    dsn: str | None = Field(None, description="Deprecated alias of DATABASE, for a PostgreSQL URL.")
    cdm_schema: str | None = Field(
        None,
        description="With PostgreSQL or Spark Connect, the schema (Spark: database) of the "
        "OMOP CDM tables and of Tessera's "
        "tables beside them (e.g. cdm); every table the node reads is then qualified with its "
        "schema, whatever the connection's search_path. Default: none, the tables are found "
        "through the search_path (usually public).",
    )
    vocabulary_schema: str | None = Field(
        None,
        description="With PostgreSQL or Spark Connect, the schema of the standardised "
        "vocabularies (concept, "
        "concept_ancestor, ...; the OHDSI layout keeps them apart, e.g. vocab). Default: the "
        "CDM schema.",
    )
    db_connections: int = Field(4, description="PostgreSQL pool size.")
    ledger: Literal["beside", "engine"] = Field(
        "beside",
        description="Where the privacy ledger keeps each person's spend: beside (files in the "
        "state directory; each question's person indexes come to the connector and the persons "
        "out of budget go back) or engine (tables of the Spark database, spark:/// or sc:// "
        "only: admission and charges are statements there, and no person's index leaves the "
        "engine; see connectors.backends.spark_ledger).",
    )
    ledger_schema: str | None = Field(
        None,
        description="With LEDGER=engine on a Spark cluster (sc://), the database of the "
        "ledger's tables (e.g. tessera_ledger), which the connector's principal alone may "
        "read and write; created with its tables when missing. A local session (spark:///) "
        "keeps them in the state directory instead.",
    )
    node_id: str = Field(
        "",
        description="This node's id, the aud the gateway's request tokens must carry. Default "
        "tessera-node-<jurisdiction in lower case>.",
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8401, description="Port to listen on (0 picks a free one).")
    gateway_issuer: str = Field(
        DEFAULT_GATEWAY_ISSUER, description="The iss of the gateway's request tokens."
    )
    gateway_keys: Annotated[Mapping[str, Path], NoDecode, BeforeValidator(_keys)] = Field(
        default_factory=dict,
        description="The pinned gateway public keys as kid=path.pem,kid2=path2.pem (Ed25519, "
        "PEM SubjectPublicKeyInfo). Several keys are valid at once while the gateway's key is "
        "rotated.",
    )
    gateway_jwks: Path | None = Field(
        None,
        description="A JWKS file of pinned gateway keys (as written by `tessera keys jwks` or "
        "`tessera keys rotate`), re-read every minute so that a rotation needs no restart; "
        "with GATEWAY_KEYS too, both are trusted. Without any gateway key the node is not ready "
        "and refuses every query.",
    )
    hdab_issuer: str = Field(
        "",
        description="The iss of this jurisdiction's HDAB, whose tokens carry the researchers' "
        "approvals. Required with any HDAB key.",
    )
    hdab_jwks_file: Path | None = Field(
        None,
        description="The HDAB's keys as a JWKS file; exactly one of HDAB_JWKS_FILE, "
        "HDAB_JWKS_URL and HDAB_PUBLIC_KEY. Without HDAB keys the node is not ready and refuses "
        "every query (it cannot check approvals).",
    )
    hdab_jwks_url: str | None = Field(
        None,
        description="The HDAB's keys as a JWKS URL (https; http only on loopback), refreshed in "
        "the background.",
    )
    hdab_public_key: Path | None = Field(None, description="The HDAB's key, a PEM file.")
    hdab_algorithms: Annotated[tuple[Algorithm, ...], NoDecode, BeforeValidator(_algorithms)] = (
        Field(
            ("EdDSA",),
            description="The algorithms the HDAB signs with, comma-separated (EdDSA, ES256, "
            "RS256, PS256).",
        )
    )
    approval_audience: str = Field(
        "",
        description="The aud of approval tokens (the gateway's id). Default: the gateway issuer.",
    )
    redis_url: str | None = Field(
        None,
        description="redis://host:port/db; when set, the replay cache lives in Redis so that "
        "every replica of this node refuses a request any of them has seen. Default: "
        "replay.sqlite3 in the state directory (this host's processes; kept across restarts).",
    )
    redis_prefix: str = Field("tessera:", description="Prefix of the Redis keys.")
    threads: int = Field(
        2,
        description="Database worker threads. The node takes four questions per thread into "
        "its database work at once, at most half of them one researcher's; the others wait "
        "their turn by researcher (schema.fair_queue).",
    )
    policies: Path | None = Field(
        None,
        description="Directory of the EU baseline and national policy files. Default: the "
        "files shipped with Tessera (policies/layers).",
    )
    node_policy: Path | None = Field(
        None,
        description="This hub's own policy layer (TOML, see "
        "policies/layers/node.example.toml); it can only tighten, and has the final veto. Its "
        "node.datasets are the datasets the node serves (a permit must name one of them); "
        "without any, the node serves one dataset named after its node id.",
    )
    policy_reload_s: float = Field(
        DEFAULT_RELOAD_S,
        description="Seconds between two looks at the policy files and the node layer; a "
        "change (a revoked permit, a tightened rule) is applied without a restart, at once on "
        "SIGHUP. A change that fails validation is not applied: the previous policy stays in "
        "force and /readyz says why.",
    )
    state_dir: Path | None = Field(
        None,
        description="The node's state directory (created when missing): the privacy ledger "
        "(each person's spend per applicant), the answers drawn so far, the request ids seen "
        "(without Redis: a request is never answered twice, restarts included), and the person "
        "index `tessera connector prepare --state` keeps there. Keep it across restarts, "
        "upgrades and data reloads, and back it up: a ledger lost gives every applicant a new "
        "budget. Default: next to the DuckDB database, <database without suffix>.state; "
        "required with PostgreSQL.",
    )
    audit_db: str = Field(
        "",
        description="The node's audit trail, an SQLite file or a postgresql:// URL. Default: "
        "<database name>.audit.sqlite3 beside the DuckDB database; required with "
        "PostgreSQL.",
    )
    audit_key: Path | None = Field(
        None,
        description="Ed25519 private key (PKCS8 PEM) that signs the audit chain's heads. "
        "Without it, the node is not ready and refuses every query.",
    )
    pool_key: Path | None = Field(
        None,
        description="This node's X25519 private key (PKCS8 PEM, `tessera keys generate NAME "
        "--kind x25519`) for secure pooling across borders. With POOL_PEERS only; without both, "
        "the node answers every question nationally and refuses pooled rounds (POOL_REFUSED).",
    )
    pool_peers: Path | None = Field(
        None,
        description="The pooling registry, a JSON file of every node's X25519 public key by "
        "node id (`tessera keys registry`), the same file at every node; it must list this "
        "node with the public half of POOL_KEY. Re-read when it changes, no restart.",
    )
    query_timeout_s: float = Field(
        30.0,
        description="Seconds one query may run; past that the database statement is "
        "interrupted and the gateway gets QUERY_TIMEOUT.",
    )
    shutdown_timeout_s: float = Field(
        10.0,
        description="On SIGTERM, seconds in-flight queries may take to finish before they are "
        "cancelled.",
    )

    @classmethod
    def missing(cls, values: Mapping[str, Any]) -> list[str]:
        problems = super().missing(values)
        describe = cls.describe
        database: str | Path | None = values.get("database")
        dsn: str | None = values.get("dsn")
        if database is not None and dsn is not None:
            problems.append(cls._both_given())
        elif database is None and dsn is None:
            problems.append(f"{describe('database')} is required")
        else:
            try:
                given = database if database is not None else dsn
                assert given is not None
                target = database_url(os.fspath(given))
            except ConfigError as exc:
                problems.append(f"{describe('database')}: {exc}")
            else:
                problem = cls._beside_problem(
                    target, values.get("state_dir"), values.get("audit_db")
                )
                if problem:
                    problems.append(problem)
        return problems

    @classmethod
    def _beside_problem(
        cls, target: DatabaseURL, state_dir: object, audit_db: object
    ) -> str | None:
        """What is missing for a database that is not a file: a node's ledger and audit trail
        go beside a DuckDB file by default, but a server has no beside. Names all of it."""
        if target.path is not None:
            return None
        missing = [
            n for n, given in (("state_dir", state_dir), ("audit_db", audit_db)) if not given
        ]
        if not missing:
            return None
        return (
            f"with a {target.scheme}:// {cls.describe('database')} also give "
            f"{' and '.join(map(cls.describe, missing))}"
        )

    @classmethod
    def _both_given(cls) -> str:
        database, dsn = cls.describe("database"), cls.describe("dsn")
        return f"give {database} only: {dsn} is its deprecated alias"

    @model_validator(mode="before")
    @classmethod
    def _alias(cls, values: Any) -> Any:
        # The deprecated `dsn` is the database's URL by another name.
        if isinstance(values, dict) and values.get("dsn") is not None:
            if values.get("database") is not None:
                raise SettingsError(cls._both_given())
            log.warning(
                "%s is deprecated: give the database's URL as %s",
                cls.describe("dsn"),
                cls.describe("database"),
            )
            values = {**values, "database": values["dsn"], "dsn": None}
        return values

    @model_validator(mode="after")
    def _checked(self) -> Self:
        describe, variable = self.describe, self.variable
        if not self.node_id:
            object.__setattr__(self, "node_id", f"tessera-node-{self.jurisdiction.value.lower()}")
        target = self.target
        problem = self._beside_problem(target, self.state_dir, self.audit_db)
        if problem:
            raise SettingsError(problem)
        if not target.kind.schemas and (
            self.cdm_schema is not None or self.vocabulary_schema is not None
        ):
            raise SettingsError(
                f"{describe('cdm_schema')} and {describe('vocabulary_schema')} go with a "
                f"{describe('database')} of schemas ({_schema_schemes()}) only"
            )
        if target.path is not None:
            if self.state_dir is None:
                default = target.path.with_name(f"{target.path.stem}.state")
                object.__setattr__(self, "state_dir", default)
            if not self.audit_db:
                beside = target.path.with_name(f"{target.path.stem}.audit.sqlite3")
                object.__setattr__(self, "audit_db", str(beside))
        if self.vocabulary_schema is not None and self.cdm_schema is None:
            raise SettingsError(f"{describe('vocabulary_schema')} needs {describe('cdm_schema')}")
        if self.cdm_schema is not None:
            try:
                SchemaLayout(self.cdm_schema, self.vocabulary_schema or self.cdm_schema)
            except ValueError as exc:
                raise SettingsError(f"{describe('cdm_schema')}: {exc}") from None
        self._check_ledger(target)
        if (self.pool_key is None) != (self.pool_peers is None):
            raise SettingsError(f"{variable('pool_key')} and {variable('pool_peers')} go together")
        if not self.approval_audience:
            object.__setattr__(self, "approval_audience", self.gateway_issuer)
        sources = [self.hdab_jwks_file, self.hdab_jwks_url, self.hdab_public_key]
        if sum(s is not None for s in sources) > 1:
            raise SettingsError(
                f"{PREFIX}HDAB_JWKS_FILE, {PREFIX}HDAB_JWKS_URL and {PREFIX}HDAB_PUBLIC_KEY "
                "exclude each other"
            )
        if any(s is not None for s in sources) and not self.hdab_issuer:
            raise SettingsError(f"{variable('hdab_issuer')} is required with an HDAB key")
        if self.hdab_jwks_url is not None:
            try:
                check_jwks_url(self.hdab_jwks_url)
            except ValueError as exc:
                raise SettingsError(f"{variable('hdab_jwks_url')} {exc}") from None
        if not self.hdab_algorithms:
            raise SettingsError(
                f"{variable('hdab_algorithms')} must be some of {', '.join(ALGORITHMS)}"
            )
        if self.redis_url is not None:
            try:
                check_redis_url(self.redis_url)
            except ValueError as exc:
                raise SettingsError(f"{variable('redis_url')} {exc}") from None
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"{variable('port')} must be between 0 and 65535, not {self.port}")
        if not 1 <= self.threads <= 64:
            raise SettingsError(
                f"{variable('threads')} must be between 1 and 64, not {self.threads}"
            )
        if not 0 < self.query_timeout_s <= 3600:
            raise SettingsError(f"{variable('query_timeout_s')} must lie in (0, 3600] seconds")
        if not MIN_RELOAD_S <= self.policy_reload_s <= MAX_RELOAD_S:
            raise SettingsError(
                f"{variable('policy_reload_s')} must lie in [{MIN_RELOAD_S:g}, {MAX_RELOAD_S:g}]"
                " seconds"
            )
        if not 0 <= self.shutdown_timeout_s <= 3600:
            raise SettingsError(f"{variable('shutdown_timeout_s')} must lie in [0, 3600] seconds")
        return self

    def _check_ledger(self, target: DatabaseURL) -> None:
        describe = self.describe
        if self.ledger == "engine" and target.dialect is not SPARK:
            raise SettingsError(
                f"{describe('ledger')} engine needs a Spark {describe('database')} "
                "(spark:/// or sc://)"
            )
        cluster = self.ledger == "engine" and target.path is None
        if cluster and self.ledger_schema is None:
            raise SettingsError(
                f"{describe('ledger')} engine on a cluster needs {describe('ledger_schema')}"
            )
        if self.ledger_schema is not None:
            if not cluster:
                raise SettingsError(
                    f"{describe('ledger_schema')} goes with {describe('ledger')} engine on a "
                    "Spark cluster (sc://) only"
                )
            if not SCHEMA_NAME.match(self.ledger_schema):
                raise SettingsError(f"{describe('ledger_schema')} is not a database name")

    @property
    def target(self) -> DatabaseURL:
        """The database, its URL checked: which backend and dialect, which file."""
        if self.database is None:
            raise SettingsError(f"{self.describe('database')} is required")
        try:
            return database_url(os.fspath(self.database))
        except ConfigError as exc:
            raise SettingsError(f"{self.describe('database')}: {exc}") from None

    @property
    def layout(self) -> SchemaLayout | None:
        """Where a PostgreSQL node's tables are, when its schemas are given."""
        if self.cdm_schema is None:
            return None
        return SchemaLayout(self.cdm_schema, self.vocabulary_schema or self.cdm_schema)


def _schema_schemes() -> str:
    return ", ".join(f"{name}://" for name, scheme in SCHEMES.items() if scheme.schemas)
