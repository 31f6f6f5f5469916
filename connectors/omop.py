"""The OMOP CDM 5.4 tables a connector reads, and the small tables Tessera adds.

Only standard OMOP columns are read, so any OMOP CDM 5.4 database works. `tessera connector
prepare` adds the Tessera tables to a hub's database when they are missing.
"""

from __future__ import annotations

from typing import Final

MALE_CONCEPT_ID: Final = 8507
FEMALE_CONCEPT_ID: Final = 8532

# Tessera's own tables, kept beside the CDM in the hub's database.
OPTOUT_TABLE: Final = "tessera_optout"  # EHDS Art. 71: persons excluded from every answer
OPTOUT_REGISTER_TABLE: Final = "tessera_optout_register"  # one row: the register version
RECORD_KEY_TABLE: Final = "tessera_record_key"  # secret, stable random key per person
# Each person's index in the privacy ledger, stable across data reloads (connectors.persons).
PERSON_INDEX_TABLE: Final = "tessera_person"
DATA_RELEASE_TABLE: Final = "tessera_data_release"  # one row: the hub's data release label

# OMOP CDM 5.4 DDL (the tables Tessera reads, with every 5.4 column so a real CDM matches).
CDM_DDL: Final[tuple[str, ...]] = (
    """CREATE TABLE IF NOT EXISTS person (
        person_id BIGINT NOT NULL,
        gender_concept_id INTEGER NOT NULL,
        year_of_birth INTEGER NOT NULL,
        month_of_birth INTEGER,
        day_of_birth INTEGER,
        birth_datetime TIMESTAMP,
        race_concept_id INTEGER NOT NULL,
        ethnicity_concept_id INTEGER NOT NULL,
        location_id BIGINT,
        provider_id BIGINT,
        care_site_id BIGINT,
        person_source_value VARCHAR,
        gender_source_value VARCHAR,
        gender_source_concept_id INTEGER,
        race_source_value VARCHAR,
        race_source_concept_id INTEGER,
        ethnicity_source_value VARCHAR,
        ethnicity_source_concept_id INTEGER)""",
    """CREATE TABLE IF NOT EXISTS observation_period (
        observation_period_id BIGINT NOT NULL,
        person_id BIGINT NOT NULL,
        observation_period_start_date DATE NOT NULL,
        observation_period_end_date DATE NOT NULL,
        period_type_concept_id INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS visit_occurrence (
        visit_occurrence_id BIGINT NOT NULL,
        person_id BIGINT NOT NULL,
        visit_concept_id INTEGER NOT NULL,
        visit_start_date DATE NOT NULL,
        visit_start_datetime TIMESTAMP,
        visit_end_date DATE NOT NULL,
        visit_end_datetime TIMESTAMP,
        visit_type_concept_id INTEGER NOT NULL,
        provider_id BIGINT,
        care_site_id BIGINT,
        visit_source_value VARCHAR,
        visit_source_concept_id INTEGER,
        admitted_from_concept_id INTEGER,
        admitted_from_source_value VARCHAR,
        discharged_to_concept_id INTEGER,
        discharged_to_source_value VARCHAR,
        preceding_visit_occurrence_id BIGINT)""",
    """CREATE TABLE IF NOT EXISTS condition_occurrence (
        condition_occurrence_id BIGINT NOT NULL,
        person_id BIGINT NOT NULL,
        condition_concept_id INTEGER NOT NULL,
        condition_start_date DATE NOT NULL,
        condition_start_datetime TIMESTAMP,
        condition_end_date DATE,
        condition_end_datetime TIMESTAMP,
        condition_type_concept_id INTEGER NOT NULL,
        condition_status_concept_id INTEGER,
        stop_reason VARCHAR,
        provider_id BIGINT,
        visit_occurrence_id BIGINT,
        visit_detail_id BIGINT,
        condition_source_value VARCHAR,
        condition_source_concept_id INTEGER,
        condition_status_source_value VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS drug_exposure (
        drug_exposure_id BIGINT NOT NULL,
        person_id BIGINT NOT NULL,
        drug_concept_id INTEGER NOT NULL,
        drug_exposure_start_date DATE NOT NULL,
        drug_exposure_start_datetime TIMESTAMP,
        drug_exposure_end_date DATE NOT NULL,
        drug_exposure_end_datetime TIMESTAMP,
        verbatim_end_date DATE,
        drug_type_concept_id INTEGER NOT NULL,
        stop_reason VARCHAR,
        refills INTEGER,
        quantity DOUBLE,
        days_supply INTEGER,
        sig VARCHAR,
        route_concept_id INTEGER,
        lot_number VARCHAR,
        provider_id BIGINT,
        visit_occurrence_id BIGINT,
        visit_detail_id BIGINT,
        drug_source_value VARCHAR,
        drug_source_concept_id INTEGER,
        route_source_value VARCHAR,
        dose_unit_source_value VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS measurement (
        measurement_id BIGINT NOT NULL,
        person_id BIGINT NOT NULL,
        measurement_concept_id INTEGER NOT NULL,
        measurement_date DATE NOT NULL,
        measurement_datetime TIMESTAMP,
        measurement_time VARCHAR,
        measurement_type_concept_id INTEGER NOT NULL,
        operator_concept_id INTEGER,
        value_as_number DOUBLE,
        value_as_concept_id INTEGER,
        unit_concept_id INTEGER,
        range_low DOUBLE,
        range_high DOUBLE,
        provider_id BIGINT,
        visit_occurrence_id BIGINT,
        visit_detail_id BIGINT,
        measurement_source_value VARCHAR,
        measurement_source_concept_id INTEGER,
        unit_source_value VARCHAR,
        unit_source_concept_id INTEGER,
        value_source_value VARCHAR,
        measurement_event_id BIGINT,
        meas_event_field_concept_id INTEGER)""",
    """CREATE TABLE IF NOT EXISTS death (
        person_id BIGINT NOT NULL,
        death_date DATE NOT NULL,
        death_datetime TIMESTAMP,
        death_type_concept_id INTEGER,
        cause_concept_id INTEGER,
        cause_source_value VARCHAR,
        cause_source_concept_id INTEGER)""",
    """CREATE TABLE IF NOT EXISTS concept (
        concept_id INTEGER NOT NULL,
        concept_name VARCHAR NOT NULL,
        domain_id VARCHAR NOT NULL,
        vocabulary_id VARCHAR NOT NULL,
        concept_class_id VARCHAR NOT NULL,
        standard_concept VARCHAR,
        concept_code VARCHAR NOT NULL,
        valid_start_date DATE NOT NULL,
        valid_end_date DATE NOT NULL,
        invalid_reason VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS concept_ancestor (
        ancestor_concept_id INTEGER NOT NULL,
        descendant_concept_id INTEGER NOT NULL,
        min_levels_of_separation INTEGER NOT NULL,
        max_levels_of_separation INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cdm_source (
        cdm_source_name VARCHAR NOT NULL,
        cdm_source_abbreviation VARCHAR NOT NULL,
        cdm_holder VARCHAR NOT NULL,
        source_description VARCHAR,
        source_documentation_reference VARCHAR,
        cdm_etl_reference VARCHAR,
        source_release_date DATE NOT NULL,
        cdm_release_date DATE NOT NULL,
        cdm_version VARCHAR,
        cdm_version_concept_id INTEGER NOT NULL,
        vocabulary_version VARCHAR NOT NULL)""",
)

# Rewritten by every prepare: a rebuilt CDM may number the same persons differently.
PERSON_INDEX_DDL: Final = f"""CREATE TABLE IF NOT EXISTS {PERSON_INDEX_TABLE} (
        person_id BIGINT PRIMARY KEY,
        person_index INTEGER NOT NULL)"""

TESSERA_DDL: Final[tuple[str, ...]] = (
    f"CREATE TABLE IF NOT EXISTS {OPTOUT_TABLE} (person_id BIGINT PRIMARY KEY)",
    f"""CREATE TABLE IF NOT EXISTS {OPTOUT_REGISTER_TABLE} (
        version VARCHAR NOT NULL,
        updated_at TIMESTAMP NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {RECORD_KEY_TABLE} (
        person_id BIGINT PRIMARY KEY,
        record_key BIGINT NOT NULL)""",
    PERSON_INDEX_DDL,
    f"""CREATE TABLE IF NOT EXISTS {DATA_RELEASE_TABLE} (
        release VARCHAR NOT NULL,
        prepared_at TIMESTAMP NOT NULL)""",
)
