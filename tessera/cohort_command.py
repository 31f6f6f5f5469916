"""`tessera cohort import`: an ATLAS cohort definition as the `index` and `criteria` of a
Tessera question, printed as GraphQL input literals to paste into a document (the default)
or as JSON variables (`--format json`); a definition with parts outside the subset Tessera
translates exits with status 2 and lists every one of them by its JSON path.

    tessera cohort import definition.json
    tessera cohort import definition.json --format json > variables.json
    tessera cohort import definition.json --format document --request DR-1 > q.graphql
    tessera query q.graphql
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tessera.commands import SubParsers


def register(sub: SubParsers) -> None:
    cohort = sub.add_parser("cohort", help="cohort definitions from other tools (ATLAS)")
    cohort_sub = cohort.add_subparsers(dest="cohort_command", required=True)
    atlas = cohort_sub.add_parser(
        "import",
        help="translate an ATLAS (OHDSI Circe) cohort definition into Tessera's index and criteria",
        description=(
            "Translate an ATLAS cohort definition (its JSON export) into the index and criteria "
            "of a Tessera question. Parts outside the supported subset are refused, each by its "
            "JSON path (exit status 2); parts that only shape cohort periods are noted and left "
            "aside. See docs/atlas-import.md."
        ),
    )
    atlas.add_argument("definition", type=Path, help="the ATLAS export ('-': standard input)")
    atlas.add_argument(
        "--format",
        choices=["graphql", "json", "document"],
        default="graphql",
        help="graphql: input literals for cohort(index: ..., criteria: ...) (default); json: "
        "the variables $index and $criteria; document: a whole question for `tessera query "
        "FILE` (its pooled count and each country's)",
    )
    atlas.add_argument(
        "--request",
        default="YOUR-DATA-REQUEST",
        help="the data request a document asks under (default: a placeholder to replace)",
    )
    atlas.set_defaults(handler=_import)


def _import(args: argparse.Namespace) -> int:
    from tessera.atlas import AtlasRefused, import_definition
    from tessera.atlas.render import graphql_arguments, graphql_document, json_variables

    source: Path | str = sys.stdin.read() if str(args.definition) == "-" else args.definition
    try:
        cohort = import_definition(source)
    except AtlasRefused as refused:
        count = len(refused.refusals)
        print(
            f"tessera cohort import: {args.definition}: {count} part{'s' * (count != 1)} of the "
            "definition cannot be translated (docs/atlas-import.md):",
            file=sys.stderr,
        )
        for refusal in refused.refusals:
            print(f"  {refusal}", file=sys.stderr)
        return 2
    if args.format == "document":
        title = f"ATLAS definition {args.definition}, translated by tessera cohort import"
        sys.stdout.write(graphql_document(cohort, request=args.request, title=title))
    elif args.format == "json":
        for note in cohort.notes:
            print(note, file=sys.stderr)
        sys.stdout.write(json_variables(cohort))
    else:
        sys.stdout.write(graphql_arguments(cohort))
    return 0
