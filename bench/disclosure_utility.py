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
import statistics
import sys
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp

from bench.cohorts import (
    AGE5,
    AGE10,
    E11,
    JURISDICTION,
    REFERENCE_DATE,
    SEX,
    YEAR,
    Breakdown,
    Cohort,
    Noise,
    Question,
    domain,
    node_table,
    split_key,
)
from bench.report import Figure, Report, goal_at_least, goal_at_most
from bench.researcher import Answer, Applicant, Released, Researcher
from bench.study import DRIFT_Z, SESSION, LedgerReplay, Step, replay_step
from bench.truth import Person, persons, tabulate, with_jurisdiction
from schema.codes import Jurisdiction
from tessera.local import LocalFederation, policies_with_rate_limits
from tessera.processes import free_port

REPO: Final = Path(__file__).resolve().parents[1]
COUNTRIES: Final = (Jurisdiction.FR, Jurisdiction.DE, Jurisdiction.FI, Jurisdiction.DK)
DRAWS: Final = 40
QUICK_DRAWS: Final = 5
# Released cells whose truth is at least the minimum plus this many noise sds: the cells a
# researcher should get (each is LOW with a chance of 0.13%).
CLEAR_SDS: Final = 3
POOLED: Final = "pooled"
NOT_RELEASED: Final = Released(None, "REJECTED", None)

E11_RECENT: Final = E11.within(dt.date(2015, 1, 1), dt.date(2025, 12, 31))


@dataclass(frozen=True, slots=True)
class Table:
    """A table measured per country (`by` starts with JURISDICTION) and pooled."""

    name: str
    cohort: Cohort
    by: Breakdown
    margins: tuple[Breakdown, ...]

    @property
    def pooled(self) -> Breakdown:
        return tuple(d for d in self.by if d is not JURISDICTION)

    def alone(self, noise: Noise = "STANDARD") -> Question:
        return Question(self.cohort, (self.by, self.pooled), noise)

    def with_margins(self, noise: Noise = "STANDARD") -> Question:
        tables = tuple(dict.fromkeys((self.by, self.pooled, *self.margins)))
        return Question(self.cohort, tables, noise)


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


@dataclass(frozen=True, slots=True)
class Asked:
    """One question as asked and answered: everything the run saw, for checks."""

    applicant: Applicant
    question: Question
    answer: Answer


@dataclass
class Tally:
    """Released cells of one table and country (or pooled) against the truth, over draws."""

    minimum: int
    cells: int = 0  # cells seen (domain cells × draws)
    released: int = 0
    released_empty: int = 0  # released although nobody is in the cell
    clear: int = 0  # cells whose truth is at least minimum + CLEAR_SDS sds
    clear_released: int = 0
    errors: list[int] = field(default_factory=list)  # released - truth, every released cell
    clear_errors: list[int] = field(default_factory=list)
    rejected: int = 0  # draws whose answer the gateway's vetting rejected

    def add(self, truth: int, released: Released, clear: bool) -> None:
        self.cells += 1
        self.clear += clear
        if released.value is None:
            return
        error = released.value - truth
        self.released += 1
        self.released_empty += truth == 0
        self.errors.append(error)
        if clear:
            self.clear_released += 1
            self.clear_errors.append(error)

    @property
    def clear_share(self) -> float:
        return self.clear_released / self.clear if self.clear else math.nan

    @property
    def share(self) -> float:
        return self.released / self.cells if self.cells else math.nan

    @property
    def bias(self) -> float:
        return statistics.fmean(self.clear_errors) if self.clear_errors else math.nan

    @property
    def bias_se(self) -> float:
        errors = self.clear_errors
        return statistics.stdev(errors) / math.sqrt(len(errors)) if len(errors) > 1 else math.nan

    @property
    def bias_all(self) -> float:
        return statistics.fmean(self.errors) if self.errors else math.nan

    @property
    def mae(self) -> float:
        errors = self.clear_errors
        return statistics.fmean(abs(e) for e in errors) if errors else math.nan

    def merged(self, other: Tally) -> Tally:
        return Tally(
            min(self.minimum, other.minimum),
            self.cells + other.cells,
            self.released + other.released,
            self.released_empty + other.released_empty,
            self.clear + other.clear,
            self.clear_released + other.clear_released,
            self.errors + other.errors,
            self.clear_errors + other.clear_errors,
            self.rejected + other.rejected,
        )


