"""Class 19: differencing the person-time of two rate questions. How long was a known person
at risk, and did they have the outcome?

The attacker knows a person's sex, year of birth and the month of one of their diagnoses,
which describe nobody else (D, the person alone), and that they have type 2 diabetes. They
ask the incidence of hypertension (ICD-10 I10) in the year after each person's first E11
record (the index) over a large birth cohort L of other ages, with and without the person:
L ∪ D and L. The node releases the days at risk of each (PERSON_DAYS, through `personYears`
× 365.25) and the events (OUTCOME_EVENTS), so the person's own days at risk are the
difference of the two days, and their event the difference of the two events. Each pair is
asked with several paddings (fresh birth cohorts: new questions, new noise) and the readings
averaged.

The days carry noise of sd σ·D (D = 366 days, the most one person can add: the follow-up's
length), so one reading has a standard error of √2·σ·D = √2 · 5 · 366 ≈ 2,600 days, seven
times the whole window: nothing beyond "between 0 and 366". Each reading charges the person
what its three measures cost (3 × 0.02), so at most eight readings count them (ρ 0.5): SE ≥
900 days. The events' difference is a count's (SE √2·σ = 7 for a 0 or 1).

Targets are scored in quarters of the window (91.5 days), so that the verdict's rule for
counts applies: PINNED when the root-mean-square error is under one quarter over at least 8
persons, or claimed and right for 3.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from typing import Final

import duckdb

from bench.attacks.client import Applicant, BudgetExhausted, QuestionRefused
from bench.attacks.common import spend
from bench.attacks.context import Context
from bench.attacks.targets import Cohorts, Person, singled_out
from bench.attacks.verdict import ClassResult, CountTarget
from bench.attacks.where import Index, Where, union
from schema.codes import Jurisdiction

NUMBER = 19
TITLE = "Differencing person-time: a known person's days at risk"
METHOD = (
    "days at risk over L ∪ D minus over L (personYears × 365.25), index first E11, outcome "
    "I10 within 0-365 days; D = sex, year of birth, a diagnosis month"
)

INDEX: Final = "E11"
OUTCOME: Final = "I10"
END: Final = 365
DAYS: Final = END + 1  # days 0 to 365, both included: the most one person adds
OUTCOME_INPUT: Final = (
    f'{{ event: {{ domain: CONDITION, codes: [{{ vocabulary: ICD10, code: "{OUTCOME}" }}] }}, '
    f"window: {{ startDays: 0, endDays: {END} }} }}"
)
# The unit targets are scored in: a quarter of the follow-up window.
QUARTER: Final = DAYS / 4


def followed(database: str, person_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Each person's days at risk and event (0 or 1) from their first E11 record: the truth,
    from the node's rows (plain SQL, the follow-up in Python)."""
    with duckdb.connect(database, read_only=True) as con:

        def dates(sql: str, *params: object) -> dict[int, list[dt.date]]:
            found: dict[int, list[dt.date]] = defaultdict(list)
            for person, date in con.execute(sql, [*params, person_ids]).fetchall():
                found[int(person)].append(date)
            return found

        coded = (
            "SELECT co.person_id, co.condition_start_date FROM condition_occurrence co "
            "JOIN concept c ON c.concept_id = co.condition_source_concept_id "
            "WHERE c.concept_code LIKE ? AND co.person_id IN (SELECT unnest(?))"
        )
        index = dates(coded, f"{INDEX}%")
        outcomes = dates(coded, f"{OUTCOME}%")
        died = dates(
            "SELECT person_id, death_date FROM death WHERE person_id IN (SELECT unnest(?))"
        )
        periods: dict[int, list[tuple[dt.date, dt.date]]] = defaultdict(list)
        for person, begin, end in con.execute(
            "SELECT person_id, observation_period_start_date, observation_period_end_date "
            "FROM observation_period WHERE person_id IN (SELECT unnest(?))",
            [person_ids],
        ).fetchall():
            periods[int(person)].append((begin, end))
    truth = {}
    for person, found in index.items():
        entry = min(found)
        last = entry + dt.timedelta(days=END)
        observed = [end for begin, end in periods[person] if begin <= entry <= end]
        censored = min(
            last,
            max(observed) if observed else entry - dt.timedelta(days=1),
            min(died[person]) if died[person] else last,
        )
        cases = [d for d in outcomes[person] if entry <= d <= last]
        first = min(cases) if cases else None
        if first is not None and first <= censored:
            truth[person] = ((first - entry).days + 1, 1)
        else:
            truth[person] = (max((censored - entry).days + 1, 0), 0)
    return truth


