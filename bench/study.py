"""A realistic study session: one researcher's 30 questions on the demo data about type 2
diabetes, COVID-19, drugs used in diabetes and obesity, asked through the gateway; what they
see, and, against the truth, how far it was from it and when persons began to drop out.

`LedgerReplay` replays on the truth what each node's ledger does (`connectors.ledger`): each
question's new tables charge their cost, read from the node's privacy line, to every person
counted, and a person whose spend would pass the cap is not counted; a table asked before is
answered from the stored draw, free, with the persons counted the first time. It says who
dropped out; the released numbers drifting below the truth by more than their noise is the
effect a researcher would suffer from it. `summarise` says in a few lines what the session
showed, and checks what must hold whatever the noise: privacy lines that add up, questions
asked again answered with the same numbers.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from bench.cohorts import (
    A10,
    AGE5,
    AGE10,
    AGE20,
    COVID,
    E11,
    JURISDICTION,
    OBESE,
    SEX,
    YEAR,
    Breakdown,
    Cohort,
    Question,
    node_table,
    split_key,
)
from bench.researcher import Answer, inner_cells
from bench.truth import Person, tabulate
from schema.codes import Jurisdiction

# The ledger's unit (connectors.ledger.UNITS_PER_RHO): privacy lines are multiples of it.
UNITS_PER_RHO: Final = 100_000
# Beyond three sds below the truth, a released number tells of persons missing from it.
DRIFT_Z: Final = -3.0

_E11_RECENT = E11.within(dt.date(2015, 1, 1), dt.date(2025, 12, 31))
_DIABETES = Cohort((E11,))
_COVID = Cohort((E11, COVID))
_TREATED = Cohort((E11, A10))
_OBESE = Cohort((E11, OBESE))
_MIDDLE = Cohort((E11,), age_min=40, age_max=69)

# What a researcher asks in a first afternoon with the data: the whole cohort broken down the
# usual ways, then its COVID-19, treated and obese subgroups, refinements of the age range,
# a few questions asked again (by mistake or to check), one coarse exploration.
SESSION: Final[tuple[Question, ...]] = (
    Question(_DIABETES, note="how many?"),
    Question(_DIABETES, ((SEX,), (AGE10,))),
    Question(_DIABETES, ((JURISDICTION,),), note="per country: the total again"),
    Question(Cohort((_E11_RECENT,)), ((YEAR,),)),
    Question(_DIABETES, ((SEX, AGE10),)),
    Question(_COVID, ((AGE20,),)),
    Question(_COVID, ((SEX,),)),
    Question(_TREATED, ((AGE10,),)),
    Question(_OBESE, ((SEX,),)),
    Question(Cohort((E11, COVID, A10))),
    Question(Cohort((E11, COVID, OBESE, A10)), note="the demo's example 02"),
    Question(_MIDDLE, ((SEX, AGE10),)),
    Question(_DIABETES, ((SEX,),), note="asked again"),
    Question(Cohort((E11,), age_min=40, age_max=64)),
    Question(Cohort((E11,), age_min=45, age_max=69)),
    Question(_DIABETES, ((SEX, AGE5),), noise="COARSE", note="exploring"),
    Question(_DIABETES, ((JURISDICTION, AGE20),)),
    Question(Cohort((E11,), sex="FEMALE", age_min=50, age_max=59)),
    Question(Cohort((E11, COVID), age_min=60)),
    Question(_COVID, ((JURISDICTION, AGE20),), note="per country: stored"),
    Question(_MIDDLE, ((JURISDICTION, SEX),)),
    Question(_TREATED, ((SEX,),)),
    Question(Cohort((E11, A10), age_min=65)),
    Question(Cohort((_E11_RECENT,)), ((AGE10,),)),
    Question(_DIABETES, ((AGE5,),)),
    Question(Cohort((E11, OBESE, A10))),
    Question(_OBESE, ((AGE20,),)),
    Question(_DIABETES, ((AGE20,),)),
    Question(Cohort((E11,), age_min=50, age_max=69), ((SEX,),)),
    Question(_COVID, note="asked again"),
)


class LedgerReplay:
    """One applicant's ledgers and stored answers, node by node, replayed on the truth."""

    def __init__(self) -> None:
        self.spend: defaultdict[tuple[Jurisdiction, int], int] = defaultdict(int)
        # The persons counted in each stored table (by node, sd, question and table).
        self.stored: dict[
            tuple[Jurisdiction, float, object, Breakdown], Counter[tuple[str, ...]]
        ] = {}

    def ask(
        self,
        jurisdiction: Jurisdiction,
        question: Question,
        members: Sequence[Person],
        *,
        sd: float,
        cost: int,
        cap: int,
    ) -> tuple[dict[Breakdown, Counter[tuple[str, ...]]], int]:
        """The counts the node's answer is computed from (each node table, canonical keys)
        and how many of the cohort were not counted in the new ones."""
        keys = {t: (jurisdiction, sd, question.cohort.key(t), t) for t in question.node_tables}
        new = [t for t, key in keys.items() if key not in self.stored]
        counted = list(members)
        if cost > 0:
            counted = [p for p in members if self.spend[jurisdiction, p.person_id] + cost <= cap]
            for person in counted:
                self.spend[jurisdiction, person.person_id] += cost
        for table in new:
            self.stored[keys[table]] = tabulate(counted, table)
        dropped = len(members) - len(counted) if new else 0
        return {t: self.stored[key] for t, key in keys.items()}, dropped


