"""What `tessera query` does once its command line is read (`tessera.query_command`): ask
through `tessera.client.AsyncClient`, show progress on a terminal, print the answer."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import IO, Any, Final, TextIO

from tessera.client.answer import POOLED, Answer, Response, Row
from tessera.client.client import AsyncClient, Demo
from tessera.client.errors import TesseraClientError
from tessera.client.questions import Question, Variable, concept, event, index, outcome
from tessera.client.regression import REGRESSION_DOCUMENT, regression_variables
from tessera.client.survival import log_rank_rows, survival, survival_rows
from tessera.locations import DEMO_GATEWAY
from tessera.query_regression import model as regression_model
from tessera.report import (
    SHOWN_BY_THE_COUNT,
    format_count,
    format_spend,
    render_regression,
    text_table,
)

PROGRESS_INTERVAL_S: Final = 0.1
_SPINNER: Final = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


async def run_query(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The command: 0 answered, 1 refused or unreachable, 2 a bad command line."""
    try:
        client = _client(args)
    except (OSError, ValueError) as exc:
        print(f"tessera query: {exc}", file=err)
        return 2
    async with client:
        try:
            document, variables = _document(args, client)
        except (OSError, ValueError) as exc:
            print(f"tessera query: {exc}", file=err)
            return 2
        except TesseraClientError as exc:
            print(f"error {exc.code}: {exc.message}", file=err)
            return 2
        try:
            members = None
            if err.isatty() and args.file is None:
                chosen = [j.value for j in args.jurisdictions] if args.jurisdictions else None
                members = federation_members(client, chosen)
            response = await _with_progress(client.execute(document, variables), err, members)
        except TesseraClientError as exc:
            wait = exc.details.get("retryAfter")
            later = f" (retry after {wait} s)" if isinstance(wait, int) else ""
            print(f"error {exc.code or 'UNREACHABLE'}: {exc.message}{later}", file=err)
            return 1
    if err.isatty():
        err.write(node_summary(response))
    saved = True
    if args.out is not None:
        from tessera.client.frames import to_frame, write

        try:
            print(f"wrote {write(to_frame(response.rows()), args.out)}", file=err)
        except (OSError, ImportError) as exc:
            # The answer was charged and is not asked again: it goes to standard output.
            print(f"tessera query: cannot write {args.out}: {exc}", file=err)
            saved = False
    if args.json:
        out.write(json.dumps(response.data, indent=2, ensure_ascii=False) + "\n")
    elif args.csv:
        write_csv(response.rows(), out)
    elif args.out is None or not saved or out.isatty():
        out.write(render(response))
    return 0 if saved else 1


def _client(args: argparse.Namespace) -> AsyncClient:
    demo: Demo | None = None
    with contextlib.suppress(FileNotFoundError):
        demo = Demo.locate(args.demo_dir)
    token = args.token or (demo.token if demo else None)
    permits = args.permit if args.permit is not None else (demo.permits if demo else ())
    url = args.gateway or (demo.url if demo else DEMO_GATEWAY)
    return AsyncClient(
        url, token=token, permits=permits, request=args.request, timeout_s=args.timeout
    )


def _document(args: argparse.Namespace, client: AsyncClient) -> tuple[str, dict[str, Any] | None]:
    asks = bool(
        args.concept or args.by or args.sex or args.age or args.variable or args.outcome
    ) or bool(args.survival or args.regression)
    if args.file is not None and asks:
        raise ValueError("give a GraphQL file or --concept/--by/--sex/--age, not both")
    if args.file is not None:
        document = sys.stdin.read() if str(args.file) == "-" else args.file.read_text()
        variables = json.loads(args.variables) if args.variables else None
        if variables is not None and not isinstance(variables, dict):
            raise ValueError("--variables must be a JSON object")
        return document, variables
    if not asks:
        raise ValueError("give a GraphQL file, or at least one of --concept, --by, --sex, --age")
    if args.regression:
        return _regression(args, client)
    question: Question = client.question(
        request=args.request,
        criteria=None,
        concepts=args.concept,
        drugs=(),
        sex=args.sex,
        age=args.age,
        by=[list(b) for b in args.by],
        jurisdictions=args.jurisdictions,
        total=args.total,
        countries=True,  # the answer's table lists each country's own count
        reference_date=None,
        age_at=args.age_at,
        deadline_ms=args.deadline_ms,
        min_nodes=None,
        noise=args.noise,
        variable=_variable(args),
        summary=args.summary,
        index=_index(args),
        outcome=_outcome(args),
        survival=_survival(args),
    )
    return question.document, question.variables


