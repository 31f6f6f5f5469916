"""`tessera audit verify|export`: check an audit trail, publish the transparency register.

`verify` reads every chain of an audit store (or the one named) entry by entry, names the
first broken entry, and checks the signed chain heads (their signatures too with `--key`),
that no longer run of entries is left unsigned than the services leave, and heads kept
elsewhere (`--heads`, the service log) against the trail.
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
        description="Exit status 0 when every chain verifies, 1 when one does not, 2 when "
        "there is nothing to verify (no store, an unknown --chain, an unreadable key).",
    )
    _store_arguments(verify)
    verify.set_defaults(handler=_verify)

    export = audit_sub.add_parser(
        "export",
        help="write the transparency register (who accessed which data, for which purpose)",
        description="Only from a trail that verifies (the same checks as `verify`). Refused "
        "queries accessed no data and are not listed.",
    )
    _store_arguments(export)
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    export.set_defaults(handler=_export)


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", required=True, help="the audit store: SQLite file or postgresql:// URL"
    )
    parser.add_argument(
        "--chain", help="one chain (default: every chain with entries or heads in the store)"
    )
    parser.add_argument(
        "--key",
        type=Path,
        action="append",
        default=[],
        metavar="PUB.pem",
        help="public key the chain heads are signed with (repeat for several); without one, "
        "the heads still bound the chain but their signatures are not checked",
    )
    parser.add_argument(
        "--heads",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="signed heads kept outside the store: a service log (or its lines with "
        "'tessera-audit-head'); each must match the trail and still be in the store "
        "(repeat for several)",
    )
    parser.add_argument(
        "--max-unsigned",
        type=int,
        metavar="N",
        help="most entries allowed without a signed head (default: the most a service "
        "leaves, 355: it signs once a write takes its chain 100 entries past the last head, "
        "and one write holds up to 256)",
    )


def _checks(args: argparse.Namespace, command: str) -> tuple[Any, Any] | None:
    """The keys and the heads kept elsewhere, or None having said why they cannot be read."""
    from oversight.audit.log import MAX_UNSIGNED
    from tessera.auditing import load_heads, load_keys

    if args.max_unsigned is None:
        args.max_unsigned = MAX_UNSIGNED
    if args.max_unsigned < 1:
        print(f"tessera audit {command}: --max-unsigned must be at least 1", file=sys.stderr)
        return None
    try:
        return load_keys(args.key), load_heads(args.heads)
    except ValueError as e:
        print(f"tessera audit {command}: {e}", file=sys.stderr)
        return None


def _verify(args: argparse.Namespace) -> int:
    from tessera.auditing import run, verify

    checks = _checks(args, "verify")
    if checks is None:
        return 2
    keys, heads = checks

    async def check(store: Any, chain: str) -> Any:
        return await verify(store, chain, keys, external=heads, max_unsigned=args.max_unsigned)

    results = run(args.db, args.chain, check, known=[h.chain for h in heads])
    if results is None:
        return 2
    for result in results:
        print(f"{result.chain}: {result.summary()}")
    return 0 if all(r.ok for r in results) else 1


def _export(args: argparse.Namespace) -> int:
    from tessera.auditing import Broken, register_rows, render_register, run, verify

    checks = _checks(args, "export")
    if checks is None:
        return 2
    keys, heads = checks

    async def rows(store: Any, chain: str) -> list[dict[str, str]]:
        result = await verify(store, chain, keys, external=heads, max_unsigned=args.max_unsigned)
        if not result.ok:
            raise Broken(result)
        return [r async for r in register_rows(store, chain)]

    try:
        found = run(args.db, args.chain, rows, known=[h.chain for h in heads])
    except Broken as broken:
        print(
            f"tessera audit export: {broken.result.chain}: {broken.result.summary()}; "
            "nothing exported",
            file=sys.stderr,
        )
        return 1
    if found is None:
        return 2
    text = render_register([row for chain_rows in found for row in chain_rows], args.format)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
