"""The allow-list of SQL names the compiler may emit. Every table and column in compiled SQL
comes from a constant here (a breakdown's output column from its entry in
`connectors.compiler.dimensions`), never from a query: a query only selects among these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from connectors.omop import FEMALE_CONCEPT_ID, MALE_CONCEPT_ID, OPTOUT_TABLE, PERSON_INDEX_TABLE
from schema.codes import Sex

PERSON: Final = "person"
OBSERVATION_PERIOD: Final = "observation_period"
DEATH: Final = "death"
CONCEPT: Final = "concept"
CONCEPT_ANCESTOR: Final = "concept_ancestor"
OPTOUT: Final = OPTOUT_TABLE
PERSON_INDEX: Final = PERSON_INDEX_TABLE
# The temporary table a query's cohort is computed into once (connection-local).
COHORT_TABLE: Final = "tessera_cohort"
# A person's index (`tessera_person.person_index`), as the cohort table names it too.
PERSON_INDEX_COLUMN: Final = "person_index"
# The persons the ledger leaves out of a cohort table: a relation of one column,
# `PERSON_INDEX_COLUMN`, that the backend provides for the statement deleting them (DuckDB:
# the ledger's NumPy column itself).
EXCLUDED_PERSONS: Final = "tessera_excluded"

GENDER_CONCEPT_IDS: Final[dict[Sex, int]] = {
    Sex.FEMALE: FEMALE_CONCEPT_ID,
    Sex.MALE: MALE_CONCEPT_ID,
}


@dataclass(frozen=True, slots=True)
class EventTable:
    """An OMOP event table: where a criterion's concept, date and value live."""

    name: str
    concept: str
    source_concept: str
    date: str
    value: str | None = None


CONDITIONS: Final = EventTable(
    "condition_occurrence",
    "condition_concept_id",
    "condition_source_concept_id",
    "condition_start_date",
)
DRUGS: Final = EventTable(
    "drug_exposure", "drug_concept_id", "drug_source_concept_id", "drug_exposure_start_date"
)
MEASUREMENTS: Final = EventTable(
    "measurement",
    "measurement_concept_id",
    "measurement_source_concept_id",
    "measurement_date",
    value="value_as_number",
)
