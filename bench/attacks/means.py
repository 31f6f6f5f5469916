"""Class 16: differencing two means to recover a value. What is a known person's HbA1c?

The attacker knows a person's sex, year of birth and the month of one of their diagnoses,
which describe nobody else (D, the person alone), and asks the mean HbA1c (their last of
2015-2025, clipped to the public bounds 4-14 %) of a large birth cohort L of other ages, with
and without them: L ∪ D and L. A released mean is (S₁/n + c)·r with the node's noisy n and
noisy sum S₁ of centred units, so the attacker recovers each S₁ = n·(mean/r − c) exactly and
reads the person's value as c·r + r·(S₁(L ∪ D) − S₁(L)). Each pair is asked with several
paddings (fresh birth cohorts: new questions, new noise) and the readings averaged.

The sums carry noise of sd σ·Δ₁ (Δ₁ = 50 units of 0.1 %: half the bounds' width), so one
reading has a standard error of √2·σ·Δ₁·r = √2 · 5 · 5.0 = 35 % HbA1c, 3.5 times the whole
width of the bounds: nothing beyond "between 4 and 14". Each reading charges the person what
its four statistics cost (4 × 0.02), so at most six readings count them (ρ 0.5): SE ≥ 14 %.

Targets are scored in quarters of the bounds' width (2.5 % HbA1c), so that the verdict's rule
for counts applies: PINNED when the root-mean-square error is under one quarter (the value
placed within a quarter of its range) over at least 8 persons, or claimed and right for 3.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from typing import Final

import duckdb

from bench.attacks.client import Applicant, BudgetExhausted, QuestionRefused
from bench.attacks.common import spend
from bench.attacks.context import Context
from bench.attacks.targets import Cohorts, Person, singled_out
from bench.attacks.verdict import ClassResult, CountTarget
from bench.attacks.where import Where, union
from schema.codes import Jurisdiction
from schema.query import NumericVariable
from schema.variables import VariableSource

NUMBER = 16
TITLE = "Differencing two means: a known person's HbA1c"
METHOD = "mean over L ∪ D minus mean over L, as sums; D = sex, year of birth, a diagnosis month"

LOINC: Final = "4548-4"
LO, HI = 4.0, 14.0
WINDOW: Final = (dt.date(2015, 1, 1), dt.date(2025, 12, 31))
VARIABLE: Final = (
    f'{{ source: MEASUREMENT, code: "{LOINC}", perPerson: LAST, '
    f'window: {{ start: "{WINDOW[0]}", end: "{WINDOW[1]}" }}, lo: {LO:g}, hi: {HI:g} }}'
)
CLIPPING: Final = NumericVariable.model_validate(
    {
        "source": VariableSource.MEASUREMENT,
        "code": {"vocabulary": "LOINC", "code": LOINC},
        "lo": LO,
        "hi": HI,
    }
).clipping
# The unit targets are scored in: a quarter of the bounds' width.
QUARTER: Final = (HI - LO) / 4


def values(database: str, person_ids: list[int]) -> dict[int, float]:
    """Each person's last HbA1c of the window, clipped: the truth, from the node's database."""
    with duckdb.connect(database, read_only=True) as con:
        rows = con.execute(
            """
            SELECT person_id, value FROM (
              SELECT m.person_id, m.value_as_number AS value, row_number() OVER (
                PARTITION BY m.person_id ORDER BY m.measurement_date DESC, m.measurement_id DESC
              ) AS r
              FROM measurement m JOIN concept c ON c.concept_id = m.measurement_concept_id
              WHERE c.vocabulary_id = 'LOINC' AND c.concept_code = ?
                AND m.value_as_number IS NOT NULL AND m.measurement_date BETWEEN ? AND ?
                AND m.person_id IN (SELECT unnest(?))
            ) WHERE r = 1
            """,
            [LOINC, WINDOW[0], WINDOW[1], person_ids],
        ).fetchall()
    return {int(p): min(max(float(v), LO), HI) for p, v in rows}


def targets(ctx: Context, j: Jurisdiction) -> Iterator[tuple[Person, float]]:
    """Persons singled out by what the attacker knows, who have a value."""
    truth = ctx.simulation.truth[j]
    candidates = []
    for person in singled_out(truth, j, avoid=()):
        candidates.append(person)
        if len(candidates) >= 40 * ctx.plan.trials:
            break
    ids = [int(truth.person_id[p.index]) for p in candidates]
    known = values(str(ctx.simulation.federation.database(j)), ids)
    found = 0
    for person, person_id in zip(candidates, ids, strict=True):
        if person_id in known and found < ctx.plan.trials:
            found += 1
            yield person, known[person_id]


def ask_sum(applicant: Applicant, where: Where, j: Jurisdiction) -> tuple[float, float] | None:
    """The node's released sum S₁ of centred units of `where` (from its n and mean) and its
    noise's sd, or None where the mean is withheld."""
    summary = applicant.summary(where, VARIABLE, j)
    if summary is None:
        return None
    n, mean = summary["n"], summary["mean"]
    if n["value"] is None or mean["value"] is None:
        return None
    r = CLIPPING.resolution
    s1 = n["value"] * (mean["value"] / r - CLIPPING.centre)
    sigma = float(applicant.privacy.get(j, {}).get("sigma") or 5.0)
    return s1, sigma * CLIPPING.sum_sensitivity


def run(ctx: Context) -> ClassResult:
    result = ClassResult(NUMBER, TITLE, METHOD, "count", allowance=ctx.allowance)
    wordings = 1 + ctx.plan.rewordings
    cohorts = Cohorts()
    for j in ctx.jurisdictions:
        # An applicant per node: no reading is biased by another node's targets' spend.
        applicant = ctx.applicant(f"means-{j.value.lower()}")
        try:
            for person, truth in targets(ctx, j):
                readings: list[tuple[float, float]] = []
                for _ in range(wordings):
                    padding, _ = cohorts.cohort((person.age, person.age))
                    plus = ask_sum(applicant, union(padding, person.alone), j)
                    minus = ask_sum(applicant, padding, j)
                    if plus is None or minus is None:
                        continue
                    r = CLIPPING.resolution
                    value = CLIPPING.centre * r + r * (plus[0] - minus[0])
                    readings.append((value, r * math.hypot(plus[1], minus[1])))
                label = f"{person.alone.label()} HbA1c"
                if not readings:
                    result.targets.append(CountTarget(j, label, truth / QUARTER, None, None))
                    continue
                estimate = sum(v for v, _ in readings) / len(readings)
                se = math.sqrt(sum(s * s for _, s in readings)) / len(readings)
                result.targets.append(
                    CountTarget(j, label, truth / QUARTER, estimate / QUARTER, se / QUARTER)
                )
        except (BudgetExhausted, QuestionRefused):
            result.exhausted = True
        result.questions += applicant.questions
        for name, figure in spend(applicant).items():
            result.privacy[name] = max(result.privacy.get(name, figure), figure)
    result.notes.append(
        f"values and errors in quarters of the bounds' width ({QUARTER:g} % HbA1c); one "
        f"reading's SE is √2·σ·Δ₁·r = {math.sqrt(2) * 5 * CLIPPING.sum_sensitivity * 0.1:.1f} "
        f"% at σ 5; {wordings} paddings per person, averaged"
    )
    return result
