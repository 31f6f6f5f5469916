"""`tessera federation check FILE`: does a federation file hold, and do its nodes agree?

Loads the file as the gateway does (every key it names, paths relative to the file), then
asks each node's `/readyz` who it is and whom it trusts, and prints each disagreement with
both values (`gateway.federation_check`). Exit code 0 when every node agrees, 1 when one
disagrees or cannot be asked, 2 when the file itself is broken.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

SubParsers = Any  # argparse's _SubParsersAction is private


def register(sub: SubParsers) -> None:
    federation = sub.add_parser("federation", help="check a gateway's federation file")
    federation_sub = federation.add_subparsers(dest="federation_command", required=True)
    check = federation_sub.add_parser(
        "check",
        help="load a federation file and compare it with what each node says it is",
        description="Loads FILE as the gateway does (keys, issuers, nodes; paths relative to "
        "FILE), then asks each node's /readyz for its identity: node id, jurisdiction, the "
        "gateway issuer and permit audience it expects, the gateway keys it trusts, its HDAB. "
        "Exit code 0: every node agrees; 1: a mismatch or a node not reached; 2: FILE is "
        "broken.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    check.add_argument("file", type=Path, metavar="FILE", help="the federation file (TOML)")
    check.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for each node's answer"
    )
    check.add_argument(
        "--offline",
        action="store_true",
        help="check the file and its keys only; do not ask the nodes",
    )
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.federation import FederationError, load_federation
    from gateway.federation_check import check_federation

    try:
        federation = load_federation(args.file)
    except FederationError as exc:
        print(f"tessera federation check: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.file}: gateway {federation.gateway_id!r} signs with {federation.signing_kid!r}; "
        f"{len(federation.issuers)} issuer(s), {len(federation.nodes)} node(s)"
    )
    if args.offline:
        return 0
    report = asyncio.run(check_federation(federation, timeout_s=args.timeout))
    sys.stdout.write(report.render())
    return report.exit_code
