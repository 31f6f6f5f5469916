"""`tessera gateway serve`: run the federation's GraphQL gateway."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving.options import add_settings_help

if TYPE_CHECKING:
    from gateway.settings import GatewaySettings

SubParsers = Any  # argparse's _SubParsersAction is private


def register(sub: SubParsers) -> None:
    gateway = sub.add_parser("gateway", help="run the GraphQL gateway")
    gateway_sub = gateway.add_subparsers(dest="gateway_command", required=True)
    serve = gateway_sub.add_parser(
        "serve",
        help="serve /graphql and fan out to the federation's nodes",
        description="Options override the TESSERA_GATEWAY_* environment variables (listed "
        "below, from gateway/settings.py).",
        add_help=False,
    )
    add_settings_help(serve, _settings)
    serve.add_argument("--federation", type=Path, help="federation file (TOML)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--processes", type=int, help="worker processes behind the one port (default 1)"
    )
    serve.add_argument("--deadline", type=float, dest="deadline_s", help="query deadline (s)")
    serve.add_argument(
        "--console", action="store_true", default=None, help="serve the query console"
    )
    serve.add_argument(
        "--console-demo-credentials",
        type=Path,
        metavar="DIR",
        help="demo only, on loopback: pre-fill the console with the tokens `tessera demo` "
        "wrote in DIR (researcher.jwt, permits/*.jwt)",
    )
    serve.add_argument("--policies", type=Path, help="policy directory (default: shipped)")
    serve.add_argument("--audit-db", help="audit trail: SQLite file or postgresql:// URL")
    serve.add_argument("--audit-key", type=Path, help="Ed25519 key signing the audit chain")
    serve.set_defaults(handler=_serve)


def _settings() -> type[GatewaySettings]:
    from gateway.settings import GatewaySettings

    return GatewaySettings


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import serve
    from gateway.settings import GatewaySettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # A SettingsError here or a FederationError at start-up is a ConfigError: one line,
    # exit 2 (`tessera.cli`).
    settings = GatewaySettings.from_env(
        federation=args.federation,
        host=args.host,
        port=args.port,
        processes=args.processes,
        deadline_s=args.deadline_s,
        console=args.console,
        console_demo_credentials=args.console_demo_credentials,
        audit_db=args.audit_db,
        audit_key=args.audit_key,
        policies=args.policies,
    )
    return serve(settings)
