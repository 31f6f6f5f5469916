"""What happens to each synthetic person: diagnoses, COVID-19, vaccination and death.

Risks are functions of age (`curve`) scaled by the country's parameters and by the person's
other conditions, so the usual associations hold in query results: obesity with type 2
diabetes, diabetes and hypertension with heart failure, autism with epilepsy and intellectual
disability, old age and chronic disease with severe COVID-19 and death. Figures are invented
but chosen to land in plausible ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from synth.arrays import (
    MISSING,
    Days,
    Floats,
    Index,
    Mask,
    categorical,
    chance,
    curve,
    day,
    uniform_days,
    years,
)
from synth.countries import CountryParams
from synth.population import People

# Age (years) -> risk. Chronic conditions: probability of having a record at some point.
T2D_BY_AGE: Final = [(18, 0.0015), (30, 0.006), (40, 0.018), (50, 0.045), (60, 0.09),
                     (70, 0.125), (80, 0.13), (100, 0.12)]  # fmt: skip
HYPERTENSION_BY_AGE: Final = [(18, 0.01), (30, 0.04), (40, 0.10), (50, 0.20), (60, 0.33),
                              (70, 0.46), (80, 0.55), (100, 0.58)]  # fmt: skip
MI_BY_AGE: Final = [(30, 0.0), (40, 0.004), (50, 0.01), (60, 0.02), (70, 0.035), (80, 0.05)]
HEART_FAILURE_BY_AGE: Final = [(40, 0.0), (50, 0.004), (60, 0.009), (70, 0.024), (80, 0.055),
                               (90, 0.09), (100, 0.11)]  # fmt: skip
# Autism diagnoses are recent practice: common among today's children, rare among the old.
AUTISM_BY_AGE: Final = [(2, 0.0), (5, 0.9), (10, 1.2), (20, 1.2), (30, 1.0), (40, 0.5),
                        (60, 0.15), (100, 0.05)]  # fmt: skip
SARCOMA_BY_AGE: Final = [(0, 0.3), (20, 0.5), (40, 0.8), (60, 1.4), (80, 1.9)]
PNEUMONIA_BY_AGE: Final = [(0, 0.04), (5, 0.02), (18, 0.012), (65, 0.04), (80, 0.09), (100, 0.12)]
COVID_BY_AGE: Final = [(0, 0.6), (12, 0.9), (18, 1.15), (30, 1.15), (60, 0.95), (80, 0.8)]
COVID_HOSPITAL_BY_AGE: Final = [(0, 0.003), (18, 0.008), (50, 0.03), (65, 0.08), (80, 0.18),
                                (100, 0.22)]  # fmt: skip
COVID_DEATH_BY_AGE: Final = [(0, 0.005), (50, 0.03), (70, 0.12), (80, 0.22), (100, 0.30)]
ADULT_UPTAKE_BY_AGE: Final = [(18, 0.85), (30, 0.92), (50, 1.0), (70, 1.1), (80, 1.12),
                              (100, 1.08)]  # fmt: skip

# COVID-19 waves: (first day, last day, share of all recorded infections).
COVID_WAVES: Final = (
    ("2020-03-01", "2020-05-31", 0.07),
    ("2020-10-01", "2021-01-31", 0.18),
    ("2021-03-01", "2021-05-31", 0.10),
    ("2021-08-01", "2021-11-30", 0.08),
    ("2021-12-01", "2022-03-31", 0.42),
    ("2022-06-01", "2022-12-31", 0.12),
    ("2023-01-01", "2023-12-31", 0.03),
)
OMICRON: Final = day("2021-12-01")  # milder variant from here on

# First mRNA doses by priority group: (minimum age in mid-2021, first day, last day).
VACCINATION_PRIORITY: Final = (
    (80, "2021-01-05", "2021-02-28"),
    (65, "2021-02-15", "2021-04-30"),
    (18, "2021-04-01", "2021-07-31"),
    (12, "2021-06-01", "2021-09-30"),
    (5, "2021-12-15", "2022-03-31"),
)
VACCINATION_AGE_DAY: Final = day("2021-06-30")
NEVER: Final = np.iinfo(np.int64).max  # a day after every real one


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A condition: who has a record of it, and the date of the first record."""

    has: Mask
    date: Days  # meaningful where `has`

    @property
    def who(self) -> Index:
        found: Index = np.flatnonzero(self.has)
        return found


