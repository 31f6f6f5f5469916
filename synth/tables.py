"""All OMOP rows of one chunk of persons, with ids that run on across chunks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from synth import vocabulary as v
from synth.arrays import MISSING, chance
from synth.countries import CountryParams
from synth.encounters import Encounters, record_conditions, record_vaccine_signal
from synth.histories import History, vaccine_myocarditis
from synth.measurements import Measurements, measure
from synth.population import People
from synth.prescriptions import Prescriptions, prescribe
from synth.rows import Table, full, number_rows, sort_rows

# Source value columns filled from `concept.concept_code` by the writer, from the id column.
SOURCE_VALUES: Final[dict[str, dict[str, str]]] = {
    "person": {"gender_source_value": "gender_concept_id"},
    "visit_occurrence": {"visit_source_value": "visit_concept_id"},
    "condition_occurrence": {"condition_source_value": "condition_source_concept_id"},
    "drug_exposure": {"drug_source_value": "drug_source_concept_id"},
    "measurement": {
        "measurement_source_value": "measurement_source_concept_id",
        "unit_source_value": "unit_concept_id",
    },
    "death": {"cause_source_value": "cause_source_concept_id"},
}


@dataclass(slots=True)
class NextIds:
    """The next free id of each event table; ids run on across chunks."""

    visit: int = 1
    condition: int = 1
    drug: int = 1
    measurement: int = 1


def build_tables(
    rng: np.random.Generator,
    people: People,
    history: History,
    params: CountryParams,
    ids: NextIds,
    signal: np.random.Generator | None = None,
) -> dict[str, Table]:
    """The OMOP tables of `people`. `signal`, a random stream of its own, adds the vaccine
    signal's records (`histories.vaccine_myocarditis`) without changing any other record."""
    encounters = Encounters(rng, people, history.observation_end)
    record_conditions(rng, encounters, history)
    drugs = Prescriptions(rng, people, history.observation_end)
    prescribe(rng, drugs, people, history, params)
    labs = Measurements(rng, people, history.observation_end)
    measure(rng, labs, people, history)
    if signal is not None:
        onsets = vaccine_myocarditis(signal, people, history.doses, history.observation_end)
        record_vaccine_signal(signal, encounters, onsets)

    visits, visit_order = sort_rows(encounters.visits.build(), "visit_start_date")
    visit_id = number_rows(visits, "visit_occurrence_id", ids.visit, visit_order)
    ids.visit += len(visit_order)
    conditions = encounters.conditions.build()
    conditions["visit_occurrence_id"] = visit_id[conditions["visit_occurrence_id"]]
    conditions, order = sort_rows(conditions, "condition_start_date")
    number_rows(conditions, "condition_occurrence_id", ids.condition, order)
    ids.condition += len(order)
    exposures, order = sort_rows(drugs.rows.build(), "drug_exposure_start_date")
    number_rows(exposures, "drug_exposure_id", ids.drug, order)
    ids.drug += len(order)
    measurements, order = sort_rows(labs.rows.build(), "measurement_date")
    number_rows(measurements, "measurement_id", ids.measurement, order)
    ids.measurement += len(order)

    return {
        "person": _persons(people),
        "observation_period": {
            "observation_period_id": people.person_id,
            "person_id": people.person_id,
            "observation_period_start_date": people.observation_start,
            "observation_period_end_date": history.observation_end,
            "period_type_concept_id": full(len(people), v.EHR),
        },
        "visit_occurrence": visits,
        "condition_occurrence": conditions,
        "drug_exposure": exposures,
        "measurement": measurements,
        "death": _deaths(rng, people, history),
    }


def _persons(people: People) -> Table:
    birth = people.birth.astype("datetime64[D]")
    month_start = birth.astype("datetime64[M]")
    n = len(people)
    return {
        "person_id": people.person_id,
        "gender_concept_id": np.where(people.female, v.FEMALE, v.MALE).astype(np.int64),
        "year_of_birth": birth.astype("datetime64[Y]").astype(np.int64) + 1970,
        "month_of_birth": month_start.astype(np.int64) % 12 + 1,
        "day_of_birth": (birth - month_start).astype(np.int64) + 1,
        "birth_datetime": people.birth,
        "race_concept_id": full(n, v.NO_MATCHING_CONCEPT),
        "ethnicity_concept_id": full(n, v.NO_MATCHING_CONCEPT),
    }


def _deaths(rng: np.random.Generator, people: People, h: History) -> Table:
    who = h.death.who
    covid = h.covid_death[who]
    # Heart failure is often the registered cause; other causes are outside this vocabulary.
    heart = ~covid & h.heart_failure.has[who] & chance(rng, 0.5, len(who))
    cause = np.select([covid, heart], [v.COVID, v.HEART_FAILURE], MISSING).astype(np.int64)
    source_codes = [v.ICD10_ID["U07.1"], v.ICD10_ID["I50.9"]]
    source = np.select([covid, heart], source_codes, MISSING).astype(np.int64)
    return {
        "person_id": people.person_id[who],
        "death_date": h.death.date[who],
        "death_datetime": h.death.date[who],
        "death_type_concept_id": full(len(who), v.REGISTRY),
        "cause_concept_id": cause,
        "cause_source_concept_id": source,
    }
