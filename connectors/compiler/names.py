"""The allow-list of SQL names the compiler may emit. Every table and column in compiled SQL
comes from a constant here (a breakdown's output column from its entry in
`connectors.compiler.dimensions`), never from a query: a query only selects among these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from connectors.omop import FEMALE_CONCEPT_ID, MALE_CONCEPT_ID, OPTOUT_TABLE, PERSON_INDEX_TABLE
from schema.codes import EventDomain, Sex, VisitType

PERSON: Final = "person"
OBSERVATION_PERIOD: Final = "observation_period"
DEATH: Final = "death"
VISIT_OCCURRENCE: Final = "visit_occurrence"
VISIT_OCCURRENCE_ID: Final = "visit_occurrence_id"
VISIT_CONCEPT: Final = "visit_concept_id"
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

# The visit an event belongs to; the death table's date.
VISITS: Final = EventTable(
    VISIT_OCCURRENCE, VISIT_CONCEPT, "visit_source_concept_id", "visit_start_date"
)
DEATHS: Final = EventTable(DEATH, "cause_concept_id", "cause_source_concept_id", "death_date")

EVENT_TABLES: Final[dict[EventDomain, EventTable]] = {
    EventDomain.CONDITION: CONDITIONS,
    EventDomain.DRUG: DRUGS,
    EventDomain.MEASUREMENT: MEASUREMENTS,
    EventDomain.VISIT: VISITS,
    EventDomain.DEATH: DEATHS,
}

# The OMOP standard visit concepts of each visit type: 9201 inpatient visit, 9203 emergency
# room visit, 9202 outpatient visit, 262 emergency room and inpatient visit (an admission
# through the emergency room: both an admission and an emergency visit).
INPATIENT_VISIT, EMERGENCY_VISIT, OUTPATIENT_VISIT = 9201, 9203, 9202
EMERGENCY_INPATIENT_VISIT = 262
VISIT_CONCEPT_IDS: Final[dict[VisitType, tuple[int, ...]]] = {
    VisitType.INPATIENT: (INPATIENT_VISIT, EMERGENCY_INPATIENT_VISIT),
    VisitType.EMERGENCY: (EMERGENCY_VISIT, EMERGENCY_INPATIENT_VISIT),
    VisitType.OUTPATIENT: (OUTPATIENT_VISIT,),
    VisitType.INPATIENT_OR_EMERGENCY: (INPATIENT_VISIT, EMERGENCY_VISIT, EMERGENCY_INPATIENT_VISIT),
}