@dataclass(frozen=True, slots=True)
class Events:
    """Dated one-off events; a person may have several."""

    person: Index
    date: Days


@dataclass(frozen=True, slots=True)
class History:
    t1d: Diagnosis
    t2d: Diagnosis
    hypertension: Diagnosis
    myocardial_infarction: Diagnosis
    heart_failure: Diagnosis
    obesity: Diagnosis
    autism: Diagnosis
    intellectual_disability: Diagnosis
    epilepsy: Diagnosis
    sarcoma: Diagnosis
    pneumonia: Diagnosis  # outside COVID-19 admissions
    covid: Diagnosis
    covid_hospital: Mask
    covid_pneumonia: Mask  # pneumonia recorded during the COVID-19 admission
    doses: Days  # (persons, 3): mRNA doses 1, 2 and booster; MISSING where not given
    myocarditis: Events
    pericarditis: Events
    death: Diagnosis
    covid_death: Mask
    observation_end: Days


def draw_history(
    rng: np.random.Generator, people: People, params: CountryParams, reference: int
) -> History:
    n = len(people)
    age, bmi, male = people.age, people.bmi, ~people.female
    obese = (age >= 18) & (bmi >= 30)

    def has(p: Floats | float) -> Mask:
        return chance(rng, np.minimum(p, 0.95), n)

    t1d = has(np.where(age >= 2, 0.004, 0.0))
    # Each BMI unit above 27 raises the risk of type 2 diabetes by about 12 %.
    t2d_risk = (
        curve(age, T2D_BY_AGE)
        * params.t2d
        * np.where(age >= 65, params.t2d_elderly, 1.0)
        * np.exp(0.11 * (bmi - 27))
    )
    t2d = ~t1d & has(t2d_risk)
    hypertension = has(
        curve(age, HYPERTENSION_BY_AGE)
        * params.hypertension
        * np.exp(0.06 * (bmi - 27))
        * np.where(t2d, 1.3, 1.0)
    )
    mi = has(
        curve(age, MI_BY_AGE)
        * params.heart
        * np.where(male, 1.6, 0.6)
        * np.where(t2d, 1.8, 1.0)
        * np.where(hypertension, 1.4, 1.0)
    )
    heart_failure = has(
        curve(age, HEART_FAILURE_BY_AGE)
        * params.heart
        * np.where(hypertension, 1.6, 1.0)
        * np.where(t2d, 1.7, 1.0)
        * np.where(mi, 2.5, 1.0)
    )
    obesity = obese & has(0.55)  # obesity is under-recorded as a diagnosis
    autism = has(params.autism / 100 * curve(age, AUTISM_BY_AGE) * np.where(male, 1.5, 0.5))
    intellectual = has(np.where(autism, 0.20, 0.004))
    epilepsy = has(np.where(autism, 0.10, 0.006) + np.where(intellectual, 0.12, 0.0))
    sarcoma = has(params.sarcoma * 1e-5 * curve(age, SARCOMA_BY_AGE))

    doses = _vaccinate(rng, people, params)
    covid, covid_hospital, covid_death_day = _covid(
        rng, people, params, reference, doses, t2d, heart_failure, obese
    )

    # Deaths from other causes: Gompertz hazard at the age mid-way through observation.
    start = people.observation_start
    midlife = people.age_at((start + reference) // 2)
    hazard = (
        np.exp(-10.2 + 0.09 * midlife)
        * params.mortality
        * np.where(heart_failure, 2.5, 1.0)
        * np.where(t2d, 1.3, 1.0)
        * np.where(mi, 1.4, 1.0)
        * np.where(sarcoma, 4.0, 1.0)
    )
    observed_years = (reference - start) / 365.25
    dies = has(1 - np.exp(-hazard * observed_years))
    death_day = np.where(dies, uniform_days(rng, start, reference, n), MISSING)

    # Someone who died before their COVID-19 infection date never had it.
    covid = Diagnosis(covid.has & ((death_day == MISSING) | (death_day >= covid.date)), covid.date)
    covid_hospital &= covid.has
    covid_death = covid_hospital & (covid_death_day <= reference)
    death_day = np.where(
        covid_death,
        np.where(death_day == MISSING, covid_death_day, np.minimum(death_day, covid_death_day)),
        death_day,
    )
    death = Diagnosis(death_day != MISSING, death_day)
    end = np.where(death.has, death_day, reference)
    doses = np.where(doses <= end[:, None], doses, MISSING)

    def diagnosed(who: Mask, from_age: float) -> Diagnosis:
        low = np.minimum(np.maximum(start, people.birth + years(from_age)), end)
        return Diagnosis(who, uniform_days(rng, low, end, n))

    def diagnosed_young(who: Mask, ages: tuple[float, float]) -> Diagnosis:
        # Diagnosed in childhood when the records cover it, else at a recorded visit.
        preferred = people.birth + years(ages[0] + rng.random(n) * (ages[1] - ages[0]))
        fallback = uniform_days(rng, start, end, n)
        in_records = (preferred >= start) & (preferred <= end)
        return Diagnosis(who, np.where(in_records, preferred, fallback))

    pneumonia = diagnosed(has(curve(age, PNEUMONIA_BY_AGE)), 0)
    return History(
        t1d=diagnosed_young(t1d, (1, 25)),
        t2d=diagnosed(t2d, 25),
        hypertension=diagnosed(hypertension, 20),
        myocardial_infarction=diagnosed(mi, 30),
        heart_failure=diagnosed(heart_failure, 40),
        obesity=diagnosed(obesity, 18),
        autism=diagnosed_young(autism, (2.5, 10)),
        intellectual_disability=diagnosed_young(intellectual, (1, 8)),
        epilepsy=diagnosed(epilepsy, 0),
        sarcoma=diagnosed(sarcoma, 0),
        pneumonia=pneumonia,
        covid=covid,
        covid_hospital=covid_hospital,
        covid_pneumonia=covid_hospital & has(0.35),
        doses=doses,
        myocarditis=_myocarditis(rng, people, start, end, doses, covid),
        pericarditis=_pericarditis(rng, people, start, end, doses),
        death=death,
        covid_death=covid_death,
        observation_end=end,
    )


def _vaccinate(rng: np.random.Generator, people: People, params: CountryParams) -> Days:
    n = len(people)
    age = people.age_at(VACCINATION_AGE_DAY)
    uptake = np.select(
        [age >= 18, age >= 12, age >= 5],
        [
            np.minimum(params.vaccinated_adults * curve(age, ADULT_UPTAKE_BY_AGE), 0.98),
            np.full(n, params.vaccinated_adolescents),
            np.full(n, params.vaccinated_children),
        ],
        0.0,
    )
    vaccinated = chance(rng, uptake, n)
    first = np.full(n, MISSING, dtype=np.int64)
    assigned = np.zeros(n, dtype=np.bool_)
    for min_age, low, high in VACCINATION_PRIORITY:
        group = vaccinated & ~assigned & (age >= min_age)
        first = np.where(group, uniform_days(rng, day(low), day(high), n), first)
        assigned |= group
    second_given = vaccinated & chance(rng, 0.95, n)
    second = np.where(second_given, first + uniform_days(rng, 21, 42, n), MISSING)
    elderly = age >= 60
    booster_given = second_given & (age >= 18) & chance(rng, np.where(elderly, 0.88, 0.62), n)
    booster_day = np.where(
        elderly,
        uniform_days(rng, day("2021-10-01"), day("2021-12-31"), n),
        uniform_days(rng, day("2021-12-01"), day("2022-02-28"), n),
    )
    booster = np.where(booster_given, np.maximum(booster_day, second + 90), MISSING)
    doses: Days = np.stack([first, second, booster], axis=1)
    return doses


def _covid(
    rng: np.random.Generator,
    people: People,
    params: CountryParams,
    reference: int,
    doses: Days,
    t2d: Mask,
    heart_failure: Mask,
    obese: Mask,
) -> tuple[Diagnosis, Mask, Days]:
    n = len(people)
    wave = categorical(rng, [w for _, _, w in COVID_WAVES], n)
    first_day = np.asarray([day(f) for f, _, _ in COVID_WAVES], dtype=np.int64)[wave]
    last_day = np.asarray([day(last) for _, last, _ in COVID_WAVES], dtype=np.int64)[wave]
    date = uniform_days(rng, first_day, last_day, n)
    infected = chance(rng, np.minimum(params.covid * curve(people.age, COVID_BY_AGE), 0.95), n)
    infected &= (date >= people.observation_start) & (date <= reference)
    age = people.age_at(date)
    protected = (doses[:, 1] != MISSING) & (doses[:, 1] + 14 <= date)
    risk = (
        curve(age, COVID_HOSPITAL_BY_AGE)
        * params.covid_hospital
        * np.where(t2d, 1.8, 1.0)
        * np.where(heart_failure, 2.0, 1.0)
        * np.where(obese, 1.6, 1.0)
        * np.where(date < OMICRON, 2.0, 0.6)
        * np.where(protected, 0.35, 1.0)
    )
    hospital = infected & chance(rng, np.minimum(risk, 0.8), n)
    dies = hospital & chance(rng, curve(age, COVID_DEATH_BY_AGE) * params.mortality, n)
    death_day = np.where(dies, date + uniform_days(rng, 5, 30, n), NEVER)
    return Diagnosis(infected, date), hospital, death_day


def _after_doses(
    rng: np.random.Generator,
    doses: Days,
    end: Days,
    risk_per_dose: Floats,
    delay: tuple[int, int],
) -> Events:
    people: list[Index] = []
    dates: list[Days] = []
    n = len(end)
    for k in range(doses.shape[1]):
        given = doses[:, k] != MISSING
        onset = doses[:, k] + uniform_days(rng, delay[0], delay[1], n)
        hit = given & chance(rng, risk_per_dose, n) & (onset <= end)
        people.append(np.flatnonzero(hit))
        dates.append(onset[hit])
    return _joined(people, dates)


def _joined(people: Sequence[Index], dates: Sequence[Days]) -> Events:
    return Events(np.concatenate(people), np.concatenate(dates))


def _myocarditis(
    rng: np.random.Generator, people: People, start: Days, end: Days, doses: Days, covid: Diagnosis
) -> Events:
    n = len(people)
    age = people.age_at(VACCINATION_AGE_DAY)
    male = ~people.female
    # mRNA vaccine myocarditis concentrates in young men, within two weeks of a dose.
    per_dose = np.where(male & (age >= 12) & (age < 30), 3e-4, np.where(age < 40, 4e-5, 1.5e-5))
    vaccine = _after_doses(rng, doses, end, per_dose, (1, 14))
    background = chance(rng, 2.5e-4, n)
    background_day = uniform_days(rng, start, end, n)
    onset = covid.date + uniform_days(rng, 3, 21, n)
    after_covid = covid.has & chance(rng, 3e-4, n) & (onset <= end)
    return _joined(
        [vaccine.person, np.flatnonzero(background), np.flatnonzero(after_covid)],
        [vaccine.date, background_day[background], onset[after_covid]],
    )


# The demo's drug-safety signal, in its own random stream (`vaccine_myocarditis`): an added
# risk per mRNA dose in young men, within a week of the dose. Exaggerated (real estimates are
# nearer 1 in 10,000 doses) so that a country of 100,000 synthetic persons has countable
# cases in the week after a dose.
SIGNAL_RISK_PER_DOSE: Final = 1.2e-3
SIGNAL_AGES: Final = (12, 30)
SIGNAL_DELAY: Final = (1, 7)


def vaccine_myocarditis(rng: np.random.Generator, people: People, doses: Days, end: Days) -> Events:
    """Myocarditis onsets caused by mRNA doses in men of 12 to 29, beyond `_myocarditis`'s."""
    age = people.age_at(VACCINATION_AGE_DAY)
    young_men = ~people.female & (age >= SIGNAL_AGES[0]) & (age < SIGNAL_AGES[1])
    risk = np.where(young_men, SIGNAL_RISK_PER_DOSE, 0.0)
    return _after_doses(rng, doses, end, risk, SIGNAL_DELAY)


def _pericarditis(
    rng: np.random.Generator, people: People, start: Days, end: Days, doses: Days
) -> Events:
    n = len(people)
    age = people.age_at(VACCINATION_AGE_DAY)
    per_dose = np.where(~people.female & (age < 40), 1e-4, 3e-5)
    vaccine = _after_doses(rng, doses, end, per_dose, (1, 21))
    background = chance(rng, 3e-4, n)
    background_day = uniform_days(rng, start, end, n)
    return _joined(
        [vaccine.person, np.flatnonzero(background)],
        [vaccine.date, background_day[background]],
    )