# The domain of an index or outcome code, by its vocabulary.
_DOMAINS: Final = {
    "ATC": "DRUG",
    "RXNORM": "DRUG",
    "ICD10": "CONDITION",
    "SNOMED": "CONDITION",
    "LOINC": "MEASUREMENT",
}


def _spec(concepts: Sequence[str], what: str) -> dict[str, Any]:
    """The EventSpecInput of `--index`, `--outcome` or `--survival` codes (one domain), or
    DEATH."""
    if [c.strip().upper() for c in concepts] == ["DEATH"]:
        return {"domain": "DEATH"}
    domains = {_DOMAINS.get(str(concept(c)["vocabulary"]).upper()) for c in concepts}
    if len(domains) != 1 or None in domains:
        raise ValueError(f"--{what} codes are of one domain (ATC/RxNorm, ICD10/SNOMED or LOINC)")
    return event(str(domains.pop()), concepts)


def _index(args: argparse.Namespace) -> dict[str, Any] | None:
    """`--index` (and `--index-from`): each person's first such event, for an incidence rate
    (`--outcome`) or a survival curve (`--survival`)."""
    follows = bool(args.outcome) or args.survival is not None or bool(args.regression)
    if not args.index:
        if follows:
            raise ValueError(
                "an incidence rate or a survival curve follows each person from an --index event"
            )
        return None
    if not follows:
        raise ValueError("--index is for an incidence rate (--outcome) or a curve (--survival)")
    window = (args.index_from, None) if args.index_from else None
    return index([_spec(args.index, "index")], window=window)


def _regression(args: argparse.Namespace, client: AsyncClient) -> tuple[str, dict[str, Any]]:
    """`--regression` with `--index`, `--y` and `--x`: the regression document and variables
    (a cohort of the `--sex` and `--age` criteria, or everyone with the index event)."""
    if args.concept or args.by or args.variable or args.outcome or args.survival:
        raise ValueError("a regression takes --index, --y, --x (and --sex, --age), nothing else")
    if not args.y:
        raise ValueError("a regression needs its outcome (--y)")
    request = args.request or client.request
    if request is None:
        raise ValueError("say which data request to ask under (--request)")
    criteria: dict[str, Any] = {}
    if args.sex:
        criteria["sex"] = args.sex
    if args.age:
        lo, hi = args.age
        criteria["age"] = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
    index_input = _index(args)
    assert index_input is not None
    variables = regression_variables(
        request=request,
        index=index_input,
        model=regression_model(args.regression, args.y, args.x),
        criteria=criteria,
        jurisdictions=[j.value for j in args.jurisdictions] if args.jurisdictions else None,
        reference_date=None,
        age_at=args.age_at,
        noise=args.noise,
        max_iterations=args.max_iterations,
    )
    return REGRESSION_DOCUMENT, variables


def _outcome(args: argparse.Namespace) -> dict[str, Any] | None:
    """`--outcome` as an incidence rate's outcome (none without)."""
    if not args.outcome:
        return None
    return outcome(_spec(args.outcome, "outcome"), days=args.follow_up, per=args.per)


