"""`tessera` and its subcommands. Each package registers its own subcommands; imports of heavy
modules happen inside the handlers so that `tessera --help` stays instant."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from connectors.cli import register as register_connector
    from gateway.cli import register as register_gateway
    from tessera.audit import register as register_audit
    from tessera.commands import register as register_tools
    from tessera.federation_command import register as register_federation
    from tessera.permit_command import register as register_permits
    from tessera.query_command import register as register_query

    parser = argparse.ArgumentParser(
        prog="tessera",
        description="Cross-border health data query gateway (EHDS-style federation).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_gateway(sub)
    register_connector(sub)
    register_tools(sub)
    register_permits(sub)
    register_audit(sub)
    register_query(sub)
    register_federation(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
