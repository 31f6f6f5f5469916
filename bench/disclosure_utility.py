"""What the protection costs researchers, measured through the real endpoint.

    python -m bench.disclosure_utility [--persons 100000] [--quick] [--draws N] [--dir DIR]

Starts a federation like the demo's (FR, DE, FI, DK, `--persons` each, synthesised once and
kept in DIR, default `.tessera/bench/utility-<persons>`), asks its questions through the
gateway's GraphQL endpoint as researchers with an identity token and one permit per country,
and compares every released number with the truth, computed straight from each node's DuckDB
file by SQL of its own (`bench.truth`). It prints

1. for E11 (type 2 diabetes) by SEX × AGE_BAND_10, by JURISDICTION × AGE_BAND_10, and by
   AGE_BAND_5 × CALENDAR_YEAR (index event 2015–2025), per country and pooled: the share
   released of the cells whose true count is at least the minimum plus three noise sds, the
   share of every cell of the public domain released, the bias and the mean absolute error;
2. margins: each table asked alone, then with its two margins (by the same applicant: the
   table's stored draw is shared, so its cells are the very same; and by fresh applicants,
   margins asked at once), and what the margins cost;
3. per noise profile (standard, `noise: COARSE`): the error, and how many tables and
   questions (a total and one table) a person can be counted in before dropping out, from the
   privacy lines of the answers;
4. a 30-question study session by one researcher (`bench.study`): what they see, how far it
   was from the truth, and from which question persons dropped out of the counts.

Every measurement is made by a fresh applicant (a researcher and an organisation of their
own: nothing spent, nothing stored, noise of its own); `--draws` of them per table and
profile (40; `--quick` 5) estimate bias and error. The bench's federation forgets every
applicant at the start of a run (its nodes' ledgers and stored answers are emptied; the
databases and person indexes are kept), and its rate limits are raised: it asks as many
researchers. Nothing is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import aiohttp

from bench.cohorts import (
    AGE5,
    AGE10,
    E11,
    JURISDICTION,
    SEX,
    YEAR,
    Breakdown,
    Cohort,
    Noise,
    Question,
    Table,
    domain,
    node_table,
    split_key,
)
from bench.report import Figure, Report, goal_at_least, goal_at_most
from bench.researcher import Answer, Applicant, Released, Researcher, inner_cells
from bench.study import SESSION, LedgerReplay, Step, replay_step, summarise
from bench.truth import Person, persons, tabulate, with_jurisdiction
from bench.utility_report import print_report
from bench.utility_results import (
    CLEAR_SDS,
    POOLED,
    Asked,
    MarginRun,
    Results,
    TableRun,
    Tally,
    profiles,
)
from schema.codes import Jurisdiction
from tessera.local import LocalFederation, policies_with_rate_limits
from tessera.processes import free_port

REPO: Final = Path(__file__).resolve().parents[1]
COUNTRIES: Final = (Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK)
DRAWS: Final = 40
QUICK_DRAWS: Final = 5
NOT_RELEASED: Final = Released(None, "REJECTED", None)

E11_RECENT: Final = E11.within(dt.date(2015, 1, 1), dt.date(2025, 12, 31))

TABLES: Final = (
    Table(
        "E11 by SEX × AGE_BAND_10", Cohort((E11,)), (JURISDICTION, SEX, AGE10), ((SEX,), (AGE10,))
    ),
    Table(
        "E11 by JURISDICTION × AGE_BAND_10",
        Cohort((E11,)),
        (JURISDICTION, AGE10),
        ((JURISDICTION,), (AGE10,)),
    ),
    Table(
        "E11 2015–2025 by AGE_BAND_5 × CALENDAR_YEAR",
        Cohort((E11_RECENT,)),
        (JURISDICTION, AGE5, YEAR),
        ((AGE5,), (YEAR,)),
    ),
)


class Bench:
    """The run's federation, its researchers and the truth, cached per node and cohort."""

    def __init__(
        self,
        federation: LocalFederation,
        session: aiohttp.ClientSession,
        results: Results,
        concurrency: int,
    ) -> None:
        self.federation = federation
        self.session = session
        self.results = results
        self._truth: dict[tuple[Jurisdiction, Cohort], list[Person]] = {}
        self._counts: dict[tuple[Jurisdiction, Cohort, Breakdown], Counter[tuple[str, ...]]] = {}
        self._gate = asyncio.Semaphore(concurrency)

    def truth(self, jurisdiction: Jurisdiction, cohort: Cohort) -> list[Person]:
        key = (jurisdiction, cohort)
        if key not in self._truth:
            self._truth[key] = persons(self.federation.database(jurisdiction), cohort)
        return self._truth[key]

    def counts(
        self, jurisdiction: Jurisdiction, cohort: Cohort, table: Breakdown
    ) -> Counter[tuple[str, ...]]:
        key = (jurisdiction, cohort, table)
        if key not in self._counts:
            self._counts[key] = tabulate(self.truth(jurisdiction, cohort), table)
        return self._counts[key]

    def researcher(self, label: str) -> Researcher:
        return Researcher(self.federation, Applicant.fresh(label), self.session)

    async def ask(self, researcher: Researcher, question: Question) -> Answer:
        async with self._gate:
            answer = await researcher.ask(question)
        self.results.asked.append(Asked(researcher.applicant, question, answer))
        return answer

    def clear(self, jurisdiction: Jurisdiction, truth: int, sd: float) -> bool:
        return truth >= self.results.minimums[jurisdiction] + CLEAR_SDS * sd

    def tally(self, run: TableRun, answer: Answer) -> int:
        """Add an answer's cells to `run`; returns the inner cells released (every country).
        A country whose answer the gateway rejected released none of its cells."""
        table = run.table
        cohort = table.cohort
        node = node_table(table.by)
        if answer.answered:
            run.sd = answer.privacy(answer.answered[0]).sigma
        released = 0
        clear_parts: dict[tuple[str, ...], bool] = {}
        cells = dict(answer.tables[table.by])
        for jurisdiction in answer.rejected:
            run.tallies[jurisdiction.value].rejected += 1
            for node_key in domain(node, cohort):
                cells[with_jurisdiction(table.by, node_key, jurisdiction.value)] = NOT_RELEASED
        for key, value in cells.items():
            code, node_key = split_key(table.by, key)
            assert code is not None
            jurisdiction = Jurisdiction(code)
            truth = self.counts(jurisdiction, cohort, node)[node_key]
            clear = self.clear(jurisdiction, truth, run.sd)
            if jurisdiction in answer.answered:
                clear_parts[node_key] = clear_parts.get(node_key, True) and clear
            run.tallies[code].add(truth, value, clear)
            released += value.value is not None
        strictest = max((self.results.minimums[j] for j in answer.answered), default=0)
        for key, value in answer.tables[table.pooled].items():
            _, node_key = split_key(table.pooled, key)
            truth = sum(self.counts(j, cohort, node)[node_key] for j in answer.answered)
            if value.contributors:
                # Pooled securely: one noise of the pooled sd on the whole, checked against the
                # strictest minimum of the countries in it.
                clear = truth >= strictest + CLEAR_SDS * run.sd
            else:
                # The sum of released parts: released when every part is, so it should be when
                # every part is clear of its country's minimum.
                clear = clear_parts.get(node_key, False)
            run.tallies[POOLED].add(truth, value, clear)
        return released


