"""Subcommands of the composition root: demo, keys, policy, schema (permits and tokens:
`tessera.permit_command`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from schema.codes import Jurisdiction

SubParsers = Any  # argparse's _SubParsersAction is private


def jurisdiction_list(text: str) -> list[Jurisdiction]:
    try:
        return [Jurisdiction(code.strip().upper()) for code in text.split(",") if code.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(sub: SubParsers) -> None:
    demo = sub.add_parser("demo", help="run a local federation and answer the example queries")
    demo.add_argument("--persons", type=int, default=100_000, help="persons per country")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument(
        "--jurisdictions", type=jurisdiction_list, default="FR,DE,FI,DK", metavar="FR,DE,..."
    )
    demo.add_argument("--dir", type=Path, default=Path(".tessera/demo"))
    demo.add_argument("--port", type=int, default=8400, help="gateway port; nodes use the next")
    demo.add_argument("--examples", type=Path, default=Path("examples"))
    demo.add_argument("--smoke", action="store_true", help="exit after printing the answers")
    demo.set_defaults(handler=_demo)

    keys = sub.add_parser(
        "keys", help="generate and rotate keys, publish them as JWKS or a pooling registry"
    )
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    generate = keys_sub.add_parser("generate", help="write NAME.key.pem and NAME.pub.pem")
    generate.add_argument("name")
    generate.add_argument("--dir", type=Path, default=Path("keys"))
    generate.add_argument("--overwrite", action="store_true")
    generate.add_argument(
        "--kind",
        choices=["ed25519", "x25519"],
        default="ed25519",
        help="ed25519 (signing, the default) or x25519 (a node's secure pooling key)",
    )
    generate.set_defaults(handler=_keys_generate)
    rotate = keys_sub.add_parser(
        "rotate",
        help="new key FAMILY-N+1; FAMILY.jwks.json then trusts the newest --keep keys",
    )
    rotate.add_argument("family", help="e.g. gateway or hdab")
    rotate.add_argument("--dir", type=Path, default=Path("keys"))
    rotate.add_argument("--keep", type=int, default=2, help="keys the JWKS keeps (default 2)")
    rotate.set_defaults(handler=_keys_rotate)
    jwks = keys_sub.add_parser("jwks", help="write a JWKS of the public keys KID.pub.pem")
    jwks.add_argument("kids", nargs="+", metavar="KID")
    jwks.add_argument("--dir", type=Path, default=Path("keys"))
    jwks.add_argument("--out", type=Path, help="file to write (default: stdout)")
    jwks.set_defaults(handler=_keys_jwks)
    registry = keys_sub.add_parser(
        "registry",
        help="write the pooling registry: every node's X25519 public key (NODE_ID=KID.pub.pem)",
    )
    registry.add_argument("entries", nargs="+", metavar="NODE_ID=KID")
    registry.add_argument("--dir", type=Path, default=Path("keys"))
    registry.add_argument("--out", type=Path, required=True, help="registry file to write")
    registry.set_defaults(handler=_keys_registry)

    policy = sub.add_parser("policy", help="validate and show legal policy files")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser(
        "check",
        help="validate a policy directory and print the effective policy per jurisdiction",
    )
    check.add_argument(
        "directory",
        type=Path,
        nargs="?",
        help="directory with eu.toml and jurisdictions/*.toml (default: the shipped files)",
    )
    check.set_defaults(handler=_policy_check)

    schema = sub.add_parser("schema", help="print the gateway's GraphQL SDL")
    schema.add_argument("--write", type=Path, help="write to this file instead")
    schema.set_defaults(handler=_schema)


def _demo(args: argparse.Namespace) -> int:
    from tessera.demo import run_demo

    try:
        return asyncio.run(
            run_demo(
                args.dir,
                persons=args.persons,
                seed=args.seed,
                jurisdictions=args.jurisdictions,
                gateway_port=args.port,
                examples_dir=args.examples,
                smoke=args.smoke,
            )
        )
    except KeyboardInterrupt:
        return 0


def _keys_generate(args: argparse.Namespace) -> int:
    from tessera.keys import generate_keypair

    private_path, public_path = generate_keypair(
        args.dir, args.name, overwrite=args.overwrite, kind=args.kind
    )
    print(f"wrote {private_path} (keep secret) and {public_path}")
    return 0


def _keys_registry(args: argparse.Namespace) -> int:
    from tessera.keys import public_key_path, write_pool_registry

    keys = {}
    for entry in args.entries:
        node, sep, kid = entry.partition("=")
        if not sep or not node or not kid:
            print(f"expected NODE_ID=KID, got {entry!r}", file=sys.stderr)
            return 2
        keys[node] = public_key_path(args.dir, kid)
    try:
        print(f"wrote {write_pool_registry(keys, args.out)}")
    except ValueError as exc:
        print(f"tessera keys registry: {exc}", file=sys.stderr)
        return 2
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    from tessera.keys import rotate

    rotation = rotate(args.dir, args.family, keep=args.keep)
    print(f"new key {rotation.kid}: sign with {rotation.private_key} (keep secret)")
    print(f"{rotation.jwks} now trusts: {', '.join(rotation.trusted)}")
    return 0


def _keys_jwks(args: argparse.Namespace) -> int:
    import json

    from tessera.keys import load_public_key, public_key_path, write_jwks
    from trust.keys import jwks

    if args.out is not None:
        print(f"wrote {write_jwks(args.dir, args.kids, args.out)}")
    else:
        keys = {kid: load_public_key(public_key_path(args.dir, kid)) for kid in args.kids}
        print(json.dumps(jwks(keys), indent=2))
    return 0


def _policy_check(args: argparse.Namespace) -> int:
    from policies.loader import DEFAULT_DIRECTORY
    from policies.transparency import check_policy_dir

    report = check_policy_dir(args.directory or DEFAULT_DIRECTORY)
    print(report.render(), end="")
    return report.exit_code


def _schema(args: argparse.Namespace) -> int:
    from gateway.graphql.schema import sdl

    text = sdl()
    if args.write:
        args.write.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