def targets(ctx: Context, j: Jurisdiction) -> Iterator[tuple[Person, tuple[int, int]]]:
    """Persons singled out by what the attacker knows, with an E11 record to be indexed by."""
    truth = ctx.simulation.truth[j]
    candidates = []
    for person in singled_out(truth, j, avoid=()):
        candidates.append(person)
        if len(candidates) >= 40 * ctx.plan.trials:
            break
    ids = [int(truth.person_id[p.index]) for p in candidates]
    known = followed(str(ctx.simulation.federation.database(j)), ids)
    found = 0
    for person, person_id in zip(candidates, ids, strict=True):
        if person_id in known and found < ctx.plan.trials:
            found += 1
            yield person, known[person_id]


def ask_days(
    applicant: Applicant, where: Where, j: Jurisdiction
) -> tuple[float, float, float | None] | None:
    """The node's released days at risk over `where` (indexed by first E11) with their
    noise's sd, and its events (None where withheld), or None where the days are withheld."""
    rate = applicant.rate(replace(where, index=Index(INDEX)), OUTCOME_INPUT, j)
    if rate is None:
        return None
    years, events = rate["personYears"], rate["events"]
    if years["value"] is None:
        return None
    sigma = float(applicant.privacy.get(j, {}).get("sigma") or 5.0)
    found = None if events["value"] is None else float(events["value"])
    return years["value"] * 365.25, sigma * DAYS, found


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "count", allowance=ctx.allowance)
    wordings = 1 + ctx.plan.rewordings
    cohorts = Cohorts()
    events_error: list[float] = []
    for j in ctx.jurisdictions:
        # An applicant per node: no reading is biased by another node's targets' spend.
        applicant = ctx.applicant(f"rates-{j.value.lower()}")
        try:
            for person, (days, event) in targets(ctx, j):
                readings: list[tuple[float, float, float | None]] = []
                for _ in range(wordings):
                    padding, _ = cohorts.cohort((person.age, person.age))
                    plus = ask_days(applicant, union(padding, person.alone), j)
                    minus = ask_days(applicant, padding, j)
                    if plus is None or minus is None:
                        continue
                    both = None if plus[2] is None or minus[2] is None else plus[2] - minus[2]
                    readings.append((plus[0] - minus[0], math.hypot(plus[1], minus[1]), both))
                label = f"{person.alone.label()} days at risk"
                if not readings:
                    result.targets.append(CountTarget(j, label, days / QUARTER, None, None))
                    continue
                estimate = sum(r[0] for r in readings) / len(readings)
                se = math.sqrt(sum(r[1] ** 2 for r in readings)) / len(readings)
                result.targets.append(
                    CountTarget(j, label, days / QUARTER, estimate / QUARTER, se / QUARTER)
                )
                differences = [r[2] for r in readings if r[2] is not None]
                if differences:
                    events_error.append(sum(differences) / len(differences) - event)
        except (BudgetExhausted, QuestionRefused):
            result.exhausted = True
        result.questions += applicant.questions
        for name, figure in spend(applicant).items():
            result.privacy[name] = max(result.privacy.get(name, figure), figure)
    result.notes.append(
        f"days and errors in quarters of the follow-up ({QUARTER:g} days); one reading's SE "
        f"is √2·σ·D = {math.sqrt(2) * 5 * DAYS:,.0f} days at σ 5; {wordings} paddings per "
        "person, averaged"
    )
    if events_error:
        rmse = math.sqrt(sum(e * e for e in events_error) / len(events_error))
        result.notes.append(
            f"the outcome itself (0 or 1) from the events' difference: RMSE {rmse:.1f} over "
            f"{len(events_error)} persons (a guess of 0 for everyone errs by at most 1)"
        )
    return result
