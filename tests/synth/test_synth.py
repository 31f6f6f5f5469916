"""The synthetic OMOP generator: determinism, realism where queries can see it, and schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest

from connectors.omop import (
    CDM_DDL,
    OPTOUT_TABLE,
    RECORD_KEY_TABLE,
)
from connectors.prepare import RECORD_KEY_BOUND, prepare_database
from schema.codes import Jurisdiction
from synth import SynthReport, generate
from synth import generator as generator_module
from synth import vocabulary as v
from synth.arrays import MISSING
from synth.database import TableWriter, create_cdm
from synth.generator import pseudonyms

PERSONS = 20_000
CONTENT_TABLES = (
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "measurement",
    "death",
    "concept",
    "concept_ancestor",
    "cdm_source",
    OPTOUT_TABLE,
)


@pytest.fixture(scope="module")
def fi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "fi.duckdb"
    generate(path, state=_state(path), jurisdiction=Jurisdiction.FI, persons=PERSONS, seed=11)
    return path


@pytest.fixture(scope="module")
def fr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "fr.duckdb"
    generate(path, state=_state(path), jurisdiction=Jurisdiction.FR, persons=PERSONS, seed=11)
    return path


@pytest.fixture
def fi_con(fi: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(fi), read_only=True)
    yield con
    con.close()


def _state(database: Path) -> Path:
    return database.with_suffix(".state")


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> float:
    row = con.execute(sql, params or []).fetchone()
    assert row is not None
    return float(row[0])


def _content(path: Path) -> dict[str, list[tuple[object, ...]]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()  # noqa: S608
            for t in CONTENT_TABLES
        }
    finally:
        con.close()


# The code-matching rule the connector's compiler applies: the code itself, its
# concept_ancestor descendants and, for ICD10 and ATC, codes that extend it.
_MATCHING = """
    WITH named AS (
        SELECT concept_id FROM concept
        WHERE vocabulary_id = $vocabulary
          AND (concept_code = $code
               OR ($vocabulary IN ('ICD10', 'ATC') AND starts_with(concept_code, $code)))
    )
    SELECT concept_id FROM named
    UNION
    SELECT ca.descendant_concept_id FROM concept_ancestor AS ca
    JOIN named ON ca.ancestor_concept_id = named.concept_id