async def measure_table(
    bench: Bench, table: Table, noise: Noise, draws: int, margins: MarginRun | None
) -> TableRun:
    """`draws` fresh applicants each ask `table` alone; with `margins`, each then asks it
    again with its margins, and as many other fresh applicants ask it with its margins at
    once."""
    minimums = bench.results.minimums
    tallies = {j.value: Tally(minimums[j]) for j in bench.federation.jurisdictions}
    tallies[POOLED] = Tally(max(minimums.values()))
    run = TableRun(table, noise, tallies)

    async def one(draw: int) -> None:
        researcher = bench.researcher(f"table{draw}")
        alone = await bench.ask(researcher, table.alone(noise))
        if alone.answered:
            first = alone.privacy(alone.answered[0])
            run.question_rho, run.cap_rho = first.question_rho, first.cap_rho
        run.inner_released.append(bench.tally(run, alone))
        if margins is None:
            return
        later = await bench.ask(researcher, table.with_margins(noise))
        margins.draws += 1
        margins.alone_rho.append(_cost(alone))
        margins.alone_released.append(_released(alone, table.by))
        margins.later_rho.append(_cost(later))
        if alone.answered == later.answered:
            same = all(
                inner_cells(alone, by) == inner_cells(later, by) for by in (table.by, table.pooled)
            )
            margins.identical += same
            margins.same_released += _released(later, table.by) == _released(alone, table.by)
        else:
            margins.rejected += 1
        fresh = await bench.ask(bench.researcher(f"margins{draw}"), table.with_margins(noise))
        margins.at_once_rho.append(_cost(fresh))
        margins.at_once_released.append(_released(fresh, table.by))

    await asyncio.gather(*(one(draw) for draw in range(draws)))
    return run


