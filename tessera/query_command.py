"""`tessera query`: ask a gateway one question from the terminal, with a GraphQL file or with
flags for the common question, and print the answer as tables, CSV or JSON.

    tessera query examples/01_diabetes_women_40_69.graphql
    tessera query --concept ICD10:E11 --by SEX,AGE_BAND_10 --csv > e11.csv
    tessera query --concept ICD10:E11 --by JURISDICTION --out e11.parquet \
        --gateway https://gateway.example.eu/graphql --token me.jwt --permit fr.jwt de.jwt

Gateway, identity token and permits default to the ones `tessera demo` wrote (`--demo-dir`,
`.tessera/demo`). The gateway answers a question whole (it streams nothing), so while it
works a line on standard error counts the seconds and names the nodes asked, when standard
error is a terminal, and each node's status and latency follow once the answer is in.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from pathlib import Path

from schema.codes import AgeAt, Dimension, NoiseLevel, Sex
from tessera.commands import SubParsers, jurisdiction_list
from tessera.locations import DEMO_DIRECTORY, DEMO_GATEWAY


def register(sub: SubParsers) -> None:
    query = sub.add_parser(
        "query",
        help="ask a gateway a question (a GraphQL file, or --concept/--by) and print the answer",
        description=(
            "Ask a gateway one question and print the answer: tables (default), --csv (tidy: "
            "one row per cell of every table) or --json (the gateway's data). Gateway, token "
            "and permits default to the demo's (--demo-dir)."
        ),
    )
    query.add_argument(
        "file", nargs="?", type=Path, help="a GraphQL document ('-': standard input)"
    )
    query.add_argument("--variables", help="the document's variables, as JSON")
    ask = query.add_argument_group("the common question (instead of a file)")
    ask.add_argument(
        "--concept",
        action="append",
        default=[],
        metavar="VOCAB:CODE",
        help="a criterion, with its descendants: ICD10:E11, ATC:A10, LOINC:39156-5, or a "
        "range ICD10:F70-F79 (repeat: all must hold)",
    )
    ask.add_argument("--sex", choices=[s.value for s in Sex], type=str.upper)
    ask.add_argument("--age", type=_age_range, metavar="MIN-MAX", help="e.g. 40-69, 18-, -30")
    ask.add_argument(
        "--by",
        action="append",
        default=[],
        type=_dimensions,
        metavar="DIM,DIM",
        help="a breakdown: " + ", ".join(d.value for d in Dimension) + " (repeat: one per table)",
    )
    ask.add_argument("--jurisdictions", type=jurisdiction_list, metavar="FR,DE,...")
    ask.add_argument("--request", help="data request or application id (default: the permits')")
    ask.add_argument("--noise", choices=[n.value for n in NoiseLevel], type=str.upper)
    ask.add_argument(
        "--age-at",
        choices=[a.value for a in AgeAt],
        type=str.upper,
        help="when ages are taken (default: INDEX_EVENT, the first event of the first "
        "--concept, when there is one; else REFERENCE_DATE)",
    )
    ask.add_argument(
        "--no-total",
        dest="total",
        action="store_false",
        help="leave out the pooled count (a securely pooled count costs budget of its own)",
    )
    ask.add_argument("--deadline-ms", type=int, help="how long the gateway waits for nodes")
    numeric = query.add_argument_group("a numeric variable: its mean, sd and 95%% interval")
    numeric.add_argument(
        "--variable",
        metavar="AGE|LOINC:CODE",
        help="summarise AGE or a registered measurement (e.g. LOINC:4548-4) in every cell",
    )
    numeric.add_argument(
        "--per-person",
        choices=["FIRST", "LAST", "MEAN"],
        type=str.upper,
        default="FIRST",
        help="which of a person's measurements is their value (default FIRST)",
    )
    numeric.add_argument(
        "--bounds", type=_bounds, metavar="LO-HI", help="public clipping bounds, e.g. 4-14"
    )
    numeric.add_argument(
        "--bin-width",
        type=float,
        help="histogram bins of this width (with --by VALUE_BIN; e.g. 0.5 for HbA1c)",
    )
    numeric.add_argument(
        "--no-summary",
        dest="summary",
        action="store_false",
        help="the histogram only (counts; the summary's statistics are not asked or charged)",
    )
    indexed = query.add_argument_group(
        "an index event, for an incidence rate (--outcome) or a survival curve (--survival)"
    )
    indexed.add_argument(
        "--index",
        action="append",
        default=[],
        metavar="VOCAB:CODE",
        help="the index event, each person's first (ATC or RxNorm: a drug; ICD10 or SNOMED: a "
        "condition; LOINC: a measurement; repeat: any of them)",
    )
    indexed.add_argument(
        "--index-from", type=_date, metavar="YYYY-MM-DD", help="index events from this date"
    )
    rate = query.add_argument_group(
        "an incidence rate: events per person-years from the index event, with 95%% intervals"
    )
    rate.add_argument(
        "--outcome",
        action="append",
        default=[],
        metavar="VOCAB:CODE|DEATH",
        help="the outcome counted over each person's follow-up (repeat: any of the codes)",
    )
    rate.add_argument(
        "--follow-up",
        type=_days,
        default=(0, 365),
        metavar="START-END",
        help="days after the index (both included; default 0-365)",
    )
    rate.add_argument(
        "--per",
        type=int,
        default=100_000,
        help="rates per this many person-years (default 100000; or 1000, 10000, 1000000)",
    )
    followed = query.add_argument_group("survival: a Kaplan–Meier curve from the index event")
    followed.add_argument(
        "--survival",
        metavar="DEATH|VOCAB:CODE",
        help="follow each person from the index to this outcome (with --index)",
    )
    followed.add_argument(
        "--interval-days", type=int, default=30, help="7, 30, 90 or 365 (default 30)"
    )
    followed.add_argument("--max-days", type=int, default=360, help="default 360")
    followed.add_argument(
        "--group-by", metavar="DIM", help="one curve per group (SEX, an age band), log-rank"
    )
    followed.add_argument(
        "--pooled-only",
        action="store_true",
        help="the pooled curves only, their exits pooled securely (a rare cohort's)",
    )
    fitted = query.add_argument_group(
        "a regression from the index event (tessera/query_regression.py has the terms)"
    )
    fitted.add_argument(
        "--regression", metavar="FAMILY", help="LINEAR, LOGISTIC or POISSON (with --index)"
    )
    fitted.add_argument(
        "--y",
        metavar="TERM",
        help="the outcome: DEATH or VOCAB:CODE (an event after the index, default @0..28), "
        "AGE[:LO-HI], LOINC:CODE[/MEAN|/FIRST] (a measurement, default @0..365)",
    )
    fitted.add_argument(
        "--x",
        action="append",
        default=[],
        metavar="NAME=TERM",
        help="a covariate (repeat): AGE[:LO-HI], FEMALE, VOCAB:CODE (an event before the "
        "index), LOINC:CODE[/MEAN|/FIRST] (a measurement up to it); @START..END: days",
    )
    fitted.add_argument("--max-iterations", type=int, help="default 8, at most 12")
    where = query.add_argument_group("gateway and credentials (default: the demo's)")
    where.add_argument("--gateway", metavar="URL", help=f"default: the demo's, or {DEMO_GATEWAY}")
    where.add_argument("--token", type=Path, metavar="FILE", help="identity token (JWT) file")
    where.add_argument(
        "--permit",
        type=Path,
        nargs="+",
        action="extend",
        metavar="FILE",
        help="permit files, one per country (each from its HDAB)",
    )
    where.add_argument("--demo-dir", type=Path, default=DEMO_DIRECTORY)
    where.add_argument("--timeout", type=float, default=90.0, help="seconds (default 90)")
    output = query.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true", help="tidy CSV: one row per number")
    output.add_argument("--json", action="store_true", help="the gateway's data, as JSON")
    query.add_argument(
        "--out", type=Path, metavar="FILE", help="write the tidy table to FILE (.csv or .parquet)"
    )
    query.set_defaults(handler=_query)


def _age_range(text: str) -> tuple[int | None, int | None]:
    low, sep, high = text.partition("-")
    try:
        if not sep:
            return int(low), int(low)
        return (int(low) if low.strip() else None, int(high) if high.strip() else None)
    except ValueError:
        raise argparse.ArgumentTypeError("an age range is MIN-MAX, MIN- or -MAX") from None


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a date is YYYY-MM-DD") from None


def _days(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        return int(low), int(high)
    except ValueError:
        raise argparse.ArgumentTypeError("a follow-up is START-END days, e.g. 0-21") from None


def _bounds(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        return float(low), float(high)
    except ValueError:
        raise argparse.ArgumentTypeError("bounds are LO-HI, e.g. 4-14") from None


def _dimensions(text: str) -> tuple[str, ...]:
    names = tuple(d.strip().upper() for d in text.split(",") if d.strip())
    known = {d.value for d in Dimension}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"dimensions are {', '.join(sorted(known))}")
    return names


def _query(args: argparse.Namespace) -> int:
    from tessera.query_run import run_query

    try:
        return asyncio.run(run_query(args, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): what it wanted was printed.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