"""


def _persons_with(con: duckdb.DuckDBPyConnection, table: str, vocabulary: str, code: str) -> int:
    concept, source = {
        "condition_occurrence": ("condition_concept_id", "condition_source_concept_id"),
        "drug_exposure": ("drug_concept_id", "drug_source_concept_id"),
        "measurement": ("measurement_concept_id", "measurement_source_concept_id"),
    }[table]
    sql = f"""
        WITH codes AS ({_MATCHING})
        SELECT count(DISTINCT person_id) FROM {table}
        WHERE {concept} IN (SELECT concept_id FROM codes)
           OR {source} IN (SELECT concept_id FROM codes)
    """  # noqa: S608
    return int(_one(con, sql, {"vocabulary": vocabulary, "code": code}))  # type: ignore[arg-type]


# --- Determinism ----------------------------------------------------------------------------


def test_same_inputs_give_identical_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    generate(a, state=_state(a), jurisdiction=Jurisdiction.DK, persons=5_000, seed=3)
    generate(b, state=_state(b), jurisdiction=Jurisdiction.DK, persons=5_000, seed=3)

    assert _content(a) == _content(b)


def test_another_seed_or_country_gives_other_content(tmp_path: Path) -> None:
    base, seed, country = (tmp_path / n for n in ("base.duckdb", "seed.duckdb", "c.duckdb"))
    generate(base, state=_state(base), jurisdiction=Jurisdiction.DK, persons=5_000, seed=3)
    generate(seed, state=_state(seed), jurisdiction=Jurisdiction.DK, persons=5_000, seed=4)
    generate(country, state=_state(country), jurisdiction=Jurisdiction.SE, persons=5_000, seed=3)

    reference = _content(base)
    for other in (_content(seed), _content(country)):
        assert other["person"] != reference["person"]
        assert other["condition_occurrence"] != reference["condition_occurrence"]
        assert other["concept"] == reference["concept"]


def test_chunks_continue_ids_and_stay_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generator_module, "CHUNK_PERSONS", 1_500)
    path = tmp_path / "chunks.duckdb"
    generate(path, state=_state(path), jurisdiction=Jurisdiction.NL, persons=5_000, seed=1)
    con = duckdb.connect(str(path), read_only=True)

    assert _one(con, "SELECT count(DISTINCT person_id) = max(person_id) FROM person") == 1
    for table, key in [
        ("visit_occurrence", "visit_occurrence_id"),
        ("condition_occurrence", "condition_occurrence_id"),
        ("drug_exposure", "drug_exposure_id"),
        ("measurement", "measurement_id"),
    ]:
        unique = f"SELECT count(DISTINCT {key}) = count(*) FROM {table}"  # noqa: S608
        dense = f"SELECT max({key}) = count(*) FROM {table}"  # noqa: S608
        assert _one(con, unique) == _one(con, dense) == 1
    dangling = """SELECT count(*) FROM condition_occurrence AS c
                  ANTI JOIN visit_occurrence AS vo USING (visit_occurrence_id)"""
    assert _one(con, dangling) == 0
    con.close()


# --- What queries will see ------------------------------------------------------------------


def test_countries_differ_in_age_structure_and_elderly_diabetes(fi: Path, fr: Path) -> None:
    def stats(path: Path) -> tuple[float, float]:
        con = duckdb.connect(str(path), read_only=True)
        elderly = _one(con, "SELECT avg((2025 - year_of_birth >= 65)::INT) FROM person")
        t2d = _one(
            con,
            """SELECT avg((person_id IN (SELECT person_id FROM condition_occurrence
                                         WHERE condition_source_value LIKE 'E11%'))::INT)
               FROM person WHERE 2025 - year_of_birth >= 65""",
        )
        con.close()
        return elderly, t2d

    fi_elderly, fi_t2d = stats(fi)
    fr_elderly, fr_t2d = stats(fr)
    assert fi_elderly > fr_elderly + 0.02
    assert fi_t2d > 1.4 * fr_t2d


def test_population_is_plausible(fi_con: duckdb.DuckDBPyConnection) -> None:
    female = _one(fi_con, "SELECT avg((gender_concept_id = 8532)::INT) FROM person")
    assert 0.49 < female < 0.54
    adult_t2d = _one(
        fi_con,
        """SELECT avg((person_id IN (SELECT person_id FROM condition_occurrence
                                     WHERE condition_concept_id = 201826))::INT)
           FROM person WHERE 2025 - year_of_birth >= 18""",
    )
    assert 0.04 < adult_t2d < 0.12
    hypertension = _one(
        fi_con,
        """SELECT avg((person_id IN (SELECT person_id FROM condition_occurrence
                                     WHERE condition_source_value = 'I10'))::INT)
           FROM person WHERE 2025 - year_of_birth >= 18""",
    )
    assert 0.2 < hypertension < 0.35
    # Sarcoma is the demo's rare disease: a handful of persons, below any release threshold.
    assert _persons_with(fi_con, "condition_occurrence", "ICD10", "C49") < 11


def test_diabetics_have_higher_hba1c_and_bmi(fi_con: duckdb.DuckDBPyConnection) -> None:
    sql = """
        WITH diabetic AS (SELECT DISTINCT person_id FROM condition_occurrence
                          WHERE condition_source_value LIKE 'E11%')
        SELECT avg(value_as_number) FILTER (WHERE person_id IN (SELECT * FROM diabetic)),
               avg(value_as_number) FILTER (WHERE person_id NOT IN (SELECT * FROM diabetic))
        FROM measurement WHERE measurement_concept_id = ?
    """
    row = fi_con.execute(sql, [v.HBA1C]).fetchone()
    assert row is not None
    assert row[0] > 7.0 > 5.8 > row[1]
    row = fi_con.execute(sql, [v.BMI]).fetchone()
    assert row is not None
    assert row[0] > row[1] + 1.5


def test_most_diabetics_get_metformin(fi_con: duckdb.DuckDBPyConnection) -> None:
    share = _one(
        fi_con,
        """WITH t2d AS (SELECT DISTINCT person_id FROM condition_occurrence
                        WHERE condition_concept_id IN (SELECT descendant_concept_id
                              FROM concept_ancestor WHERE ancestor_concept_id = 201826))
           SELECT avg((person_id IN (SELECT person_id FROM drug_exposure
                                     WHERE drug_concept_id = 1503297))::INT) FROM t2d""",
    )
    assert 0.7 < share < 0.95


def test_hypertensives_have_higher_blood_pressure(fi_con: duckdb.DuckDBPyConnection) -> None:
    row = fi_con.execute(
        """WITH htn AS (SELECT person_id FROM condition_occurrence WHERE condition_concept_id = ?)
           SELECT avg(value_as_number) FILTER (WHERE person_id IN (SELECT * FROM htn)),
                  avg(value_as_number) FILTER (WHERE person_id NOT IN (SELECT * FROM htn))
           FROM measurement WHERE measurement_concept_id = ? AND unit_concept_id = ?""",
        [v.HYPERTENSION, v.SYSTOLIC_BP, v.MM_HG],
    ).fetchone()
    assert row is not None
    assert row[0] > row[1] + 15


def test_autism_comes_with_epilepsy_and_intellectual_disability(
    fi_con: duckdb.DuckDBPyConnection,
) -> None:
    sql = """
        WITH autistic AS (SELECT DISTINCT person_id FROM condition_occurrence
                          WHERE condition_source_value LIKE 'F84%'),
             other AS (SELECT DISTINCT person_id FROM condition_occurrence
                       WHERE regexp_matches(condition_source_value, ?))
        SELECT avg((person_id IN (SELECT * FROM other))::INT)
                   FILTER (WHERE person_id IN (SELECT * FROM autistic)),
               avg((person_id IN (SELECT * FROM other))::INT)
                   FILTER (WHERE person_id NOT IN (SELECT * FROM autistic))
        FROM person
    """
    for pattern in ("^G40", "^F7[0-9]"):
        row = fi_con.execute(sql, [pattern]).fetchone()
        assert row is not None
        assert row[0] > 5 * row[1]


def test_events_lie_within_observation(fi_con: duckdb.DuckDBPyConnection) -> None:
    for table, column in [
        ("condition_occurrence", "condition_start_date"),
        ("drug_exposure", "drug_exposure_start_date"),
        ("measurement", "measurement_date"),
        ("visit_occurrence", "visit_end_date"),
        ("death", "death_date"),
    ]:
        outside = f"""SELECT count(*) FROM {table} AS e JOIN observation_period AS o
                      USING (person_id) WHERE e.{column} NOT BETWEEN
                      o.observation_period_start_date AND o.observation_period_end_date"""  # noqa: S608
        assert _one(fi_con, outside) == 0, table


def test_labs_carry_units_and_normal_ranges(fi_con: duckdb.DuckDBPyConnection) -> None:
    rows = fi_con.execute(
        """SELECT measurement_source_value, any_value(unit_source_value),
                  count(*) = count(range_low), count(*) = count(value_as_number)
           FROM measurement WHERE measurement_type_concept_id = ? GROUP BY 1 ORDER BY 1""",
        [v.LAB],
    ).fetchall()
    assert rows == [("2093-3", "mg/dL", True, True), ("4548-4", "%", True, True)]


def test_only_episodes_have_condition_end_dates(fi_con: duckdb.DuckDBPyConnection) -> None:
    ended = fi_con.execute(
        """SELECT DISTINCT left(condition_source_value, 3) FROM condition_occurrence
           WHERE condition_end_date IS NOT NULL ORDER BY 1"""
    ).fetchall()
    assert [code for (code,) in ended] == ["I30", "I40", "J18", "U07"]


def test_covid_and_vaccination_happen_in_their_years(fi_con: duckdb.DuckDBPyConnection) -> None:
    covid_years = fi_con.execute(
        "SELECT DISTINCT year(condition_start_date) FROM condition_occurrence "
        "WHERE condition_concept_id = ? ORDER BY 1",
        [v.COVID],
    ).fetchall()
    assert {y for (y,) in covid_years} <= {2020, 2021, 2022, 2023}
    vaccinated_adults = _one(
        fi_con,
        """SELECT avg((person_id IN (SELECT person_id FROM drug_exposure
                                     WHERE drug_source_value = 'J07BN01'))::INT)
           FROM person WHERE 2021 - year_of_birth BETWEEN 18 AND 64""",
    )
    assert 0.6 < vaccinated_adults < 0.95
    inpatient = _one(
        fi_con,
        """SELECT count(*) FROM condition_occurrence JOIN visit_occurrence
           USING (visit_occurrence_id) WHERE condition_concept_id = ? AND visit_concept_id = ?""",
        [v.COVID, v.INPATIENT],
    )
    assert inpatient > 0


# --- Codes resolve through concept and concept_ancestor -------------------------------------


def test_icd10_category_reaches_dotted_children_and_standard_concepts(
    fi_con: duckdb.DuckDBPyConnection,
) -> None:
    by_category = _persons_with(fi_con, "condition_occurrence", "ICD10", "E11")
    by_child = _persons_with(fi_con, "condition_occurrence", "ICD10", "E11.9")
    by_snomed = _persons_with(fi_con, "condition_occurrence", "SNOMED", "44054006")
    assert 0 < by_child < by_category
    assert by_category == by_snomed  # every E11 record maps into the T2D subtree


def test_snomed_parent_covers_both_diabetes_types(fi_con: duckdb.DuckDBPyConnection) -> None:
    any_diabetes = _persons_with(fi_con, "condition_occurrence", "SNOMED", "73211009")
    t1 = _persons_with(fi_con, "condition_occurrence", "ICD10", "E10")
    t2 = _persons_with(fi_con, "condition_occurrence", "ICD10", "E11")
    assert any_diabetes == t1 + t2 > 0  # the types exclude each other here


def test_atc_classes_reach_rxnorm_ingredients(fi_con: duckdb.DuckDBPyConnection) -> None:
    diabetes_drugs = _persons_with(fi_con, "drug_exposure", "ATC", "A10")
    metformin_atc = _persons_with(fi_con, "drug_exposure", "ATC", "A10BA02")
    metformin_rxnorm = _persons_with(fi_con, "drug_exposure", "RxNorm", "6809")
    glp1 = _persons_with(fi_con, "drug_exposure", "ATC", "A10BJ")
    assert metformin_atc == metformin_rxnorm > 0
    assert diabetes_drugs > metformin_atc
    assert 0 < glp1 < metformin_atc
    # Through concept_ancestor alone (no prefix, no source column): A10 -> ingredients.
    through_ancestors = _one(
        fi_con,
        """SELECT count(DISTINCT person_id) FROM drug_exposure WHERE drug_concept_id IN
           (SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id = ?)""",
        [v.ATC_ID["A10"]],
    )
    assert through_ancestors == diabetes_drugs


def test_loinc_measurements_resolve(fi_con: duckdb.DuckDBPyConnection) -> None:
    for code in ("4548-4", "39156-5", "2093-3", "8480-6"):
        assert _persons_with(fi_con, "measurement", "LOINC", code) > 100, code


def test_source_values_are_the_codes(fi_con: duckdb.DuckDBPyConnection) -> None:
    mismatched = """
        SELECT count(*) FROM condition_occurrence AS c
        JOIN concept AS s ON s.concept_id = c.condition_source_concept_id
        WHERE s.vocabulary_id <> 'ICD10' OR s.concept_code <> c.condition_source_value
    """
    assert _one(fi_con, mismatched) == 0
    standard = """SELECT count(*) FROM condition_occurrence AS c
                  JOIN concept AS s ON s.concept_id = c.condition_concept_id
                  WHERE s.vocabulary_id = 'SNOMED' AND s.standard_concept = 'S'"""
    assert _one(fi_con, standard) == _one(fi_con, "SELECT count(*) FROM condition_occurrence")
    assert fi_con.execute(
        "SELECT DISTINCT gender_source_value FROM person ORDER BY 1"
    ).fetchall() == [("F",), ("M",)]


def test_every_concept_used_is_in_the_vocabulary(fi_con: duckdb.DuckDBPyConnection) -> None:
    missing = """
        SELECT count(*) FROM (
        SELECT condition_concept_id FROM condition_occurrence
        UNION SELECT condition_source_concept_id FROM condition_occurrence
        UNION SELECT drug_concept_id FROM drug_exposure
        UNION SELECT drug_source_concept_id FROM drug_exposure
        UNION SELECT measurement_concept_id FROM measurement
        UNION SELECT unit_concept_id FROM measurement
        UNION SELECT visit_concept_id FROM visit_occurrence
        UNION SELECT gender_concept_id FROM person
        ) AS u(id) ANTI JOIN concept ON concept_id = u.id
    """
    assert _one(fi_con, missing) == 0


# --- Tessera tables, schema, file handling --------------------------------------------------


def test_optout_and_record_keys_are_prepared(fi_con: duckdb.DuckDBPyConnection) -> None:
    optouts = _one(fi_con, "SELECT count(*) FROM tessera_optout")
    assert optouts == round(PERSONS * 0.003)
    assert (
        _one(fi_con, "SELECT count(*) FROM tessera_optout ANTI JOIN person USING (person_id)") == 0
    )
    assert fi_con.execute("SELECT version FROM tessera_optout_register").fetchall() == [
        ("synth-11",)
    ]
    row = fi_con.execute(
        "SELECT count(*), count(DISTINCT record_key), min(record_key), max(record_key) "
        "FROM tessera_record_key JOIN person USING (person_id)"
    ).fetchone()
    assert row is not None
    count, distinct, low, high = row
    assert count == PERSONS
    assert distinct > 0.99 * PERSONS
    assert low >= 0
    assert high < RECORD_KEY_BOUND


def test_schema_has_every_cdm_column(fi_con: duckdb.DuckDBPyConnection) -> None:
    expected = duckdb.connect()
    for ddl in CDM_DDL:
        expected.execute(ddl)
    columns = """SELECT table_name, column_name, data_type FROM information_schema.columns
                 WHERE table_name NOT LIKE 'tessera%' ORDER BY ALL"""
    assert fi_con.execute(columns).fetchall() == expected.execute(columns).fetchall()
    expected.close()


def test_report_counts_rows(tmp_path: Path) -> None:
    path = tmp_path / "report.duckdb"
    report = generate(path, state=_state(path), jurisdiction=Jurisdiction.IT, persons=2_000, seed=5)

    assert isinstance(report, SynthReport)
    assert report.persons == report.rows["person"] == 2_000
    assert report.rows[RECORD_KEY_TABLE] == 2_000
    assert report.optout_count == report.rows[OPTOUT_TABLE] == 6
    assert report.register_version == "synth-5"
    assert report.bytes == path.stat().st_size
    assert report.elapsed_seconds > 0
    con = duckdb.connect(str(path), read_only=True)
    for table, count in report.rows.items():
        assert _one(con, f"SELECT count(*) FROM {table}") == count, table  # noqa: S608
    con.close()


def test_existing_file_is_replaced_without_leftovers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.duckdb"
    path.write_bytes(b"not a database")

    generate(
        path, state=_state(path), jurisdiction=Jurisdiction.LU, persons=1_000, seed=2, progress=True
    )

    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.duckdb", "node.state"]
    con = duckdb.connect(str(path), read_only=True)
    assert _one(con, "SELECT count(*) FROM person") == 1_000
    assert "Synthetic LU" in str(con.execute("SELECT cdm_source_name FROM cdm_source").fetchone())
    con.close()
    captured = capsys.readouterr()
    assert "100%" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(
    ("persons", "seed", "year"), [(0, 1, 2025), (10, -1, 2025), (10, 1, 2020), (10, 1, 2101)]
)
def test_bad_arguments_are_refused(tmp_path: Path, persons: int, seed: int, year: int) -> None:
    path = tmp_path / "bad.duckdb"
    with pytest.raises(ValueError, match=r"persons|seed|reference_year"):
        generate(
            path,
            state=_state(path),
            jurisdiction=Jurisdiction.FI,
            persons=persons,
            seed=seed,
            reference_year=year,
        )
    assert not path.exists()
    assert not _state(path).exists()


def test_integer_columns_are_written_exactly_and_never_wrap() -> None:
    con = duckdb.connect()
    create_cdm(con)
    writer = TableWriter(con)
    ids = np.array([1, 2], dtype=np.int64)
    routes = np.array([2**31 - 1, MISSING], dtype=np.int64)  # the largest, and NULL
    drugs = {
        "drug_exposure_id": ids,
        "person_id": ids,
        "drug_concept_id": np.array([7, 8], dtype=np.int64),
        "drug_exposure_start_date": np.array([0, 1], dtype=np.int64),
        "drug_exposure_end_date": np.array([0, 1], dtype=np.int64),
        "drug_type_concept_id": np.array([9, 9], dtype=np.int64),
        "route_concept_id": routes,
    }
    writer.insert("drug_exposure", drugs, {})
    assert con.execute(
        "SELECT route_concept_id FROM drug_exposure ORDER BY drug_exposure_id"
    ).fetchall() == [(2**31 - 1,), (None,)]
    # A value no INTEGER column holds is refused, not wrapped into one that fits.
    too_large = {**drugs, "route_concept_id": np.array([2**31, 1], dtype=np.int64)}
    with pytest.raises(duckdb.Error):
        writer.insert("drug_exposure", too_large, {})


# --- Person identity ------------------------------------------------------------------------


def test_persons_have_distinct_pseudonymous_source_values(
    fi_con: duckdb.DuckDBPyConnection,
) -> None:
    row = fi_con.execute(
        "SELECT count(*), count(DISTINCT person_source_value), "
        "bool_and(regexp_full_match(person_source_value, 'FI-[0-9]{12}')) FROM person"
    ).fetchone()
    assert row == (PERSONS, PERSONS, True)


def test_a_pseudonym_follows_the_person_not_the_numbering() -> None:
    ordinals = np.arange(1, 2_001, dtype=np.int64)
    names = pseudonyms(Jurisdiction.FI, 11, ordinals)

    assert pseudonyms(Jurisdiction.FI, 11, ordinals[::-1]).tolist() == names[::-1].tolist()
    assert pseudonyms(Jurisdiction.FI, 11, ordinals[700:]).tolist() == names[700:].tolist()
    assert len(set(names.tolist())) == len(names)
    assert set(names.tolist()).isdisjoint(pseudonyms(Jurisdiction.FI, 12, ordinals).tolist())
    assert str(pseudonyms(Jurisdiction.SE, 11, ordinals[:1])[0]).startswith("SE-")
    # Consecutive persons do not get consecutive pseudonyms.
    numbers = np.array([int(str(n)[3:]) for n in names])
    assert len(np.unique(np.diff(numbers))) > 1_900


def test_pseudonyms_cover_every_ordinal_below_10_to_the_12() -> None:
    edges = np.array([0, 1, 10**6, 10**12 - 1], dtype=np.int64)
    assert len(set(pseudonyms(Jurisdiction.DK, 1, edges).tolist())) == 4
    with pytest.raises(ValueError, match="ordinals"):
        pseudonyms(Jurisdiction.DK, 1, np.array([10**12], dtype=np.int64))


def test_generating_again_into_the_same_state_keeps_every_persons_index(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first, again = tmp_path / "first.duckdb", tmp_path / "again.duckdb"
    generate(first, state=state, jurisdiction=Jurisdiction.DK, persons=3_000, seed=3)
    generate(again, state=state, jurisdiction=Jurisdiction.DK, persons=3_500, seed=3)

    indexes = "SELECT person_id, person_index FROM tessera_person ORDER BY ALL"
    with duckdb.connect(str(first), read_only=True) as a, duckdb.connect(str(again)) as b:
        before, after = a.execute(indexes).fetchall(), b.execute(indexes).fetchall()
    assert after[:3_000] == before
    assert [index for _, index in after[3_000:]] == list(range(3_000, 3_500))


def test_a_rebuild_with_renumbered_person_ids_keeps_every_persons_index(tmp_path: Path) -> None:
    state = tmp_path / "state"
    built = tmp_path / "built.duckdb"
    generate(built, state=state, jurisdiction=Jurisdiction.NL, persons=3_000, seed=2)
    # The hub's ETL runs again: the same people, other person_ids, another row order.
    rebuilt = tmp_path / "rebuilt.duckdb"
    with duckdb.connect(str(rebuilt)) as con:
        create_cdm(con)
        con.execute(f"ATTACH '{built}' AS built (READ_ONLY)")
        con.execute(
            "INSERT INTO person SELECT * REPLACE (7_000_000 - 3 * person_id AS person_id) "
            "FROM built.person ORDER BY hash(person_id)"
        )

    report = prepare_database(rebuilt, state=state)

    by_source = (
        "SELECT person_source_value, person_index FROM person JOIN tessera_person "
        "USING (person_id) ORDER BY ALL"
    )
    with duckdb.connect(str(built), read_only=True) as a, duckdb.connect(str(rebuilt)) as b:
        assert b.execute(by_source).fetchall() == a.execute(by_source).fetchall()
        assert b.execute("SELECT min(person_id) FROM person").fetchone() != (1,)
    assert (report.indexes_added, report.indexes_total) == (0, 3_000)