@dataclass
class TableRun:
    """One table at one noise level, over fresh applicants."""

    table: Table
    noise: Noise
    tallies: dict[str, Tally]
    sd: float = math.nan  # of each country's cells
    question_rho: float = math.nan  # a fresh applicant's first question: total + the table
    cap_rho: float = math.nan
    inner_released: list[int] = field(default_factory=list)  # per draw, every country's

    @property
    def node_tables(self) -> int:
        return len(self.table.alone(self.noise).node_tables)

    @property
    def table_rho(self) -> float:
        return self.question_rho / self.node_tables

    def countries(self) -> Tally:
        found = [t for name, t in self.tallies.items() if name != POOLED]
        total = found[0]
        for tally in found[1:]:
            total = total.merged(tally)
        return total


@dataclass
class MarginRun:
    table: Table
    draws: int = 0
    identical: int = 0  # draws whose inner cells were the same with the margins asked later
    same_released: int = 0  # draws whose inner cells released were as many
    rejected: int = 0  # draws where a node's answer was rejected with the margins only
    alone_released: list[int] = field(default_factory=list)  # inner cells, every country's
    alone_rho: list[float] = field(default_factory=list)
    later_rho: list[float] = field(default_factory=list)  # the margins asked later
    at_once_rho: list[float] = field(default_factory=list)  # fresh, margins asked at once
    at_once_released: list[int] = field(default_factory=list)


@dataclass
class Results:
    persons: int
    draws: int
    minimums: dict[Jurisdiction, int]
    tables: list[TableRun] = field(default_factory=list)
    margins: list[MarginRun] = field(default_factory=list)
    session: list[Step] = field(default_factory=list)
    asked: list[Asked] = field(default_factory=list)


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
        for key, value in answer.tables[table.pooled].items():
            _, node_key = split_key(table.pooled, key)
            # Pooled over the nodes that answered; released when every part is, so it should
            # be when every part is clear of its country's minimum.
            truth = sum(self.counts(j, cohort, node)[node_key] for j in answer.answered)
            run.tallies[POOLED].add(truth, value, clear_parts.get(node_key, False))
        return released


def inner_cells(answer: Answer, by: Breakdown) -> dict[tuple[str, ...], int | None]:
    return {key: value.value for key, value in answer.tables[by].items()}


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


async def study_session(bench: Bench) -> list[Step]:
    """The session's questions, in order, by one fresh researcher."""
    researcher = bench.researcher("study")
    replay = LedgerReplay()
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
            results.session = await study_session(bench)
    return results


# -- the federation ------------------------------------------------------------------------