def _cost(answer: Answer) -> float:
    """What the question charged each person counted (the nodes' profiles are alike)."""
    return answer.privacy(answer.answered[0]).question_rho if answer.answered else math.nan


def _released(answer: Answer, by: Breakdown) -> int:
    return sum(value.value is not None for value in answer.tables[by].values())


async def study_session(bench: Bench, replay: LedgerReplay) -> list[Step]:
    """The session's questions, in order, by one fresh researcher."""
    researcher = bench.researcher("study")
    steps = []
    for number, question in enumerate(SESSION, start=1):
        answer = await bench.ask(researcher, question)
        steps.append(replay_step(number, question, answer, bench.truth, replay))
    return steps


async def minimums(session: aiohttp.ClientSession, url: str) -> dict[Jurisdiction, int]:
    """Each member's minimum count, as the gateway publishes it (no token needed)."""
    async with session.post(url, json={"query": "{ jurisdictions { code minCount } }"}) as r:
        body = await r.json(content_type=None)
    return {Jurisdiction(m["code"]): int(m["minCount"]) for m in body["data"]["jurisdictions"]}


async def run(
    federation: LocalFederation, *, draws: int, concurrency: int = 4, session_study: bool = True
) -> Results:
    """Every measurement against a running federation."""
    async with aiohttp.ClientSession() as session:
        results = Results(
            persons=federation.persons,
            draws=draws,
            minimums=await minimums(session, federation.gateway_url),
        )
        bench = Bench(federation, session, results, concurrency)
        for table in TABLES:
            for jurisdiction in federation.jurisdictions:
                bench.truth(jurisdiction, table.cohort)
        for table in TABLES:
            margins = MarginRun(table)
            results.tables.append(await measure_table(bench, table, "STANDARD", draws, margins))
            results.margins.append(margins)
        for table in TABLES:
            results.tables.append(await measure_table(bench, table, "COARSE", draws, None))
        if session_study:
            results.session = await study_session(bench, results.replay)
    return results


def federation(directory: Path, persons: int) -> LocalFederation:
    """The demo's four countries, databases synthesised once and kept in `directory`, every
    applicant forgotten."""
    fed = LocalFederation(
        directory=directory,
        jurisdictions=COUNTRIES,
        persons=persons,
        gateway_port=free_port(),
        node_ports=[free_port() for _ in COUNTRIES],
        console=False,
        policies=policies_with_rate_limits(
            directory / "policies", per_minute=100_000, per_day=1_000_000
        ),
    )
    fed.prepare(progress=True)
    for jurisdiction in COUNTRIES:
        forget_applicants(fed.node_state(jurisdiction))
    return fed