def units(rho: float) -> int:
    return round(rho * UNITS_PER_RHO)


@dataclass
class Step:
    """One question of the session: what the researcher saw and how it compares."""

    number: int
    question: Question
    answer: Answer
    # The pooled total's truth, and the truth of the persons the nodes still counted.
    total_truth: int
    total_counted: int
    # Released pooled values (total and cells) against the truth: (released, truth, sd); and
    # against the truth of the persons the replayed ledgers counted.
    compared: list[tuple[int, int, float]] = field(default_factory=list)
    counted: list[tuple[int, int, float]] = field(default_factory=list)
    dropped: int = 0  # persons of the cohort not counted, over every node (the replay's)
    cost_mismatch: list[str] = field(default_factory=list)

    @property
    def drift_z(self) -> float | None:
        """The released numbers' summed error over their summed noise, in sds."""
        return _z(self.compared)

    @property
    def counted_z(self) -> float | None:
        """The same against the persons still counted: noise alone, if the replay is right."""
        return _z(self.counted)


def _z(compared: Sequence[tuple[int, int, float]]) -> float | None:
    if not compared:
        return None
    error = sum(v - t for v, t, _ in compared)
    return error / math.sqrt(sum(sd * sd for _, _, sd in compared))


Truth = Callable[[Jurisdiction, Cohort], Sequence[Person]]


def replay_step(
    number: int,
    question: Question,
    answer: Answer,
    truth: Truth,
    replay: LedgerReplay,
) -> Step:
    """Compare one answer of the session with the truth, replaying the ledgers."""
    counted: dict[Jurisdiction, dict[Breakdown, Counter[tuple[str, ...]]]] = {}
    full: dict[Jurisdiction, dict[Breakdown, Counter[tuple[str, ...]]]] = {}
    step = Step(number, question, answer, 0, 0)
    shown = [answer.privacy(j) for j in answer.answered]
    for jurisdiction in answer.nodes:
        line = answer.nodes[jurisdiction].privacy
        # A node whose answer the gateway rejected charged it all the same, unseen: the
        # replay assumes it charged the tables' cost, at the answered nodes' sd and cap.
        reference = line or (shown[0] if shown else None)
        if reference is None:
            continue
        members = truth(jurisdiction, question.cohort)
        sd = reference.sigma
        expected = _expected_cost(question, replay, jurisdiction, sd)
        cost = expected if line is None else units(line.question_rho)
        if cost != expected:
            step.cost_mismatch.append(f"{jurisdiction.value}: charged {cost}, expected {expected}")
        tables, dropped = replay.ask(
            jurisdiction, question, members, sd=sd, cost=cost, cap=units(reference.cap_rho)
        )
        step.dropped += dropped
        if jurisdiction in answer.answered:
            counted[jurisdiction] = tables
            full[jurisdiction] = {t: tabulate(members, t) for t in question.node_tables}
    step.total_truth = sum(f[()][()] for f in full.values())
    step.total_counted = sum(c[()][()] for c in counted.values())
    if answer.count.value is not None and answer.count.sd is not None:
        step.compared.append((answer.count.value, step.total_truth, answer.count.sd))
        step.counted.append((answer.count.value, step.total_counted, answer.count.sd))
    for by in question.tables:
        if JURISDICTION in by:
            continue  # the nodes' own cells: their totals are compared through the pool
        for key, released in answer.tables[by].items():
            if released.value is None or released.sd is None:
                continue
            _, node_key = split_key(by, key)
            table = node_table(by)
            step.compared.append(
                (released.value, sum(f[table][node_key] for f in full.values()), released.sd)
            )
            step.counted.append(
                (released.value, sum(c[table][node_key] for c in counted.values()), released.sd)
            )
    return step


def _expected_cost(
    question: Question, replay: LedgerReplay, jurisdiction: Jurisdiction, sd: float
) -> int:
    """What the question should cost: its tables not stored yet, each 1/(2 sd^2)."""
    new = sum(
        (jurisdiction, sd, question.cohort.key(t), t) not in replay.stored
        for t in question.node_tables
    )
    return new * math.ceil(UNITS_PER_RHO / (2 * sd * sd) - 1e-9)


def signed(z: float | None) -> str:
    return "—" if z is None else f"{z:+.1f}"


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


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
            + ", ".join(f"{n}: {signed(z)}" for n, z in drifts)
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
        total_abs_error=mean([error for error, _ in before.values()]),
        # E|X| = sd * sqrt(2 / pi) for Gaussian noise.
        total_noise_error=mean([sd * math.sqrt(2 / math.pi) for _, sd in before.values()]),
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
