"""What a utility run measured (`bench/disclosure_utility.py`): every question asked and its
answer, released cells against the truth per table and country over fresh applicants
(`Tally`), margins, and the figures per noise profile.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Final

from bench.cohorts import Noise, Question, Table
from bench.researcher import Answer, Applicant, Released
from bench.study import LedgerReplay, Step
from schema.codes import Jurisdiction

# Released cells whose truth is at least the minimum plus this many noise sds: the cells a
# researcher should get (each is LOW with a chance of 0.13%).
CLEAR_SDS: Final = 3
POOLED: Final = "pooled"


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
        """The tables each node releases for the question alone, national and pooled (a
        national and a pooled table of the same dimensions are two releases, each charged)."""
        question = self.table.alone(self.noise)
        return len(question.national_tables) + len(question.pooled_tables)

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
    # The session researcher's ledgers as replayed on the truth.
    replay: LedgerReplay = field(default_factory=LedgerReplay)
    asked: list[Asked] = field(default_factory=list)


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
        """Questions of a new total and one table: two releases, since a pooled question
        asking no country's own count releases its total once, pooled."""
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