def _survival(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.survival is None:
        return None
    return survival(
        _spec([args.survival], "survival"),
        interval_days=args.interval_days,
        max_days=args.max_days,
        group_by=args.group_by,
        by_country=not args.pooled_only,
    )


def _variable(args: argparse.Namespace) -> dict[str, Any] | None:
    """The `--variable` and its options as the gateway's VariableInput."""
    if args.variable is None:
        return None
    lo, hi = args.bounds if args.bounds is not None else (None, None)
    name = args.variable.strip().upper()
    if name == "AGE":
        return Variable.age(lo=lo, hi=hi, bin_width=args.bin_width)
    if not name.startswith("LOINC:"):
        raise ValueError("--variable is AGE or LOINC:CODE")
    return Variable.measurement(
        name, per_person=args.per_person, lo=lo, hi=hi, bin_width=args.bin_width
    )


async def _with_progress(
    work: Awaitable[Response], err: TextIO, members: Awaitable[list[str]] | None = None
) -> Response:
    """Await the answer; on a terminal, meanwhile, count the seconds on standard error and
    name the nodes waited for (`members`, when they are known in time)."""
    task: asyncio.Task[Response] = asyncio.ensure_future(work)
    if not err.isatty():
        return await task
    asked: asyncio.Future[list[str]] | None = None
    if members is not None:
        asked = asyncio.ensure_future(members)
    started = time.monotonic()
    tick = 0
    try:
        while not task.done():
            elapsed = time.monotonic() - started
            spinner = _SPINNER[tick % len(_SPINNER)]
            names = _names(asked)
            err.write(f"\r\033[K{spinner} asking {names} … {elapsed:4.1f} s")
            err.flush()
            tick += 1
            await asyncio.wait({task}, timeout=PROGRESS_INTERVAL_S)
    finally:
        if asked is not None and not asked.done():
            asked.cancel()
        err.write("\r\033[K")
        err.flush()
    return task.result()


def _names(asked: asyncio.Future[list[str]] | None) -> str:
    if asked is None or not asked.done() or asked.cancelled() or asked.exception() is not None:
        return "the federation"
    names = asked.result()
    return f"{len(names)} nodes ({', '.join(names)})" if names else "the federation"


async def federation_members(client: AsyncClient, chosen: Sequence[str] | None) -> list[str]:
    """The nodes a question goes to: the ones chosen, or every member (a public query)."""
    if chosen:
        return list(chosen)
    response = await client.execute("{ jurisdictions { code } }")
    members = response.data.get("jurisdictions")
    return [str(m["code"]) for m in members or () if isinstance(m, Mapping)]


def node_summary(response: Response) -> str:
    """Each node's status and latency, after the answer (for standard error)."""
    lines = []
    for answer in response:
        elapsed = f" in {response.elapsed_ms / 1000:.1f} s" if response.elapsed_ms else ""
        lines.append(f"{answer.name}: answered{elapsed}, trace {answer.trace_id or '-'}")
        for node in answer.nodes:
            latency = f"{node.latency_ms:.0f} ms" if node.latency_ms is not None else "-"
            why = "" if node.status == "OK" else f"  {node.why() or ''}"
            lines.append(f"  {node.jurisdiction}  {node.status or '-':<11} {latency:>8}{why}")
    return "\n".join(lines) + "\n" if lines else ""


def write_csv(rows: Sequence[Row], out: IO[str]) -> None:
    """Tidy rows as CSV (the columns of `tessera.client.frames`; stdlib only)."""
    import csv

    from tessera.client.frames import columns_of

    columns = columns_of(rows)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row[c] for c in columns])


# --- the answer as tables --------------------------------------------------------------------

_LABELS: Final = ("jurisdiction", "sex", "age_band", "calendar_year", "value_bin")


def render(response: Response) -> str:
    parts = [render_answer(answer) for answer in response]
    fits = {
        k: v for k, v in response.data.items() if isinstance(v, Mapping) and "coefficients" in v
    }
    parts += [render_regression(name, fit) for name, fit in fits.items()]
    others = {k: v for k, v in response.data.items() if k not in response.answers and k not in fits}
    if others:
        parts.append(json.dumps(others, indent=2, ensure_ascii=False))
    return "\n\n".join(parts) + "\n"


def render_answer(answer: Answer) -> str:
    lines = [f"{answer.name}  query {answer.query_id or '-'}  trace {answer.trace_id or '-'}"]
    if answer.count is not None:
        pooled = _count_text(answer.total_rows()[0])
        if answer.count.contributors:
            pooled += f"  (pooled securely: {', '.join(answer.count.contributors)})"
        lines.append(f"  pooled count: {pooled}")
    if answer.nodes:
        rows = [
            [
                node.jurisdiction,
                node.status or "",
                f"{node.latency_ms:.0f} ms" if node.latency_ms is not None else "",
                _count_text(row),
                format_spend(node.privacy),
                _shown_reasons(row.get("reasons")),
            ]
            for node, row in zip(answer.nodes, answer.node_rows(), strict=True)
        ]
        lines.append(text_table(["country", "node", "latency", "count", "privacy ρ", "why"], rows))
    summary = answer.summary_rows()
    if summary:
        lines.append("  summary of the variable (value ± the noise's sd)")
        lines.append(_summary_table(summary, ["jurisdiction"]))
    rates = answer.rate_rows()
    if rates:
        per = rates[0].get("per")
        lines.append(f"  incidence rate per {per:,} person-years (value ± the noise's sd)")
        lines.append(_summary_table(rates, ["jurisdiction"]))
    for table_ in answer.tables.values():
        lines.append(f"  breakdown by {', '.join(table_.by)} ({len(table_.rows)} cells)")
        labels = [c for c in _LABELS if any(c in row for row in table_.rows)]
        if labels == ["jurisdiction"] or (
            labels and all(row.get("jurisdiction") == POOLED for row in table_.rows)
        ):
            labels = [c for c in labels if c != "jurisdiction"] or labels
        rows = [
            [
                *(_label(row, c) for c in labels),
                _count_text(row),
                row.get("status") or row.get("node_status") or "",
                _shown_reasons(row.get("reasons")),
            ]
            for row in table_.rows
        ]
        lines.append(text_table([*labels, "count", "status", "why"], rows))
        if "VALUE_BIN" in table_.by:
            quartiles = answer.quantile_rows(table_.name)
            if quartiles:
                lines.append("  quartiles from the released bins (± the bin width)")
                lines.append(_summary_table(quartiles, [c for c in labels if c != "value_bin"]))
        elif summary:
            cells = answer.summary_rows(table_.name)
            if cells:
                lines.append(f"  summary by {', '.join(table_.by)}")
                lines.append(_summary_table(cells, labels))
        if rates:
            cells = answer.rate_rows(table_.name)
            if cells:
                lines.append(f"  incidence rate by {', '.join(table_.by)}")
                lines.append(_summary_table(cells, labels))
    lines += _survival_lines(answer)
    return "\n".join(lines)


