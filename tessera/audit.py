"""`tessera audit verify|export`: check an audit trail, publish the transparency register.

`verify` reads every chain of an audit store (or the one named) entry by entry, names the
first broken entry, and checks the signed chain heads (their signatures too with `--key`).
`export` writes the public transparency register (EHDS Art. 58: who accessed which data, for
which purpose) from a chain that verifies, as CSV or JSON. The work is in
`tessera.auditing`, imported by the handlers so that `tessera --help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

SubParsers = Any  # argparse's _SubParsersAction is private


def register(sub: SubParsers) -> None:
    audit = sub.add_parser(
        "audit", help="verify an audit trail or export the transparency register"
    )
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)

    verify = audit_sub.add_parser(
        "verify",
        help="check the hash chain and the signed heads; names the first broken entry",
        description="Exit status 0 when every chain verifies, 1 when one does not.",
    )
    _store_arguments(verify)
    verify.add_argument(
        "--key",
        type=Path,
        action="append",
        default=[],
        metavar="PUB.pem",
        help="public key the chain heads are signed with (repeat for several); without one, "
        "the heads still bound the chain but their signatures are not checked",
    )
    verify.set_defaults(handler=_verify)

    export = audit_sub.add_parser(
        "export",
        help="write the transparency register (who accessed which data, for which purpose)",
        description="Only from a chain that verifies. Refused queries accessed no data and are "
        "not listed.",
    )
    _store_arguments(export)
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    export.add_argument("--key", type=Path, action="append", default=[], metavar="PUB.pem")
    export.set_defaults(handler=_export)


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", required=True, help="the audit store: SQLite file or postgresql:// URL"
    )
    parser.add_argument("--chain", help="one chain (default: every chain in the store)")


def _verify(args: argparse.Namespace) -> int:
    from tessera.auditing import load_keys, run, verify

    try:
        keys = load_keys(args.key)
    except ValueError as e:
        print(f"tessera audit verify: {e}", file=sys.stderr)
        return 2
    results = run(args.db, args.chain, lambda store, chain: verify(store, chain, keys))
    if results is None:
        return 2
    for result in results:
        print(f"{result.chain}: {result.summary()}")
    return 0 if all(r.ok for r in results) else 1


def _export(args: argparse.Namespace) -> int:
    from tessera.auditing import Broken, load_keys, register_rows, render, run, verify

    try:
        keys = load_keys(args.key)
    except ValueError as e:
        print(f"tessera audit export: {e}", file=sys.stderr)
        return 2

    async def rows(store: Any, chain: str) -> list[dict[str, str]]:
        result = await verify(store, chain, keys)
        if not result.ok:
            raise Broken(result)
        return [r async for r in register_rows(store, chain)]

    try:
        found = run(args.db, args.chain, rows)
    except Broken as broken:
        print(
            f"tessera audit export: {broken.result.chain}: {broken.result.summary()}; "
            "nothing exported",
            file=sys.stderr,
        )
        return 1
    if found is None:
        return 2
    text = render([row for chain_rows in found for row in chain_rows], args.format)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
