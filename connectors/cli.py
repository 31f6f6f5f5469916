"""`tessera connector serve|prepare|copy-to-postgres|copy-to-parquet`: what a national hub
runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schema.codes import Jurisdiction
from serving.options import add_settings_help

if TYPE_CHECKING:
    from connectors.settings import ConnectorSettings

SubParsers = Any  # argparse's _SubParsersAction is private


def _gateway_key(text: str) -> tuple[str, Path]:
    kid, sep, path = text.partition("=")
    if not sep or not kid or not path:
        raise argparse.ArgumentTypeError("expected KID=PATH, e.g. gateway-1=keys/gateway.pub.pem")
    return kid, Path(path)


def register(sub: SubParsers) -> None:
    connector = sub.add_parser("connector", help="run or prepare a national node's connector")
    connector_sub = connector.add_subparsers(dest="connector_command", required=True)

    serve = connector_sub.add_parser(
        "serve",
        help="serve queries from the gateway on an OMOP CDM 5.4 database",
        description="Options override the TESSERA_CONNECTOR_* environment variables (listed "
        "below, from connectors/settings.py).",
        add_help=False,
    )
    add_settings_help(serve, _settings)
    serve.add_argument("--jurisdiction", type=Jurisdiction, metavar="CODE")
    serve.add_argument(
        "--database",
        metavar="URL",
        help="the OMOP CDM 5.4: a DuckDB file (its path or duckdb:///PATH, read-only) or "
        "postgresql://USER@HOST/DB (needs --state and --audit-db)",
    )
    serve.add_argument("--dsn", help="deprecated: give the postgresql:// URL as --database")
    serve.add_argument(
        "--cdm-schema",
        help="with PostgreSQL: the schema of the CDM tables (and Tessera's), e.g. cdm",
    )
    serve.add_argument(
        "--vocabulary-schema",
        help="with PostgreSQL: the schema of the vocabulary tables, e.g. vocab "
        "(default: --cdm-schema)",
    )
    serve.add_argument(
        "--ledger",
        choices=("beside", "engine"),
        help="where the privacy ledger keeps each person's spend: beside (files in --state, "
        "the default) or engine (tables of the Spark database: no person's index leaves it)",
    )
    serve.add_argument(
        "--ledger-schema",
        help="with --ledger engine on a Spark cluster: the database of the ledger's tables",
    )
    serve.add_argument("--node-id", help="this node's id (the gateway's token audience)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--gateway-issuer")
    serve.add_argument(
        "--gateway-key",
        type=_gateway_key,
        action="append",
        metavar="KID=PATH",
        help="pinned gateway public key; repeat for rotation",
    )
    serve.add_argument("--gateway-jwks", type=Path, help="JWKS file of pinned gateway keys")
    serve.add_argument("--hdab-issuer", help="the iss of this jurisdiction's HDAB")
    hdab = serve.add_mutually_exclusive_group()
    hdab.add_argument("--hdab-jwks-file", type=Path, help="the HDAB's keys (JWKS file)")
    hdab.add_argument("--hdab-jwks-url", help="the HDAB's keys (JWKS over https)")
    hdab.add_argument("--hdab-public-key", type=Path, help="the HDAB's key (PEM)")
    serve.add_argument("--redis-url", help="share the replay cache with replicas in Redis")
    serve.add_argument("--threads", type=int, help="database worker threads")
    serve.add_argument("--policies", type=Path, help="policy directory (default: shipped)")
    serve.add_argument("--node-policy", type=Path, help="this hub's own policy layer (final veto)")
    serve.add_argument(
        "--state", type=Path, help="the node's state directory (privacy ledger, answers)"
    )
    serve.add_argument("--audit-db", help="audit trail: SQLite file or postgresql:// URL")
    serve.add_argument("--audit-key", type=Path, help="Ed25519 key signing the audit chain")
    serve.add_argument("--pool-key", type=Path, help="X25519 key for secure pooling")
    serve.add_argument(
        "--pool-peers", type=Path, help="pooling registry: every node's X25519 public key"
    )
    serve.set_defaults(handler=_serve)

    prepare = connector_sub.add_parser(
        "prepare",
        help="add Tessera's tables to an OMOP database: opt-out register, data release, "
        "person indexes, record keys (idempotent)",
        description="Run again after every change to the data or the opt-out register. "
        "--state is the node's state directory, the same every time: it holds the secret "
        "and the person index that keep each person's privacy budget across rebuilds of "
        "the database; back it up.",
    )
    prepare.add_argument("--database", type=Path, required=True, help="OMOP CDM 5.4 DuckDB file")
    prepare.add_argument(
        "--state", type=Path, required=True, help="the node's state directory (created if new)"
    )
    prepare.add_argument(
        "--release",
        help="data release label (default: keep the database's, else 1); a new label has "
        "questions asked again answered afresh",
    )
    prepare.add_argument("--optout", type=Path, help="CSV of opted-out person_ids (replaces)")
    prepare.add_argument("--register-version", help="version of the opt-out register")
    prepare.set_defaults(handler=_prepare)

    copy = connector_sub.add_parser(
        "copy-to-postgres",
        help="copy a (prepared) OMOP DuckDB database into PostgreSQL, with indexes",
    )
    copy.add_argument("--database", type=Path, required=True, help="source DuckDB file")
    copy.add_argument("--dsn", required=True, help="target postgresql:// URL")
    copy.add_argument("--replace", action="store_true", help="drop existing tables first")
    copy.set_defaults(handler=_copy_to_postgres)

    parquet = connector_sub.add_parser(
        "copy-to-parquet",
        help="write a (prepared) OMOP DuckDB database as Parquet tables, for Spark",
    )
    parquet.add_argument("--database", type=Path, required=True, help="source DuckDB file")
    parquet.add_argument(
        "--to", type=Path, required=True, help="target directory (one <table>.parquet each)"
    )
    parquet.add_argument("--replace", action="store_true", help="overwrite existing files")
    parquet.set_defaults(handler=_copy_to_parquet)


def _settings() -> type[ConnectorSettings]:
    from connectors.settings import ConnectorSettings

    return ConnectorSettings


def _serve(args: argparse.Namespace) -> int:
    import logging

    from connectors.app import serve
    from connectors.settings import ConnectorSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    overrides: dict[str, Any] = {
        name: value
        for name, value in (
            ("jurisdiction", args.jurisdiction),
            ("database", args.database),
            ("dsn", args.dsn),
            ("cdm_schema", args.cdm_schema),
            ("vocabulary_schema", args.vocabulary_schema),
            ("ledger", args.ledger),
            ("ledger_schema", args.ledger_schema),
            ("node_id", args.node_id),
            ("host", args.host),
            ("port", args.port),
            ("gateway_issuer", args.gateway_issuer),
            ("gateway_jwks", args.gateway_jwks),
            ("hdab_issuer", args.hdab_issuer),
            ("hdab_jwks_file", args.hdab_jwks_file),
            ("hdab_jwks_url", args.hdab_jwks_url),
            ("hdab_public_key", args.hdab_public_key),
            ("redis_url", args.redis_url),
            ("threads", args.threads),
            ("policies", args.policies),
            ("node_policy", args.node_policy),
            ("state_dir", args.state),
            ("audit_db", args.audit_db),
            ("audit_key", args.audit_key),
            ("pool_key", args.pool_key),
            ("pool_peers", args.pool_peers),
        )
        if value is not None
    }
    if args.gateway_key:
        overrides["gateway_keys"] = dict(args.gateway_key)
    # A SettingsError here or at start-up is a ConfigError: one line, exit 2 (`tessera.cli`).
    serve(ConnectorSettings.from_env(**overrides))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    import duckdb

    from connectors.persons import SECRET_FILE, PersonStateError
    from connectors.prepare import prepare_database, read_optout_csv

    if args.register_version and not args.optout:
        print("tessera connector prepare: --register-version needs --optout", file=sys.stderr)
        return 2
    try:
        optout = read_optout_csv(args.optout) if args.optout else None
        report = prepare_database(
            args.database,
            state=args.state,
            optout_ids=optout,
            register_version=args.register_version,
            release=args.release,
        )
    # duckdb.Error: e.g. a connector still has the database open.
    except (ValueError, OSError, PersonStateError, duckdb.Error) as e:
        print(f"tessera connector prepare: {e}", file=sys.stderr)
        return 2
    if report.secret_created:
        print(
            f"created the node's person secret {args.state / SECRET_FILE}: back up the state "
            "directory with it; without it this node cannot index its persons again"
        )
    print(
        f"{args.database}: {report.persons:,} persons, {report.indexes_added:,} indexed for "
        f"the first time ({report.indexes_total:,} indexes ever given), "
        f"{report.keys_added:,} record keys added, {report.optout_count:,} opted out "
        f"(register {report.register_version}), data release {report.release}"
    )
    if report.shared_indexes:
        print(
            f"note: {report.shared_indexes:,} persons share their person_source_value with "
            "another person, and so share one privacy budget with them"
        )
    return 0


def _copy_to_postgres(args: argparse.Namespace) -> int:
    import asyncio

    from connectors.transfer import copy_to_postgres

    try:
        report = asyncio.run(copy_to_postgres(args.database, args.dsn, replace=args.replace))
    except (ValueError, OSError) as e:
        print(f"tessera connector copy-to-postgres: {e}", file=sys.stderr)
        return 2
    for table, count in report.rows.items():
        print(f"{table:24} {count:>14,}")
    print(f"{'elapsed':24} {report.elapsed_seconds:>13.1f}s")
    return 0


def _copy_to_parquet(args: argparse.Namespace) -> int:
    from connectors.transfer import copy_to_parquet

    try:
        report = copy_to_parquet(args.database, args.to, replace=args.replace)
    except (ValueError, OSError) as e:
        print(f"tessera connector copy-to-parquet: {e}", file=sys.stderr)
        return 2
    for table, count in report.rows.items():
        print(f"{table:24} {count:>14,}")
    print(f"{'elapsed':24} {report.elapsed_seconds:>13.1f}s")
    return 0
