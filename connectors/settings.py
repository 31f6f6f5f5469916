"""The connector's settings, read from the environment in one place."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from connectors.backends import SCHEMES, DatabaseURL, database_url
from connectors.backends.schemas import SchemaLayout
from policies.live import DEFAULT_RELOAD_S, MAX_RELOAD_S, MIN_RELOAD_S
from schema.codes import Jurisdiction
from schema.errors import ConfigError, SettingsError
from trust.keys import ALGORITHMS, Algorithm
from trust.keysource import check_jwks_url
from trust.store import check_redis_url

log = logging.getLogger(__name__)

PREFIX: Final = "TESSERA_CONNECTOR_"
DEFAULT_GATEWAY_ISSUER: Final = "tessera-gateway"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorSettings:
    """Settings of one connector, from `TESSERA_CONNECTOR_*` environment variables:

    - `TESSERA_CONNECTOR_JURISDICTION` (required): ISO code of the node's jurisdiction, e.g.
      `FR`; picks the disclosure profile and the requests the node accepts.
    - `TESSERA_CONNECTOR_NODE_ID`: this node's id, the `aud` the gateway's request tokens
      must carry. Default `tessera-node-<jurisdiction in lower case>`.
    - `TESSERA_CONNECTOR_DATABASE` (required): the OMOP CDM database, by URL; its scheme
      picks the backend (`connectors.backends.SCHEMES`): `duckdb:///PATH` for a DuckDB file,
      opened read-only (`duckdb:///cdm.duckdb` relative, `duckdb:////srv/cdm.duckdb`
      absolute), or `postgresql://USER@HOST/DB` for PostgreSQL. A bare path is a DuckDB
      file. `TESSERA_CONNECTOR_DSN` (`--dsn`) is a deprecated alias, for a PostgreSQL URL.
    - `TESSERA_CONNECTOR_CDM_SCHEMA`: with PostgreSQL, the schema of the OMOP CDM
      tables and of Tessera's tables beside them (e.g. `cdm`); every table the node reads is
      then qualified with its schema, whatever the connection's `search_path`. Default: none,
      the tables are found through the `search_path` (usually `public`).
    - `TESSERA_CONNECTOR_VOCABULARY_SCHEMA`: with PostgreSQL, the schema of the standardised
      vocabularies (`concept`, `concept_ancestor`, ...; the OHDSI layout keeps them apart,
      e.g. `vocab`). Default: the CDM schema.
    - `TESSERA_CONNECTOR_DB_CONNECTIONS`: PostgreSQL pool size. Default `4`.
    - `TESSERA_CONNECTOR_HOST`: address to listen on. Default `127.0.0.1`.
    - `TESSERA_CONNECTOR_PORT`: port to listen on. Default `8401`.
    - `TESSERA_CONNECTOR_GATEWAY_ISSUER`: the `iss` of the gateway's request tokens. Default
      `tessera-gateway`.
    - `TESSERA_CONNECTOR_GATEWAY_KEYS`: the pinned gateway public keys as
      `kid=path.pem,kid2=path2.pem` (Ed25519, PEM SubjectPublicKeyInfo). Several keys are
      valid at once while the gateway's key is rotated.
    - `TESSERA_CONNECTOR_GATEWAY_JWKS`: a JWKS file of pinned gateway keys (as written by
      `tessera keys jwks` or `tessera keys rotate`), re-read every minute so that a rotation
      needs no restart; with `GATEWAY_KEYS` too, both are trusted. Without any gateway key the
      node is not ready and refuses every query.
    - `TESSERA_CONNECTOR_HDAB_ISSUER`: the `iss` of this jurisdiction's HDAB, whose tokens
      carry the researchers' approvals. Required with any HDAB key.
    - `TESSERA_CONNECTOR_HDAB_JWKS_FILE`, `TESSERA_CONNECTOR_HDAB_JWKS_URL` (https; http only
      on loopback) or `TESSERA_CONNECTOR_HDAB_PUBLIC_KEY` (PEM): the HDAB's keys, exactly one
      of the three. A JWKS is refreshed in the background. Without HDAB keys the node is not
      ready and refuses every query (it cannot check approvals).
    - `TESSERA_CONNECTOR_HDAB_ALGORITHMS`: the algorithms the HDAB signs with, comma-separated
      (`EdDSA`, `ES256`, `RS256`, `PS256`). Default `EdDSA`.
    - `TESSERA_CONNECTOR_APPROVAL_AUDIENCE`: the `aud` of approval tokens (the gateway's id).
      Default: the gateway issuer.
    - `TESSERA_CONNECTOR_REDIS_URL`: `redis://host:port/db`; when set, the replay cache lives
      in Redis so that every replica of this node refuses a request any of them has seen.
      Default: `replay.sqlite3` in the state directory (this host's processes; kept across
      restarts).
    - `TESSERA_CONNECTOR_REDIS_PREFIX`: prefix of the Redis keys. Default `tessera:`.
    - `TESSERA_CONNECTOR_THREADS`: database worker threads. Default `2`. The node takes four
      questions per thread into its database work at once, at most half of them one
      researcher's; the others wait their turn by researcher (`schema.fair_queue`).
    - `TESSERA_CONNECTOR_POLICIES`: directory of the EU baseline and national policy files.
      Default: the files shipped with Tessera (`policies/layers`).
    - `TESSERA_CONNECTOR_NODE_POLICY`: this hub's own policy layer (TOML, see
      `policies/layers/node.example.toml`); it can only tighten, and has the final veto. Its
      `node.datasets` are the datasets the node serves (a permit must name one of them);
      without any, the node serves one dataset named after its node id.
    - `TESSERA_CONNECTOR_POLICY_RELOAD_S`: seconds between two looks at the policy files and
      the node layer; a change (a revoked permit, a tightened rule) is applied without a
      restart, at once on SIGHUP. A change that fails validation is not applied: the previous
      policy stays in force and `/readyz` says why. Default `5`.
    - `TESSERA_CONNECTOR_STATE_DIR`: the node's state directory (created when missing): the
      privacy ledger (each person's spend per applicant), the answers drawn so far, the
      request ids seen (without Redis: a request is never answered twice, restarts
      included), and the person index `tessera connector prepare --state` keeps there.
      Keep it across restarts, upgrades and data reloads, and back it up: a ledger lost
      gives every applicant a new budget. Default: next to the DuckDB database,
      `<database without suffix>.state`; required with PostgreSQL.
    - `TESSERA_CONNECTOR_AUDIT_DB`: the node's audit trail, an SQLite file or a
      `postgresql://` URL. Default: `<database name>.audit.sqlite3` beside the DuckDB
      database; required with PostgreSQL.
    - `TESSERA_CONNECTOR_AUDIT_KEY`: Ed25519 private key (PKCS8 PEM) that signs the audit
      chain's heads. Without it, the node is not ready and refuses every query.
    - `TESSERA_CONNECTOR_POOL_KEY`: this node's X25519 private key (PKCS8 PEM, `tessera keys
      generate NAME --kind x25519`) for secure pooling across borders. With
      `TESSERA_CONNECTOR_POOL_PEERS` only; without both, the node answers every question
      nationally and refuses pooled rounds (POOL_REFUSED).
    - `TESSERA_CONNECTOR_POOL_PEERS`: the pooling registry, a JSON file of every node's X25519
      public key by node id (`tessera keys registry`), the same file at every node; it must
      list this node with the public half of `POOL_KEY`. Re-read when it changes, no restart.

    Tracing is configured by the standard `OTEL_*` variables (see `oversight.tracing`).
    - `TESSERA_CONNECTOR_QUERY_TIMEOUT_S`: seconds one query may run; past that the database
      statement is interrupted and the gateway gets `QUERY_TIMEOUT`. Default `30`.
    - `TESSERA_CONNECTOR_SHUTDOWN_TIMEOUT_S`: on SIGTERM, seconds in-flight queries may take
      to finish before they are cancelled. Default `10`.
    """

    jurisdiction: Jurisdiction
    # A URL, or a DuckDB file's path; `target` is it checked and read.
    database: str | Path
    cdm_schema: str | None = None
    vocabulary_schema: str | None = None
    db_connections: int = 4
    node_id: str = ""
    host: str = "127.0.0.1"
    port: int = 8401
    gateway_issuer: str = DEFAULT_GATEWAY_ISSUER
    gateway_keys: Mapping[str, Path] = field(default_factory=dict)
    gateway_jwks: Path | None = None
    hdab_issuer: str = ""
    hdab_jwks_file: Path | None = None
    hdab_jwks_url: str | None = None
    hdab_public_key: Path | None = None
    hdab_algorithms: tuple[Algorithm, ...] = ("EdDSA",)
    approval_audience: str = ""
    redis_url: str | None = None
    redis_prefix: str = "tessera:"
    threads: int = 2
    policies: Path | None = None
    node_policy: Path | None = None
    policy_reload_s: float = DEFAULT_RELOAD_S
    state_dir: Path | None = None
    audit_db: str = ""
    audit_key: Path | None = None
    pool_key: Path | None = None
    pool_peers: Path | None = None
    query_timeout_s: float = 30.0
    shutdown_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.node_id:
            object.__setattr__(self, "node_id", f"tessera-node-{self.jurisdiction.value.lower()}")
        target = self.target
        problem = _beside_problem(target, self.state_dir, self.audit_db)
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
        if (self.pool_key is None) != (self.pool_peers is None):
            raise SettingsError(f"{PREFIX}POOL_KEY and {PREFIX}POOL_PEERS go together")
        if not self.approval_audience:
            object.__setattr__(self, "approval_audience", self.gateway_issuer)
        sources = [self.hdab_jwks_file, self.hdab_jwks_url, self.hdab_public_key]
        if sum(s is not None for s in sources) > 1:
            raise SettingsError(
                f"{PREFIX}HDAB_JWKS_FILE, {PREFIX}HDAB_JWKS_URL and {PREFIX}HDAB_PUBLIC_KEY "
                "exclude each other"
            )
        if any(s is not None for s in sources) and not self.hdab_issuer:
            raise SettingsError(f"{PREFIX}HDAB_ISSUER is required with an HDAB key")
        if self.hdab_jwks_url is not None:
            try:
                check_jwks_url(self.hdab_jwks_url)
            except ValueError as exc:
                raise SettingsError(f"{PREFIX}HDAB_JWKS_URL {exc}") from None
        if not self.hdab_algorithms or not set(self.hdab_algorithms) <= set(ALGORITHMS):
            raise SettingsError(f"{PREFIX}HDAB_ALGORITHMS must be some of {', '.join(ALGORITHMS)}")
        if self.redis_url is not None:
            try:
                check_redis_url(self.redis_url)
            except ValueError as exc:
                raise SettingsError(f"{PREFIX}REDIS_URL {exc}") from None
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"{PREFIX}PORT must be between 0 and 65535, not {self.port}")
        if not 1 <= self.threads <= 64:
            raise SettingsError(f"{PREFIX}THREADS must be between 1 and 64, not {self.threads}")
        if not 0 < self.query_timeout_s <= 3600:
            raise SettingsError(f"{PREFIX}QUERY_TIMEOUT_S must lie in (0, 3600] seconds")
        if not MIN_RELOAD_S <= self.policy_reload_s <= MAX_RELOAD_S:
            raise SettingsError(
                f"{PREFIX}POLICY_RELOAD_S must lie in [{MIN_RELOAD_S:g}, {MAX_RELOAD_S:g}] seconds"
            )
        if not 0 <= self.shutdown_timeout_s <= 3600:
            raise SettingsError(f"{PREFIX}SHUTDOWN_TIMEOUT_S must lie in [0, 3600] seconds")

    @property
    def target(self) -> DatabaseURL:
        """The database, its URL checked: which backend and dialect, which file."""
        try:
            return database_url(os.fspath(self.database))
        except ConfigError as exc:
            raise SettingsError(f"{describe('database')}: {exc}") from None

    @property
    def layout(self) -> SchemaLayout | None:
        """Where a PostgreSQL node's tables are, when its schemas are given."""
        if self.cdm_schema is None:
            return None
        return SchemaLayout(self.cdm_schema, self.vocabulary_schema or self.cdm_schema)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> ConnectorSettings:
        """Settings from `environ` (default `os.environ`); keyword `overrides` (field names)
        win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        dsn = overrides.pop("dsn", None) or env.get(f"{PREFIX}DSN", "").strip() or None
        for name, parse in _PARSERS.items():
            variable = f"{PREFIX}{name.upper()}"
            raw = env.get(variable, "").strip()
            if name in overrides or not raw:
                continue
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{variable} is invalid: {exc}") from None
        values.update(overrides)
        problems = []
        if "jurisdiction" not in values:
            problems.append(f"{describe('jurisdiction')} is required")
        if dsn is not None and values.get("database") is not None:
            problems.append(
                f"give {describe('database')} only: {describe('dsn')} is its deprecated alias"
            )
        elif dsn is not None:
            log.warning(
                "%s is deprecated: give the database's URL as %s",
                describe("dsn"),
                describe("database"),
            )
            values["database"] = dsn
        if values.get("database") is None:
            problems.append(f"{describe('database')} is required")
        else:
            try:
                target = database_url(os.fspath(values["database"]))
            except ConfigError as exc:
                problems.append(f"{describe('database')}: {exc}")
            else:
                problem = _beside_problem(target, values.get("state_dir"), values.get("audit_db"))
                if problem:
                    problems.append(problem)
        if problems:
            raise SettingsError("; ".join(problems))
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**values)


# The `tessera connector serve` option of each setting that has one.
_OPTIONS: Final = {
    "jurisdiction": "--jurisdiction",
    "database": "--database",
    "dsn": "--dsn",
    "cdm_schema": "--cdm-schema",
    "vocabulary_schema": "--vocabulary-schema",
    "state_dir": "--state",
    "audit_db": "--audit-db",
}


def _beside_problem(target: DatabaseURL, state_dir: object, audit_db: object) -> str | None:
    """What is missing for a database that is not a file: a node's ledger and audit trail
    go beside a DuckDB file by default, but a server has no beside. Names all of it."""
    if target.path is not None:
        return None
    missing = [n for n, given in (("state_dir", state_dir), ("audit_db", audit_db)) if not given]
    if not missing:
        return None
    return (
        f"with a {target.scheme}:// {describe('database')} also give "
        f"{' and '.join(map(describe, missing))}"
    )


def _schema_schemes() -> str:
    return ", ".join(f"{name}://" for name, scheme in SCHEMES.items() if scheme.schemas)


def describe(name: str) -> str:
    """A setting as an operator meets it: its option (if any) and its variable."""
    variable = f"{PREFIX}{name.upper()}"
    option = _OPTIONS.get(name)
    return f"{option} ({variable})" if option else variable


def _jurisdiction(raw: str) -> Jurisdiction:
    try:
        return Jurisdiction(raw.upper())
    except ValueError:
        raise ValueError(f"{raw!r} is not an EU/EEA ISO 3166-1 alpha-2 code") from None


def _port(raw: str) -> int:
    return int(raw)


def _keys(raw: str) -> dict[str, Path]:
    keys: dict[str, Path] = {}
    for item in raw.split(","):
        kid, sep, path = item.strip().partition("=")
        if not sep or not kid.strip() or not path.strip():
            raise ValueError(f"expected kid=path.pem, got {item.strip()!r}")
        if kid.strip() in keys:
            raise ValueError(f"key id {kid.strip()!r} appears twice")
        keys[kid.strip()] = Path(path.strip())
    return keys


def _algorithms(raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(a.strip() for a in raw.split(",") if a.strip()))
    unknown = [a for a in names if a not in ALGORITHMS]
    if unknown or not names:
        raise ValueError(f"expected some of {', '.join(ALGORITHMS)}")
    return names


_PARSERS: Final[dict[str, Callable[[str], Any]]] = {
    "jurisdiction": _jurisdiction,
    "node_id": str,
    "database": str,
    "cdm_schema": str,
    "vocabulary_schema": str,
    "db_connections": int,
    "host": str,
    "port": _port,
    "gateway_issuer": str,
    "gateway_keys": _keys,
    "gateway_jwks": Path,
    "hdab_issuer": str,
    "hdab_jwks_file": Path,
    "hdab_jwks_url": str,
    "hdab_public_key": Path,
    "hdab_algorithms": _algorithms,
    "approval_audience": str,
    "redis_url": str,
    "redis_prefix": str,
    "threads": int,
    "policies": Path,
    "node_policy": Path,
    "policy_reload_s": float,
    "state_dir": Path,
    "audit_db": str,
    "audit_key": Path,
    "pool_key": Path,
    "pool_peers": Path,
    "query_timeout_s": float,
    "shutdown_timeout_s": float,
}