def _survival_lines(answer: Answer) -> list[str]:
    """The pooled survival curves (every country's are in --csv and --json) and each
    log-rank test."""
    raw = answer.raw.get("survival")
    if not raw:
        return []
    lines = []
    curves: dict[str, list[Row]] = {}
    for row in survival_rows(raw):
        if row["jurisdiction"] == POOLED:
            group = row.get("sex") or row.get("age_band") or "everyone"
            curves.setdefault(str(group), []).append(row)
    for group, rows in curves.items():
        lines.append(f"  survival, pooled: {group} (S at the interval's end, 95% band ± sd)")
        lines.append(
            text_table(
                ["days", "at risk", "events", "censored", "survival", "95% band", "why"],
                [
                    [
                        f"{r['start']}-{r['end']}",
                        _number(r["at_risk"]),
                        _number(r["events"]),
                        _number(r["censored"]),
                        "—"
                        if r["survival"] is None
                        else f"{r['survival']:.3f} ±{r['sd'] or 0:.2g}",
                        "" if r["ci_low"] is None else f"{r['ci_low']:.3f}-{r['ci_high']:.3f}",
                        _shown_reasons(r["reasons"]),
                    ]
                    for r in rows
                ],
            )
        )
    for test in log_rank_rows(raw):
        lines.append(
            f"  log-rank by {test['dimension']} ({test['jurisdiction']}): "
            f"χ² {test['statistic']:.2f}, {test['degrees_of_freedom']} df, p {test['p_value']:.3g}"
            if test["statistic"] is not None
            else f"  log-rank by {test['dimension']} ({test['jurisdiction']}): {test['status']}"
        )
    return lines


def _number(value: float | None) -> str:
    return "low" if value is None else f"{value:,.0f}"


def _summary_table(rows: Sequence[Row], labels: Sequence[str]) -> str:
    """Estimates (one row per statistic) as one line per group: each statistic's value, with
    its noise's sd (or bound), or its status when withheld."""
    groups: dict[tuple[str, ...], dict[str, str]] = {}
    statistics: list[str] = []
    for row in rows:
        key = tuple(_label(row, c) for c in labels)
        name = str(row["statistic"])
        if name not in statistics:
            statistics.append(name)
        groups.setdefault(key, {})[name] = _estimate_text(row)
    return text_table(
        [*labels, *statistics],
        [[*key, *(found.get(s, "") for s in statistics)] for key, found in groups.items()],
    )


def _estimate_text(row: Mapping[str, Any]) -> str:
    value = row.get("value")
    if value is None:
        return str(row.get("status") or "—").lower()
    spread = row.get("sd") or row.get("bound")
    whole = row.get("statistic") in ("n", "events")
    number = f"{value:,.0f}" if whole else f"{value:.3g}"
    return f"{number} ±{spread:.2g}" if spread else number


def _label(row: Row, column: str) -> str:
    value = row.get(column)
    return "UNKNOWN" if value is None and column == "calendar_year" else str(value or "")


def _count_text(row: Mapping[str, Any]) -> str:
    if row.get("status") is None:
        return "—"  # not released: the node did not answer
    return format_count(row)


def _shown_reasons(reasons: str | None) -> str:
    """The reasons the count itself does not say (its ± sd, its pooling)."""
    kept: Iterable[str] = (
        r
        for r in (reasons or "").split(";")
        if r and r.rpartition(":")[2] not in SHOWN_BY_THE_COUNT
    )
    return " ".join(kept)
