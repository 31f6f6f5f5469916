"""Per-country parameters of the synthetic populations.

Every number here is INVENTED, chosen to be plausible and to make countries differ visibly in
query results (older Finland and Italy, younger France and Norway; more type 2 diabetes among
elderly Finns; Denmark vaccinating adolescents and children widely, recording many COVID-19
tests; Nordic countries diagnosing autism more often). They are not statistics of any country
and must never be presented as such.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from schema.codes import Jurisdiction

AGE_BAND_YEARS: Final = 10


@dataclass(frozen=True, slots=True)
class CountryParams:
    name: str
    # Share of persons (any unit; normalised) in age bands 0-9, 10-19, ..., 90-99 at the
    # reference date.
    age_shares: tuple[float, float, float, float, float, float, float, float, float, float]
    t2d: float  # multiplier on the age-specific type 2 diabetes risk
    t2d_elderly: float  # further multiplier from age 65
    hypertension: float  # multiplier on the age-specific hypertension risk
    heart: float  # multiplier on heart failure and myocardial infarction risk
    bmi_shift: float  # added to the mean adult BMI, kg/m2
    covid: float  # share of persons with a recorded COVID-19 diagnosis 2020-2023
    covid_hospital: float  # multiplier on the risk of hospitalisation given COVID-19
    vaccinated_adults: float  # share of adults with a first mRNA dose
    vaccinated_adolescents: float  # share of 12-17-year-olds
    vaccinated_children: float  # share of 5-11-year-olds
    autism: float  # percent of children and young adults with an autism diagnosis
    sarcoma: float  # soft-tissue sarcoma (C49) diagnoses per 100,000 persons
    mortality: float  # multiplier on the age-specific death rate
    glp1: float  # share of type 2 diabetics given a GLP-1 analogue


# fmt: off
#                         0-9   10-19 20-29 30-39 40-49 50-59 60-69 70-79 80-89 90-99
COUNTRIES: Final[dict[Jurisdiction, CountryParams]] = {
    Jurisdiction.FR: CountryParams(
        "France",         (11.9, 12.6, 11.5, 12.3, 12.6, 12.8, 11.9, 9.1, 4.3, 1.0),
        t2d=0.95, t2d_elderly=1.0, hypertension=1.0, heart=0.9, bmi_shift=-0.8,
        covid=0.30, covid_hospital=1.0, vaccinated_adults=0.80, vaccinated_adolescents=0.60,
        vaccinated_children=0.03, autism=0.8, sarcoma=5.0, mortality=0.95, glp1=0.10),
    Jurisdiction.DE: CountryParams(
        "Germany",        (9.4, 9.2, 10.8, 12.9, 11.9, 15.3, 13.7, 9.8, 6.0, 1.0),
        t2d=1.15, t2d_elderly=1.1, hypertension=1.15, heart=1.2, bmi_shift=0.5,
        covid=0.28, covid_hospital=1.0, vaccinated_adults=0.78, vaccinated_adolescents=0.45,
        vaccinated_children=0.05, autism=0.9, sarcoma=4.8, mortality=1.05, glp1=0.10),
    Jurisdiction.FI: CountryParams(
        "Finland",        (9.2, 10.8, 11.6, 12.7, 11.9, 12.6, 13.6, 11.9, 4.8, 0.9),
        t2d=1.10, t2d_elderly=1.35, hypertension=1.1, heart=1.1, bmi_shift=0.6,
        covid=0.20, covid_hospital=0.8, vaccinated_adults=0.82, vaccinated_adolescents=0.60,
        vaccinated_children=0.05, autism=1.3, sarcoma=5.5, mortality=1.0, glp1=0.14),
    Jurisdiction.DK: CountryParams(
        "Denmark",        (10.5, 11.6, 13.2, 12.1, 12.4, 13.4, 11.9, 10.0, 4.0, 0.9),
        t2d=0.90, t2d_elderly=1.0, hypertension=0.95, heart=0.9, bmi_shift=-0.2,
        covid=0.50, covid_hospital=0.6, vaccinated_adults=0.86, vaccinated_adolescents=0.78,
        vaccinated_children=0.20, autism=1.5, sarcoma=4.9, mortality=1.0, glp1=0.20),
    Jurisdiction.NL: CountryParams(
        "Netherlands",    (10.3, 11.6, 12.9, 12.3, 12.0, 14.4, 12.4, 9.5, 3.9, 0.7),
        t2d=0.95, t2d_elderly=1.0, hypertension=0.95, heart=0.9, bmi_shift=-0.3,
        covid=0.35, covid_hospital=0.9, vaccinated_adults=0.80, vaccinated_adolescents=0.55,
        vaccinated_children=0.03, autism=1.0, sarcoma=4.7, mortality=0.95, glp1=0.10),
    Jurisdiction.NO: CountryParams(
        "Norway",         (11.3, 12.2, 13.5, 13.6, 13.2, 13.4, 11.2, 8.4, 3.7, 0.8),
        t2d=0.85, t2d_elderly=0.95, hypertension=0.9, heart=0.85, bmi_shift=0.0,
        covid=0.28, covid_hospital=0.6, vaccinated_adults=0.85, vaccinated_adolescents=0.70,
        vaccinated_children=0.02, autism=1.1, sarcoma=5.0, mortality=0.9, glp1=0.15),
    Jurisdiction.IT: CountryParams(
        "Italy",          (7.9, 9.6, 10.1, 11.2, 14.6, 15.8, 12.7, 10.3, 6.4, 1.4),
        t2d=1.05, t2d_elderly=1.1, hypertension=1.1, heart=1.0, bmi_shift=-0.4,
        covid=0.40, covid_hospital=1.2, vaccinated_adults=0.83, vaccinated_adolescents=0.70,
        vaccinated_children=0.10, autism=0.7, sarcoma=5.2, mortality=1.0, glp1=0.08),
    Jurisdiction.ES: CountryParams(
        "Spain",          (8.6, 10.6, 10.4, 12.5, 16.1, 15.0, 11.8, 8.9, 5.0, 1.1),
        t2d=1.10, t2d_elderly=1.1, hypertension=1.05, heart=0.95, bmi_shift=0.1,
        covid=0.30, covid_hospital=1.1, vaccinated_adults=0.88, vaccinated_adolescents=0.80,
        vaccinated_children=0.35, autism=0.75, sarcoma=4.8, mortality=0.95, glp1=0.08),
    Jurisdiction.SE: CountryParams(
        "Sweden",         (11.5, 11.6, 12.6, 13.2, 12.3, 12.7, 11.2, 10.0, 4.1, 0.8),
        t2d=0.90, t2d_elderly=1.0, hypertension=0.95, heart=1.0, bmi_shift=-0.1,
        covid=0.25, covid_hospital=0.8, vaccinated_adults=0.84, vaccinated_adolescents=0.55,
        vaccinated_children=0.01, autism=1.6, sarcoma=5.1, mortality=0.95, glp1=0.15),
    Jurisdiction.BE: CountryParams(
        "Belgium",        (10.9, 11.6, 12.2, 12.8, 12.9, 13.4, 12.1, 8.5, 4.7, 0.9),
        t2d=1.00, t2d_elderly=1.0, hypertension=1.0, heart=1.0, bmi_shift=0.0,
        covid=0.38, covid_hospital=1.1, vaccinated_adults=0.82, vaccinated_adolescents=0.70,
        vaccinated_children=0.05, autism=1.0, sarcoma=5.0, mortality=1.0, glp1=0.10),
}

DEFAULT: Final = CountryParams(
    "Synthetic",          (10.0, 10.6, 11.6, 12.7, 13.3, 14.0, 12.4, 9.3, 5.0, 1.1),
    t2d=1.0, t2d_elderly=1.0, hypertension=1.0, heart=1.0, bmi_shift=0.0,
    covid=0.30, covid_hospital=1.0, vaccinated_adults=0.78, vaccinated_adolescents=0.55,
    vaccinated_children=0.05, autism=1.0, sarcoma=5.0, mortality=1.0, glp1=0.10)
# fmt: on


def params_for(jurisdiction: Jurisdiction) -> CountryParams:
    """The country's parameters; countries without their own row get `DEFAULT` under their
    own name."""
    known = COUNTRIES.get(jurisdiction)
    if known is not None:
        return known
    return replace(DEFAULT, name=f"Synthetic {jurisdiction.value}")
