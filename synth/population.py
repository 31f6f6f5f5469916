"""Who lives in a synthetic country: age, sex, observation start and body mass index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from synth.arrays import (
    DAYS_PER_YEAR,
    Days,
    Floats,
    Ints,
    Mask,
    chance,
    curve,
    day,
    uniform_days,
    years,
)
from synth.countries import AGE_BAND_YEARS, CountryParams

# Records start with the national EHR extract (2010) or when a person later joins it (moving
# in, changing provider); nobody joins after 2020, so every person can have COVID-19 records.
OBSERVATION_FIRST: Final = day("2010-01-01")
OBSERVATION_LAST_START: Final = day("2020-12-31")
SHARE_FROM_FIRST_DAY: Final = 0.45


@dataclass(frozen=True, slots=True)
class People:
    person_id: Ints
    female: Mask
    birth: Days
    age: Floats  # years at the reference date, as if alive then
    observation_start: Days
    bmi: Floats  # usual body mass index, kg/m2

    def __len__(self) -> int:
        return len(self.person_id)

    def age_at(self, when: Days | int) -> Floats:
        result: Floats = (np.asarray(when, dtype=np.float64) - self.birth) / DAYS_PER_YEAR
        return result


def draw_people(
    rng: np.random.Generator, params: CountryParams, first_id: int, n: int, reference: int
) -> People:
    shares = np.asarray(params.age_shares, dtype=np.float64)
    band = rng.choice(len(shares), size=n, p=shares / shares.sum())
    age: Floats = (band + rng.random(n)) * AGE_BAND_YEARS
    birth = reference - years(age)
    # About 105 boys are born per 100 girls; women live longer, so old age is mostly female.
    female = chance(rng, curve(age, [(0, 0.488), (55, 0.5), (100, 0.7)]), n)
    joined = uniform_days(rng, OBSERVATION_FIRST, OBSERVATION_LAST_START, n)
    joined = np.where(chance(rng, SHARE_FROM_FIRST_DAY, n), OBSERVATION_FIRST, joined)
    start = np.maximum(joined, birth)
    return People(
        person_id=np.arange(first_id, first_id + n, dtype=np.int64),
        female=female,
        birth=birth,
        age=age,
        observation_start=start,
        bmi=_bmi(rng, age, female, params.bmi_shift),
    )


def _bmi(rng: np.random.Generator, age: Floats, female: Mask, shift: float) -> Floats:
    adult = age >= 18
    adult_mean = (
        22.6
        + 3.8 * (1 - np.exp(-np.maximum(age - 18, 0) / 18))
        - 0.06 * np.maximum(age - 75, 0)
        - 0.3 * female
        + shift
    )
    child_mean = 15.5 + 0.3 * np.minimum(age, 18)
    mean = np.where(adult, adult_mean, child_mean)
    sigma = np.where(adult, 0.17, 0.12)
    # Log-normal: BMI is right-skewed, which is what makes obesity common but not universal.
    bmi: Floats = mean * np.exp(rng.standard_normal(len(age)) * sigma - sigma**2 / 2)
    return np.round(bmi, 1)