def forget_applicants(state: Path) -> None:
    """Empty a node's ledger and stored answers (not its person secret and index, which the
    database was prepared against): every applicant starts afresh."""
    shutil.rmtree(state / "ledger", ignore_errors=True)
    for suffix in ("", "-wal", "-shm"):
        (state / f"answers.sqlite3{suffix}").unlink(missing_ok=True)


def figures(results: Results) -> list[Figure]:
    """The key figures with their goals (the issue's): for `python -m bench`."""
    standard, coarse = profiles(results)
    runs = [r for r in results.tables if r.noise == "STANDARD"]
    margins_same = sum(m.identical for m in results.margins)
    margins_draws = sum(m.draws for m in results.margins)
    summary = summarise(results.session)
    return [
        Figure(
            "clear cells released, lowest country and table",
            100 * standard.clear_share,
            "%",
            "≥ 98%",
            goal_at_least(standard.clear_share, 0.98),
            f"cells whose truth is at least the minimum + {CLEAR_SDS} sd, over {len(runs)}"
            f" tables, {results.draws} applicants each",
        ),
        Figure(
            "bias of clear released cells",
            standard.bias,
            "persons",
            "|bias| < 0.5",
            goal_at_most(abs(standard.bias), 0.5),
            f"± {standard.bias_se:.2f} (standard error)",
        ),
        Figure(
            "inner cells unchanged by their margins",
            100 * margins_same / max(margins_draws, 1),
            "%",
            "100%",
            margins_same == margins_draws,
        ),
        Figure("mean absolute error, standard noise", standard.mae, "persons"),
        Figure("mean absolute error, coarse noise", coarse.mae, "persons"),
        Figure("tables a person is counted in, standard noise", standard.tables, "tables"),
        Figure("tables a person is counted in, coarse noise", coarse.tables, "tables"),
        Figure(
            "study session: first question with drop-outs",
            math.nan if summary.first_dropped is None else summary.first_dropped,
            "of 30",
            detail=f"the worst-case spend passed the cap at question {summary.cap_passed}",
        ),
    ]


async def bench(report: Report, cache: Path, *, persons: int = 100_000) -> None:
    """The quick set's figures, for `python -m bench`."""
    report.section(
        f"5. What protection costs researchers ({persons:,} persons per country,"
        f" {QUICK_DRAWS} fresh applicants per table; bench/disclosure_utility.py)"
    )
    fed = await asyncio.to_thread(federation, cache / f"utility-{persons}", persons)
    try:
        await fed.start()
        results = await run(fed, draws=QUICK_DRAWS)
    finally:
        fed.stop()
    report.add(*figures(results))
    summary = summarise(results.session)
    report.data["utility"] = {
        "persons": persons,
        "draws": QUICK_DRAWS,
        "profiles": [
            {"noise": p.noise, "sd": p.sd, "mae": p.mae, "bias": p.bias, "tables": p.tables}
            for p in profiles(results)
        ],
        "session": summary.lines(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.disclosure_utility", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--persons", type=int, default=100_000, help="per country")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_DRAWS} applicants per table")
    parser.add_argument("--draws", type=int, help=f"fresh applicants per table (default {DRAWS})")
    parser.add_argument("--dir", type=Path, help="where the federation is kept")
    args = parser.parse_args(argv)
    draws = args.draws or (QUICK_DRAWS if args.quick else DRAWS)
    directory = args.dir or REPO / ".tessera" / "bench" / f"utility-{args.persons}"
    fed = federation(directory, args.persons)

    async def measure() -> Results:
        await fed.start()
        return await run(fed, draws=draws)

    try:
        results = asyncio.run(measure())
    finally:
        fed.stop()
    print_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
