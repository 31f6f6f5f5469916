"""Measurements: BMI, HbA1c, systolic blood pressure and total cholesterol, with values that
follow the person's conditions (higher HbA1c in diabetics, higher pressure in hypertensives)."""

from __future__ import annotations

from typing import Final

import numpy as np

from synth import vocabulary as v
from synth.arrays import (
    Days,
    Floats,
    Index,
    Ints,
    chance,
    repeat_rows,
    uniform_days,
    years,
)
from synth.histories import History
from synth.population import People
from synth.rows import Rows

NAN: Final = float("nan")


class Measurements:
    """Measurement rows: a LOINC concept, a value and its UCUM unit."""

    def __init__(self, rng: np.random.Generator, people: People, end: Days) -> None:
        self.rng, self.people, self.end = rng, people, end
        self.rows = Rows()

    def add(
        self,
        who: Index,
        date: Days,
        concept: int,
        value: Floats,
        unit: int,
        kind: int,
        normal: tuple[float, float] | None = None,
    ) -> None:
        n = len(who)
        low, high = normal if normal is not None else (NAN, NAN)  # NaN reaches DuckDB as NULL
        self.rows.add(
            n,
            person_id=self.people.person_id[who],
            measurement_concept_id=concept,
            measurement_date=date,
            measurement_datetime=date,
            measurement_type_concept_id=kind,
            value_as_number=value,
            unit_concept_id=unit,
            measurement_source_concept_id=concept,
            range_low=low,
            range_high=high,
        )

    def adult_dates(self, who: Index, counts: Ints) -> tuple[Index, Days]:
        """`counts[i]` days for person `who[i]` in their adult observed life; persons never
        observed as adults get none."""
        people = self.people
        low = np.maximum(people.observation_start, people.birth + years(18))[who]
        high = self.end[who]
        counts = np.where(low <= high, counts, 0)
        row, _ = repeat_rows(counts)
        return who[row], uniform_days(self.rng, low[row], high[row], len(row))


def measure(rng: np.random.Generator, labs: Measurements, people: People, h: History) -> None:
    n = len(people)
    age, bmi, female = people.age, people.bmi, people.female
    adult = age >= 18
    htn = h.hypertension.has
    diabetic = h.t2d.has | h.t1d.has
    risk_visit = h.t2d.has | h.obesity.has | htn

    # BMI: measured for about half of adults, for nearly everyone with a weight-related disease.
    measured = adult & chance(rng, np.where(risk_visit, 0.85, 0.45), n)
    who = np.flatnonzero(measured)
    who, date = labs.adult_dates(who, 1 + rng.poisson(0.8, len(who)))
    value = np.round(bmi[who] * np.exp(rng.normal(0, 0.025, len(who))), 1)
    labs.add(who, date, v.BMI, value, v.KG_PER_M2, v.EHR)

    # HbA1c: diabetics are followed from diagnosis, around 7.5 %; others tested now and then.
    dx_date = np.where(h.t1d.has, h.t1d.date, h.t2d.date)
    level = np.where(h.t1d.has, rng.normal(7.9, 0.9, n), rng.normal(7.3, 0.9, n))
    who = np.flatnonzero(diabetic)
    row, rank = repeat_rows(2 + rng.poisson(3.0, len(who)).astype(np.int64))
    person = who[row]
    later = uniform_days(rng, dx_date[person], h.observation_end[person], len(row))
    date = np.where(rank == 0, dx_date[person], later)
    at_diagnosis = np.where(rank == 0, 0.6, 0.0)
    value = np.clip(level[person] + at_diagnosis + rng.normal(0, 0.4, len(row)), 5.0, 14.0)
    labs.add(person, date, v.HBA1C, np.round(value, 1), v.PERCENT, v.LAB, (4.0, 5.6))
    tested = adult & ~diabetic & chance(rng, 0.10 + 0.15 * (age >= 45) + 0.15 * (bmi >= 30), n)
    who = np.flatnonzero(tested)
    who, date = labs.adult_dates(who, 1 + rng.poisson(0.4, len(who)))
    usual = 5.35 + 0.03 * (bmi[who] - 26) + 0.004 * (age[who] - 50)
    value = np.clip(usual + rng.normal(0, 0.3, len(who)), 4.0, 6.4)
    labs.add(who, date, v.HBA1C, np.round(value, 1), v.PERCENT, v.LAB, (4.0, 5.6))

    # Systolic blood pressure: higher with age and hypertension.
    measured = adult & chance(rng, np.where(htn, 0.95, 0.5), n)
    who = np.flatnonzero(measured)
    who, date = labs.adult_dates(who, 1 + rng.poisson(np.where(htn[who], 2.5, 0.8)))
    usual_sbp = 117 + 0.4 * (age - 40) + 17 * htn - 4 * female + rng.normal(0, 9, n)
    value = np.clip(np.round(usual_sbp[who] + rng.normal(0, 7, len(who))), 85, 230)
    labs.add(who, date, v.SYSTOLIC_BP, value, v.MM_HG, v.EHR)

    # Total cholesterol in mg/dL.
    measured = (age >= 30) & chance(rng, np.where(h.t2d.has | htn, 0.65, 0.35), n)
    who = np.flatnonzero(measured)
    who, date = labs.adult_dates(who, 1 + rng.poisson(0.5, len(who)))
    usual_chol = 190 + 0.6 * np.clip(age - 30, 0, 30) - 8 * (female & (age < 50))
    usual_chol = usual_chol + rng.normal(0, 35, n)
    value = np.clip(np.round(usual_chol[who] + rng.normal(0, 12, len(who))), 90, 400)
    labs.add(who, date, v.CHOLESTEROL, value, v.MG_PER_DL, v.LAB, (0.0, 200.0))
