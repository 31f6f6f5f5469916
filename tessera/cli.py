"""`tessera` and its subcommands. Each package registers its own subcommands; imports of heavy
modules happen inside the handlers so that `tessera --help` stays instant."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from connectors.cli import register as register_connector
    from gateway.cli import register as register_gateway
    from synth.cli import register as register_synth
    from tessera.audit_command import register as register_audit
    from tessera.cohort_command import register as register_cohort
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
    register_synth(sub)
    register_tools(sub)
    register_permits(sub)
    register_audit(sub)
    register_query(sub)
    register_federation(sub)
    register_cohort(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command. A configuration it cannot run with (`ConfigError`: a federation file,
    a key, a setting; or a file it cannot read or write, a port it cannot bind) ends it with
    one line on standard error and exit status 2, never a traceback: the one place such
    errors are turned into what an operator reads."""
    from schema.errors import ConfigError

    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(words)
        result: int = args.handler(args)
    except BrokenPipeError:
        # The reader went away (`tessera … --help | head`): nothing is left to say, and the
        # flush of standard output at exit must not fail again with a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command its pipe's reader closed
    except ConfigError as e:
        return _refuse(words, str(e))
    except OSError as e:
        return _refuse(words, os_problem(e))
    return result


def os_problem(error: OSError) -> str:
    """What an operating-system error says, without Python's `[Errno N]` decoration."""
    what = error.strerror or type(error).__name__
    return f"{error.filename}: {what}" if error.filename is not None else what


def _refuse(words: Sequence[str], problem: str) -> int:
    command = " ".join(["tessera", *[w for w in words[:2] if not w.startswith("-")]])
    print(f"{command}: {' '.join(problem.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