def federation(directory: Path, persons: int) -> LocalFederation:
    """The demo's four countries, databases synthesised once and kept in `directory`, every
    applicant forgotten."""
    fed = LocalFederation(
        directory=directory,
        jurisdictions=COUNTRIES,
        persons=persons,
        gateway_port=free_port(),
        node_ports=[free_port() for _ in COUNTRIES],
        graphiql=False,
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


# -- printing ------------------------------------------------------------------------------


def _pct(share: float) -> str:
    return "—" if math.isnan(share) else f"{share:.1%}"


def _num(value: float, spec: str = "+.2f") -> str:
    return "—" if math.isnan(value) else format(value, spec)


def print_tables(results: Results, noise: Noise) -> None:
    for run in (r for r in results.tables if r.noise == noise):
        cells = next(iter(run.tallies.values())).cells // max(results.draws, 1)
        print(f"\n{run.table.name}: {cells} cells per country, noise sd {run.sd:g}")
        print(
            f"  {'':<7} {'min':>4} {'clear':>6} {'released':>9} {'all':>7} {'empty':>6}"
            f" {'bias (clear)':>14} {'bias (all)':>10} {'MAE':>5} {'rejected':>8}"
        )
        for name, t in run.tallies.items():
            print(
                f"  {name:<7} {t.minimum:>4} {t.clear / max(results.draws, 1):>6.1f}"
                f" {_pct(t.clear_share):>9} {_pct(t.share):>7}"
                f" {_pct(t.released_empty / t.released if t.released else math.nan):>6}"
                f" {_num(t.bias):>7} ± {_num(t.bias_se, '.2f'):<4} {_num(t.bias_all):>10}"
                f" {_num(t.mae, '.2f'):>5} {t.rejected if name != POOLED else '':>8}"
            )


def print_margins(results: Results) -> None:
    print(
        f"\n  {'table':<44} {'inner cells released':>21} {'margins later':>14}"
        f" {'at once':>13}   {'rho: alone':>10} {'+margins':>9} {'at once':>8}"
    )
    for m in results.margins:
        print(
            f"  {m.table.name:<44} {_mean_se(m.alone_released):>21}"
            f" {f'{m.identical}/{m.draws - m.rejected} same':>14}"
            f" {_mean_se(m.at_once_released):>13}   {_mean(m.alone_rho):>10.3f}"
            f" {_mean(m.later_rho):>9.3f} {_mean(m.at_once_rho):>8.3f}"
        )


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _mean_se(values: Sequence[int]) -> str:
    if len(values) < 2:
        return _num(_mean(values), ".1f")
    se = statistics.stdev(values) / math.sqrt(len(values))
    return f"{statistics.fmean(values):.1f} ± {se:.1f}"


@dataclass(frozen=True, slots=True)
class Profile:
    noise: Noise
    sd: float
    mae: float
    bias: float
    bias_se: float
    clear_share: float  # the lowest of every table and country
    share: float
    table_rho: float
    cap_rho: float
    rejected: int  # country answers the gateway rejected
    answers: int

    @property
    def tables(self) -> int:
        return math.floor(self.cap_rho / self.table_rho + 1e-9)

    @property
    def questions(self) -> int:
        """Questions of a new total and one table."""
        return math.floor(self.cap_rho / (2 * self.table_rho) + 1e-9)


def profiles(results: Results) -> list[Profile]:
    found = []
    for noise in ("STANDARD", "COARSE"):
        runs = [r for r in results.tables if r.noise == noise]
        if not runs:
            continue
        tallies = [r.countries() for r in runs]
        every = tallies[0]
        for t in tallies[1:]:
            every = every.merged(t)
        lowest = min(
            (t.clear_share for r in runs for n, t in r.tallies.items() if n != POOLED and t.clear),
            default=math.nan,
        )
        found.append(
            Profile(
                noise,
                runs[0].sd,
                every.mae,
                every.bias,
                every.bias_se,
                lowest,
                every.share,
                runs[0].table_rho,
                runs[0].cap_rho,
                every.rejected,
                sum(len(r.tallies) - 1 for r in runs) * results.draws,
            )
        )
    return found


def print_profiles(results: Results) -> None:
    print(
        f"\n  {'noise':<9} {'sd':>3} {'MAE':>5} {'bias':>13} {'clear released':>15}"
        f" {'all':>6} {'rejected':>9} {'rho/table':>10} {'tables':>7} {'questions':>10}"
    )
    for p in profiles(results):
        print(
            f"  {p.noise:<9} {p.sd:>3g} {p.mae:>5.2f} {p.bias:>+6.2f} ± {p.bias_se:.2f}"
            f" {_pct(p.clear_share):>15} {_pct(p.share):>6} {f'{p.rejected}/{p.answers}':>9}"
            f" {p.table_rho:>10.4f}"
            f" {p.tables:>7} {p.questions:>10}"
        )


def _seen(value: Released) -> str:
    if value.value is None:
        return value.status
    return f"{value.value:,} ± {value.sd:g}" if value.sd else f"{value.value:,}"


def privacy_line(answer: Answer) -> str:
    """The privacy line as the researcher reads it: +question → spent / cap (every node)."""
    lines = {answer.privacy(j) for j in answer.answered}
    if not lines:
        return "—"
    line = max(lines, key=lambda p: p.spent_rho)
    text = f"+{line.question_rho:.3f} → {line.spent_rho:.3f}/{line.cap_rho:g}"
    return text + (" (nodes differ)" if len(lines) > 1 else "")


def print_session(steps: Sequence[Step]) -> None:
    print(
        f"\n  {'#':>2} {'question':<50} {'the researcher sees':<27} {'privacy (each node)':<22}"
        f" {'error':>5} {'z':>6} {'z′':>5} {'dropped':>7}"
    )
    for step in steps:
        answer = step.answer
        seen = _seen(answer.count)
        cells = [c for by in step.question.tables for c in answer.tables[by].values()]
        if cells:
            seen += f", {sum(c.value is not None for c in cells)}/{len(cells)} cells"
        if answer.rejected:
            seen += f" ({', '.join(j.value for j in answer.rejected)} rejected)"
        value = answer.count.value
        error = "—" if value is None else f"{value - step.total_truth:+d}"
        print(
            f"  {step.number:>2} {step.question.label[:50]:<50} {seen:<27}"
            f" {privacy_line(answer):<22} {error:>5} {_z(step.drift_z):>6}"
            f" {_z(step.counted_z):>5} {step.dropped:>7}"
        )


def _z(z: float | None) -> str:
    return "—" if z is None else f"{z:+.1f}"


@dataclass(frozen=True, slots=True)
class SessionSummary:
    questions: int
    cap_passed: int | None  # first question whose worst-case spend passed the cap
    first_dropped: int | None  # first question with persons not counted (replay)
    first_drift: int | None  # first question released more than 3 sds below the truth
    dropped: int
    worst_drift: tuple[int, str, int, float] | None  # question, label, persons missing, z
    # The cohort asked most often, and its questions' drift in sds (number, z).
    most_asked: tuple[str, list[tuple[int, float | None]]]
    counted_z: float  # the largest |z| against the persons still counted
    free: int  # questions that cost nothing (every table stored)
    repeats_identical: bool
    privacy_adds_up: bool
    cost_mismatches: list[str]
    rejected: int  # node answers the gateway rejected
    total_abs_error: float  # mean |released - truth| of the totals before any drop-out
    total_noise_error: float  # what the noise alone gives them

    def lines(self) -> list[str]:
        def at(n: int | None) -> str:
            return "never" if n is None else f"question {n}"

        lines = [
            f"{self.questions} questions; {self.free} cost nothing (asked before: the same"
            f" numbers again: {'yes' if self.repeats_identical else 'NO'}); privacy lines add"
            f" up: {'yes' if self.privacy_adds_up else 'NO'}.",
            f"Before any drop-out, released totals (each once) were {self.total_abs_error:.1f}"
            f" persons from the truth on average (the noise alone: {self.total_noise_error:.1f}).",
            f"The worst-case spend passed the cap at {at(self.cap_passed)}; persons first"
            f" dropped out at {at(self.first_dropped)} (ledger replay: {self.dropped:,}"
            " person-answers not counted in all); released numbers first fell more than"
            f" 3 sds below the truth at {at(self.first_drift)}.",
        ]
        label, drifts = self.most_asked
        lines.append(
            f"The most-asked cohort, {label}, drifted (z by question): "
            + ", ".join(f"{n}: {_z(z)}" for n, z in drifts)
            + "."
        )
        if self.worst_drift is not None:
            number, label, missing, z = self.worst_drift
            lines.append(
                f"Worst: question {number} ({label}): {missing:,} persons not counted, its"
                f" released numbers {z:+.1f} sd from the truth."
            )
        lines.append(
            "Against the persons still counted (replay), every answer is within"
            f" {self.counted_z:.1f} sd: the noise's own."
        )
        if self.rejected:
            lines.append(f"{self.rejected} node answers were rejected by the gateway.")
        return lines


def summarise(steps: Sequence[Step]) -> SessionSummary:
    cap_passed = first_dropped = first_drift = None
    for step in steps:
        lines = [step.answer.privacy(j) for j in step.answer.answered]
        if cap_passed is None and any(p.spent_rho > p.cap_rho + 1e-12 for p in lines):
            cap_passed = step.number
        if first_dropped is None and step.dropped:
            first_dropped = step.number
        z = step.drift_z
        if first_drift is None and z is not None and z < DRIFT_Z:
            first_drift = step.number
    # Each total once: a total asked again is the same stored number.
    before = {
        (s.question.cohort.key(()), s.question.noise): (
            abs(s.answer.count.value - s.total_truth),
            s.answer.count.sd or math.nan,
        )
        for s in steps
        if s.answer.count.value is not None and (first_dropped is None or s.number < first_dropped)
    }
    drifting = [s for s in steps if s.drift_z is not None and s.drift_z < DRIFT_Z]
    worst = min(drifting, key=lambda s: s.drift_z or 0.0, default=None)
    return SessionSummary(
        questions=len(steps),
        cap_passed=cap_passed,
        first_dropped=first_dropped,
        first_drift=first_drift,
        dropped=sum(s.dropped for s in steps),
        worst_drift=None
        if worst is None
        else (
            worst.number,
            worst.question.label,
            worst.dropped,
            worst.drift_z or 0.0,
        ),
        most_asked=most_asked(steps),
        counted_z=max((abs(s.counted_z) for s in steps if s.counted_z is not None), default=0.0),
        free=sum(
            bool(s.answer.answered)
            and all(s.answer.privacy(j).question_rho == 0 for j in s.answer.answered)
            for s in steps
        ),
        repeats_identical=repeats_identical(steps),
        privacy_adds_up=not privacy_problems([s.answer for s in steps]),
        cost_mismatches=[m for s in steps for m in s.cost_mismatch],
        rejected=sum(len(s.answer.rejected) for s in steps),
        total_abs_error=_mean([error for error, _ in before.values()]),
        # E|X| = sd * sqrt(2 / pi) for Gaussian noise.
        total_noise_error=_mean([sd * math.sqrt(2 / math.pi) for _, sd in before.values()]),
    )


def most_asked(steps: Sequence[Step]) -> tuple[str, list[tuple[int, float | None]]]:
    asked = Counter(s.question.cohort for s in steps)
    cohort = asked.most_common(1)[0][0]
    return cohort.label, [(s.number, s.drift_z) for s in steps if s.question.cohort == cohort]


def repeats_identical(steps: Sequence[Step]) -> bool:
    """Every pooled number asked before (same cohort, table and noise) came back the same."""
    seen: dict[tuple[object, ...], dict[tuple[str, ...], int | None]] = {}
    same = True
    for step in steps:
        q = step.question
        tables: list[tuple[Breakdown, dict[tuple[str, ...], int | None]]] = [
            ((), {(): step.answer.count.value})
        ]
        tables += [(by, inner_cells(step.answer, by)) for by in q.tables]
        for by, cells in tables:
            key = (q.cohort.key(node_table(by)), by, q.noise)
            if key in seen:
                same = same and seen[key] == cells
            seen[key] = cells
    return same


def privacy_problems(answers: Sequence[Answer]) -> list[str]:
    """Where one applicant's privacy lines, in the order asked, do not add up: each node's
    spend is the previous one plus the question's cost, against a cap that stays. After an
    answer the gateway rejected (charged at the node, its line unseen) the spend may be
    more."""
    problems = []
    spent: dict[Jurisdiction, float] = {}
    unseen: set[Jurisdiction] = set()
    cap: float | None = None
    for n, answer in enumerate(answers, start=1):
        unseen.update(answer.rejected)
        for jurisdiction in answer.answered:
            line = answer.privacy(jurisdiction)
            cap = line.cap_rho if cap is None else cap
            before = spent.get(jurisdiction, 0.0) + line.question_rho
            adds_up = math.isclose(line.spent_rho, before, abs_tol=1e-9) or (
                jurisdiction in unseen and line.spent_rho > before
            )
            if not adds_up:
                problems.append(
                    f"question {n}, {jurisdiction.value}: spent {line.spent_rho:g} after"
                    f" {before - line.question_rho:g} + {line.question_rho:g}"
                )
            if line.cap_rho != cap:
                problems.append(f"question {n}, {jurisdiction.value}: the cap changed")
            if line.organisation_spent_rho is not None and not math.isclose(
                line.organisation_spent_rho, line.spent_rho, abs_tol=1e-9
            ):
                problems.append(f"question {n}, {jurisdiction.value}: organisation spend differs")
            spent[jurisdiction] = line.spent_rho
            unseen.discard(jurisdiction)
    return problems


def note(text: str) -> None:
    """A legend under a table, wrapped to the tables' width."""
    print()
    print(textwrap.fill(text, width=98, initial_indent="  ", subsequent_indent="  "))


def print_report(results: Results) -> None:
    countries = ", ".join(j.value for j in results.minimums if j in COUNTRIES)
    print(
        f"\nWhat the protection costs: {results.persons:,} synthetic persons per country"
        f" ({countries}), reference date {REFERENCE_DATE},\n{results.draws} fresh applicants"
        " per table and noise profile"
    )
    print("\n1. Tables, standard noise")
    print_tables(results, "STANDARD")
    note(
        f"clear: cells per draw whose truth ≥ minimum + {CLEAR_SDS} sd (pooled: every part's);"
        " released: share of those released; all: share of every cell of the public domain"
        " released; empty: share of released cells whose truth is 0; bias: mean released −"
        " truth over clear released cells ± its standard error (all: over every released"
        " cell; near the minimum a cell is released only when its noise drew it up); MAE:"
        " mean |released − truth| over clear released cells; rejected: draws whose answer"
        " the gateway rejected (the researcher got none of its cells)."
    )
    print("\n2. Margins: a table alone, then with its two margins")
    print_margins(results)
    note(
        "inner cells released: per draw, every country's cells (± standard error); margins"
        " later: the same applicant asks again with both margins (the same cells, the same"
        " values?); at once: fresh applicants ask with both margins; rho: what each question"
        " charged each person counted (alone, the margins asked later, all at once)."
    )
    print("\n3. Profiles: the same tables with noise: COARSE")
    print_tables(results, "COARSE")
    print()
    print_profiles(results)
    note(
        "MAE, bias: over clear released cells of every table and country; clear released:"
        " the lowest share of any table and country; rejected: answers the gateway rejected;"
        " rho/table: from the answers' privacy lines; tables, questions (a new total and one"
        " table): how many a person can be counted in before dropping out (cap / cost)."
    )
    if results.session:
        print(f"\n4. A study session: one researcher, {len(results.session)} questions")
        print_session(results.session)
        note(
            "error: released total − truth; z: every released pooled number's error over its"
            " noise, in sds (below −3: persons missing); z′: the same against the persons the"
            " replayed ledgers still counted; dropped: persons of the cohort not counted in"
            " the question's new tables, over every node (ledger replay)."
        )
        summary = summarise(results.session)
        print()
        for line in [*summary.lines(), *summary.cost_mismatches]:
            print(textwrap.fill(line, width=98, initial_indent="  ", subsequent_indent="    "))


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
