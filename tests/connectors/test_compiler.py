"""The SQL compiler: golden SQL, exact counts on the fixture database, and that values never
become SQL text.

Golden files live in fixtures/compiler/; `TESSERA_UPDATE_GOLDEN=1 pytest ...` rewrites them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
import sqlglot
from pydantic import ValidationError
from sqlglot import exp

from connectors.compiler import (
    DIALECTS,
    DUCKDB,
    POSTGRES,
    TRINO,
    CompiledQuery,
    ConceptSet,
    Dialect,
    SqlStatement,
    TabulatedCell,
    compile_concept_lookup,
    compile_measured,
    compile_persons,
    compile_query,
    dialect_named,
)
from connectors.compiler.concepts import like_prefix
from connectors.errors import BadRequest
from schema.codes import AgeAt, Dimension, MeasureKind, Vocabulary
from schema.query import (
    RATES,
    STATISTICS,
    AgeRange,
    Breakdown,
    Code,
    CohortQuery,
    Criteria,
    DateWindow,
    DeathCriterion,
    EventCriterion,
    Measure,
    MeasurementCriterion,
    NumericVariable,
    RelativeWindow,
    ValueRange,
)
from schema.variables import PerPerson, VariableSource

# The fixture database's reference date (see conftest.py).
REFERENCE_DATE = dt.date(2024, 6, 30)
BuildDatabase = Callable[..., Path]
GOLDEN = Path(__file__).parent / "fixtures" / "compiler"
UPDATE = os.environ.get("TESSERA_UPDATE_GOLDEN") == "1"

SEX, AGE5, AGE10, AGE20, YEAR = (
    Dimension.SEX,
    Dimension.AGE_BAND_5,
    Dimension.AGE_BAND_10,
    Dimension.AGE_BAND_20,
    Dimension.CALENDAR_YEAR,
)


def icd10(code: str, **kwargs: Any) -> EventCriterion:
    return EventCriterion(vocabulary=Vocabulary.ICD10, code=code, **kwargs)


def event(vocabulary: Vocabulary, code: str, **kwargs: Any) -> EventCriterion:
    return EventCriterion(vocabulary=vocabulary, code=code, **kwargs)


def hba1c(**kwargs: Any) -> MeasurementCriterion:
    return MeasurementCriterion(vocabulary=Vocabulary.LOINC, code="4548-4", **kwargs)


def window(start: str | None = None, end: str | None = None) -> DateWindow:
    return DateWindow(
        start=dt.date.fromisoformat(start) if start else None,
        end=dt.date.fromisoformat(end) if end else None,
    )


def query(
    criteria: Criteria | None = None,
    *tables: Breakdown,
    reference_date: dt.date = REFERENCE_DATE,
    age_at: AgeAt | None = None,
    measures: Sequence[MeasureKind] = (MeasureKind.PERSON_COUNT,),
    variable: NumericVariable | None = None,
) -> CohortQuery:
    return CohortQuery(
        criteria=criteria or Criteria(),
        reference_date=reference_date,
        tables=list(tables),
        age_at=age_at,
        measures=[Measure(kind=kind) for kind in measures],
        variable=variable,
    )


def statistics(
    criteria: Criteria, *tables: Breakdown, variable: NumericVariable, **options: Any
) -> CohortQuery:
    """A question asking a count and a variable's statistics."""
    return query(
        criteria,
        *tables,
        measures=(MeasureKind.PERSON_COUNT, *STATISTICS),
        variable=variable,
        **options,
    )


# -- golden files ----------------------------------------------------------------------------

NAMED_QUERIES: dict[str, CohortQuery] = {
    "everyone": query(),
    "diabetic_women_40_69": query(
        Criteria(sex="FEMALE", age=AgeRange(min=40, max=69), conditions=[icd10("E11")]),
        (AGE10,),
    ),
    "diabetic_women_40_69_at_reference_date": query(
        Criteria(sex="FEMALE", age=AgeRange(min=40, max=69), conditions=[icd10("E11")]),
        (AGE10,),
        age_at=AgeAt.REFERENCE_DATE,
    ),
    "window_and_value_range": query(
        Criteria(
            conditions=[icd10("E11", window=window("2020-01-01", "2022-12-31"))],
            measurements=[hba1c(value=ValueRange(min=7.0, max=9.5), window=window("2023-01-01"))],
        )
    ),
    "any_of_nested": query(
        Criteria(
            drugs=[event(Vocabulary.ATC, "A10", descendants=False)],
            any_of=[
                Criteria(conditions=[icd10("E10")]),
                Criteria(sex="MALE", any_of=[Criteria(age=AgeRange(min=18))]),
            ],
        )
    ),
    "all_dimensions": query(
        Criteria(conditions=[icd10("I10")]), (SEX,), (SEX, AGE5), (AGE20, YEAR), (AGE10, SEX)
    ),
    "calendar_year_without_index_event": query(Criteria(sex="MALE"), (YEAR,)),
    "code_ranges": query(
        Criteria(
            conditions=[icd10("E10", to="E14")],
            drugs=[event(Vocabulary.ATC, "A10BA", to="A10BX")],
        ),
        (SEX,),
    ),
    # One question per measure: a new measure's SQL gets golden files of its own (a
    # variable's statistics are asked together: one question of theirs per kind of variable).
    **{
        f"measure_{kind.value.lower()}": query(
            Criteria(conditions=[icd10("E11")]), (SEX,), measures=[kind]
        )
        for kind in MeasureKind
        if kind not in STATISTICS and kind not in RATES
    },
    "statistics_of_age": statistics(
        Criteria(conditions=[icd10("E11")]),
        (SEX,),
        variable=NumericVariable(source=VariableSource.AGE, lo=18, hi=90),
    ),
    "statistics_of_last_hba1c": statistics(
        Criteria(conditions=[icd10("E11")]),
        (AGE10,),
        variable=NumericVariable(
            source=VariableSource.MEASUREMENT,
            code=Code(vocabulary=Vocabulary.LOINC, code="4548-4"),
            per_person=PerPerson.LAST,
            window=window("2020-01-01", "2024-12-31"),
            lo=4.0,
            hi=14.0,
        ),
    ),
    "histogram_of_first_hba1c": query(
        Criteria(conditions=[icd10("E11")]),
        (Dimension.VALUE_BIN,),
        (SEX, Dimension.VALUE_BIN),
        variable=NumericVariable(
            source=VariableSource.MEASUREMENT,
            code=Code(vocabulary=Vocabulary.LOINC, code="4548-4"),
            lo=4.0,
            hi=14.0,
            bin_width=0.5,
        ),
    ),
    "histogram_of_age": query(
        Criteria(sex="FEMALE"),
        (Dimension.VALUE_BIN,),
        variable=NumericVariable(source=VariableSource.AGE, lo=20, hi=90, bin_width=10),
    ),
    "statistics_of_mean_bmi": statistics(
        Criteria(sex="FEMALE"),
        variable=NumericVariable(
            source=VariableSource.MEASUREMENT,
            code=Code(vocabulary=Vocabulary.LOINC, code="39156-5"),
            per_person=PerPerson.MEAN,
        ),
    ),
}

# A variable at an explicit index (`NumericVariable.index_window`): the last HbA1c in the 1,600
# days from a first metformin (persons 1-12 of the fixture, 2023-06-01), and ages at every
# metformin fill (ALL: the cohort's earliest), binned.
METFORMIN_INDEX: dict[str, Any] = {
    "events": [{"domain": "DRUG", "codes": [{"vocabulary": "ATC", "code": "A10BA"}]}]
}
NAMED_QUERIES["statistics_of_hba1c_after_first_metformin"] = CohortQuery.model_validate(
    {
        "reference_date": REFERENCE_DATE,
        "index": METFORMIN_INDEX,
        "criteria": {},
        "measures": [{"kind": k} for k in ("PERSON_COUNT", *STATISTICS)],
        "tables": [(SEX,)],
        "variable": {
            "source": "MEASUREMENT",
            "code": {"vocabulary": "LOINC", "code": "4548-4"},
            "per_person": "LAST",
            "index_window": {"start_days": 0, "end_days": 1600},
            "lo": 4.0,
            "hi": 14.0,
        },
    }
)
NAMED_QUERIES["histogram_of_age_at_metformin"] = CohortQuery.model_validate(
    {
        "reference_date": REFERENCE_DATE,
        "index": {**METFORMIN_INDEX, "occurrence": "ALL"},
        "criteria": {},
        "tables": [(Dimension.VALUE_BIN,)],
        "variable": {"source": "AGE", "lo": 20, "hi": 90, "bin_width": 10},
    }
)

NAMED_QUERIES["exclusions_and_occurrences"] = query(
    Criteria(
        conditions=[icd10("I10", exclude=True), icd10("E11", at_least=2)],
        drugs=[event(Vocabulary.ATC, "A10", exclude=True, at_least=3)],
        any_of=[Criteria(measurements=[hba1c(exclude=True)]), Criteria(sex="FEMALE")],
    ),
    (YEAR,),
)

NAMED_QUERIES["prior_observation_at_index"] = query(
    Criteria(prior_observation_days=365, conditions=[icd10("E11")])
)
NAMED_QUERIES["prior_observation_at_reference_date"] = query(
    Criteria(any_of=[Criteria(prior_observation_days=365), Criteria(sex="MALE")]), (AGE10,)
)

NAMED_QUERIES["death"] = query(
    Criteria(
        conditions=[icd10("E11")],
        death=DeathCriterion(window=window("2020-01-01", "2024-12-31")),
        any_of=[Criteria(death=DeathCriterion(exclude=True)), Criteria(sex="MALE")],
    )
)

# Index events and criteria relative to them (the seed protocols' shapes).
U071_ADMISSION: dict[str, Any] = {
    "domain": "CONDITION",
    "codes": [{"vocabulary": "ICD10", "code": "U07.1"}],
    "visit": "INPATIENT",
}
NAMED_QUERIES["index_first_admission_relative"] = CohortQuery.model_validate(
    {
        "reference_date": REFERENCE_DATE,
        "index": {
            "events": [U071_ADMISSION],
            "window": {"start": "2020-03-01"},
            "prior_observation_days": 365,
        },
        "criteria": {
            "age": {"min": 18},
            "relative": [
                {
                    "event": {
                        "domain": "CONDITION",
                        "codes": [{"vocabulary": "ICD10", "code": "E11"}],
                        "excluded": [{"vocabulary": "ICD10", "code": "E11.0", "to": "E11.1"}],
                    },
                    "window": {"start_days": -36525, "end_days": -1},
                },
                {"event": {"domain": "DEATH"}, "window": {"start_days": 0, "end_days": 28}},
            ],
        },
        "tables": [(AGE20,), (YEAR,)],
    }
)
NAMED_QUERIES["index_all_alternatives_counts"] = CohortQuery.model_validate(
    {
        "reference_date": REFERENCE_DATE,
        "index": {
            "events": [
                {"domain": "DRUG", "codes": [{"vocabulary": "ATC", "code": "J07BN01"}]},
                {"domain": "VISIT", "visit": "EMERGENCY", "window": {"start": "2021-01-01"}},
                {"domain": "DEATH"},
            ],
            "occurrence": "ALL",
            "post_observation_days": 21,
        },
        "criteria": {
            "age": {"max": 29},
            "relative": [
                {
                    "event": {
                        "domain": "MEASUREMENT",
                        "codes": [{"vocabulary": "LOINC", "code": "4548-4"}],
                        "value": {"min": 6.5},
                    },
                    "window": {"start_days": -365, "end_days": 0},
                    "at_least": 2,
                    "at_most": 5,
                },
                {
                    "event": {"domain": "VISIT", "visit": "INPATIENT_OR_EMERGENCY"},
                    "window": {"start_days": -30, "end_days": -1},
                    "exclude": True,
                },
            ],
            "any_of": [
                {
                    "relative": [
                        {
                            "event": {
                                "domain": "CONDITION",
                                "codes": [
                                    {"vocabulary": "ICD10", "code": "I40"},
                                    {"vocabulary": "ICD10", "code": "I30"},
                                ],
                            },
                            "window": {"start_days": 0, "end_days": 7},
                        }
                    ]
                },
                {"sex": "MALE", "prior_observation_days": 365},
            ],
        },
        "tables": [(SEX, AGE10)],
    }
)

# An incidence rate: myocarditis in the 21 days after a first mRNA dose, by sex and age band
# (the rate's measures read each person's follow-up: `connectors.compiler.follow_up`).
NAMED_QUERIES["incidence_after_first_dose"] = CohortQuery.model_validate(
    {
        "reference_date": REFERENCE_DATE,
        "index": {
            "events": [{"domain": "DRUG", "codes": [{"vocabulary": "ATC", "code": "J07BN01"}]}],
            "window": {"start": "2021-01-01"},
        },
        "criteria": {"age": {"max": 39}},
        "outcome": {
            "event": {
                "domain": "CONDITION",
                "codes": [
                    {"vocabulary": "ICD10", "code": "I40"},
                    {"vocabulary": "ICD10", "code": "I30"},
                ],
            },
            "window": {"start_days": 0, "end_days": 21},
        },
        "measures": [{"kind": k} for k in ("PERSON_COUNT", *RATES)],
        "tables": [(SEX, AGE10), (YEAR,)],
    }
)

# On the fixture database: metformin's first fill (persons 1-12) followed for death (person 2,
# day 1857) to day 1900, or to the end of observation: events and days every engine must
# compute alike.
NAMED_QUERIES["incidence_of_death_after_metformin"] = CohortQuery.model_validate(
    {
        "reference_date": REFERENCE_DATE,
        "index": {
            "events": [{"domain": "DRUG", "codes": [{"vocabulary": "ATC", "code": "A10BA"}]}]
        },
        "criteria": {},
        "outcome": {"event": {"domain": "DEATH"}, "window": {"start_days": 0, "end_days": 1900}},
        "measures": [{"kind": k} for k in ("PERSON_COUNT", *RATES)],
        "tables": [(SEX,), (YEAR,)],
    }
)

# Survival: death after a first COVID-19 admission (every index shape's cohort carries its
# index date), and a coded outcome by sex with ALL candidates.
NAMED_QUERIES["survival_death_after_admission"] = CohortQuery.model_validate(
    {
        "reference_date": REFERENCE_DATE,
        "index": {"events": [U071_ADMISSION], "window": {"start": "2020-03-01"}},
        "criteria": {"age": {"min": 18}},
        "tables": [(Dimension.FOLLOW_UP,)],
        "survival": {"outcome": {"domain": "DEATH"}, "interval_days": 7, "max_days": 91},
    }
)
NAMED_QUERIES["survival_coded_outcome_by_sex"] = CohortQuery.model_validate(
    {
        "reference_date": REFERENCE_DATE,
        "index": {
            "events": [{"domain": "CONDITION", "codes": [{"vocabulary": "ICD10", "code": "C49"}]}],
            "occurrence": "ALL",
        },
        "criteria": {},
        "tables": [(Dimension.FOLLOW_UP,), (SEX, Dimension.FOLLOW_UP)],
        "survival": {
            "outcome": {
                "domain": "CONDITION",
                "codes": [{"vocabulary": "ICD10", "code": "C78"}],
                "excluded": [{"vocabulary": "ICD10", "code": "C78.0"}],
            },
            "interval_days": 365,
            "max_days": 3650,
        },
    }
)

NAMED_LOOKUPS: dict[str, ConceptSet] = {
    "concepts_icd10_prefix": ConceptSet(Vocabulary.ICD10, "E11", descendants=True),
    "concepts_snomed_descendants": ConceptSet(Vocabulary.SNOMED, "44054006", descendants=True),
    "concepts_exact": ConceptSet(Vocabulary.LOINC, "4548-4", descendants=False),
    "concepts_icd10_range": ConceptSet(Vocabulary.ICD10, "E11.0", descendants=True, to="E11.9"),
    "concepts_atc_range_exact": ConceptSet(Vocabulary.ATC, "A10BA", descendants=False, to="A10BX"),
}


def render(sql: str, params: tuple[object, ...], fingerprint: str | None = None) -> str:
    lines = [f"-- fingerprint: {fingerprint}"] if fingerprint else []
    lines += [f"-- ${n}: {param!s}" for n, param in enumerate(params, 1)]
    return "\n".join([*lines, sql, ""])


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.sql"
    if UPDATE or not path.exists():
        path.write_text(text)
        if not UPDATE:
            pytest.fail(f"golden file {path.name} was missing and has been written")
    assert text == path.read_text(), f"{path.name} differs: TESSERA_UPDATE_GOLDEN=1 to update"


# Every registered dialect, by name: a dialect added to the registry is held to golden files
# of its own at once (`test_every_dialect_has_its_golden_files`).
EVERY_DIALECT = pytest.mark.parametrize("dialect", DIALECTS.values(), ids=list(DIALECTS))
WITH_TEMPORARY_TABLES = [d for d in DIALECTS.values() if d.temporary_table is not None]


def golden_names(dialect: Dialect) -> set[str]:
    """The golden files a dialect must have: every named query, every named concept lookup
    and, with temporary tables, every query's cohort-table statements."""
    names = {
        *(f"{name}.{dialect.name}.sql" for name in NAMED_QUERIES),
        *(f"{name}.{dialect.name}.sql" for name in NAMED_LOOKUPS),
        *(f"{name}.{dialect.name}.sql" for name in NAMED_DESIGN_READS),
    }
    if dialect in WITH_TEMPORARY_TABLES:
        names |= {f"{name}.cohort_table.{dialect.name}.sql" for name in NAMED_QUERIES}
    return names


def test_every_dialect_has_its_golden_files_and_none_is_left_over() -> None:
    present = {path.name for path in GOLDEN.glob("*.sql")}
    for dialect in DIALECTS.values():
        missing = golden_names(dialect) - present
        assert not missing, f"{dialect.name} lacks golden files: {sorted(missing)}"
    expected = set().union(*(golden_names(d) for d in DIALECTS.values()))
    assert present - expected == set(), "golden files of no registered dialect or query"


@EVERY_DIALECT
@pytest.mark.parametrize("name", sorted(NAMED_QUERIES))
def test_compiled_sql_matches_its_golden_file(name: str, dialect: Dialect) -> None:
    compiled = compile_query(NAMED_QUERIES[name], dialect=dialect)
    check_golden(
        f"{name}.{dialect.name}", render(compiled.sql, compiled.params, compiled.fingerprint)
    )


@pytest.mark.parametrize("dialect", WITH_TEMPORARY_TABLES, ids=lambda d: d.name)
@pytest.mark.parametrize("name", sorted(NAMED_QUERIES))
def test_cohort_table_statements_match_their_golden_file(name: str, dialect: Dialect) -> None:
    """The same query over a temporary cohort table (what the DuckDB backend runs): each
    statement binds only the values it uses, renumbered from $1."""
    compiled = compile_query(NAMED_QUERIES[name], dialect=dialect)
    # No delete where the tables leave the listed persons out themselves (Spark).
    delete = compiled.delete_excluded()
    statements = (
        compiled.create_cohort(),
        compiled.cohort_persons(),
        *([] if delete is None else [delete]),
        compiled.cohort_tables(),
    )
    check_golden(
        f"{name}.cohort_table.{dialect.name}",
        "\n".join(render(s.sql, s.params) for s in statements),
    )


def test_a_dialect_without_temporary_tables_gets_no_cohort_table_statements() -> None:
    compiled = compile_query(NAMED_QUERIES["everyone"], dialect=POSTGRES)
    assert compiled.cohort_table is None
    with pytest.raises(ValueError, match="postgres dialect computes no cohort table"):
        compiled.create_cohort()
    # What it runs instead: the population, then the tables without those left out.
    assert compiled.population().params == compiled.params[:-1]
    assert compiled.tables_statement(np.array([3], dtype=np.uint32)).params[-1] == [3]


def test_a_cohort_dated_at_its_index_event_carries_the_date_its_tables_read() -> None:
    compiled = compile_query(
        query(
            Criteria(conditions=[icd10("E11", window=window("2020-01-01", "2022-12-31"))]),
            (YEAR,),
        )
    )
    # Ages are taken at the index event, so the cohort holds each person's index date, and
    # its tables find nobody's first event again: they bind nothing.
    assert "index_event" not in compiled.sql
    assert compiled.cohort_tables().params == ()
    assert "index_event" not in compiled.cohort_tables().sql


def test_renumbered_placeholders_bind_only_the_values_used() -> None:
    compiled = compile_query(
        query(
            Criteria(conditions=[icd10("E11", window=window("2020-01-01", "2022-12-31"))]),
            (YEAR,),
            age_at=AgeAt.REFERENCE_DATE,
        )
    )
    assert compiled.params[0] == REFERENCE_DATE.year
    # The tables read the cohort table, so only the index event's filter binds values.
    tables = compiled.cohort_tables()
    assert tables.params == compiled.params[1:-1]
    assert "$1" in tables.sql
    assert f"${len(tables.params) + 1}" not in tables.sql
    # The persons left out are bound last, and only by the statements that leave them out.
    assert compiled.params[-1] == []
    assert compiled.excluded_param == len(compiled.params) - 1
    assert compiled.create_cohort().params == compiled.params[:-1]
    assert compiled.population().params == compiled.params[:-1]
    assert compiled.cohort_persons().params == ()
    assert compiled.tables_statement(np.array([3], dtype=np.uint32)).params[-1] == [3]
    delete = compiled.delete_excluded()
    assert delete is not None
    assert delete.params == ()


@EVERY_DIALECT
@pytest.mark.parametrize("name", sorted(NAMED_LOOKUPS))
def test_concept_lookup_sql_matches_its_golden_file(name: str, dialect: Dialect) -> None:
    lookup = compile_concept_lookup(NAMED_LOOKUPS[name], dialect=dialect)
    check_golden(f"{name}.{dialect.name}", render(lookup.sql, lookup.params))


# A regression's per-person reads (`connectors.regression`): the cohort's persons with their
# age and sex (`compile_persons`), and a measurement term's value per person in a window
# relative to the index (`compile_measured`), over Coronado's cohort.
REGRESSION_COHORT = CohortQuery.model_validate(
    {
        "reference_date": REFERENCE_DATE,
        "index": {"events": [U071_ADMISSION], "window": {"start": "2020-03-01"}},
        "criteria": {"age": {"min": 18}},
    }
)
NAMED_DESIGN_READS: dict[str, Callable[[Dialect], SqlStatement]] = {
    "regression_persons": lambda d: compile_persons(REGRESSION_COHORT, dialect=d),
    "regression_measured_last": lambda d: compile_measured(
        REGRESSION_COHORT,
        NumericVariable(
            source=VariableSource.MEASUREMENT,
            code=Code(vocabulary=Vocabulary.LOINC, code="4548-4"),
            per_person=PerPerson.LAST,
            lo=4.0,
            hi=14.0,
        ),
        RelativeWindow(start_days=-365, end_days=0),
        dialect=d,
    ),
    "regression_measured_mean": lambda d: compile_measured(
        REGRESSION_COHORT,
        NumericVariable(
            source=VariableSource.MEASUREMENT,
            code=Code(vocabulary=Vocabulary.LOINC, code="39156-5"),
            per_person=PerPerson.MEAN,
        ),
        RelativeWindow(start_days=0, end_days=90),
        dialect=d,
    ),
}


@EVERY_DIALECT
@pytest.mark.parametrize("name", sorted(NAMED_DESIGN_READS))
def test_a_regressions_design_reads_match_their_golden_file(name: str, dialect: Dialect) -> None:
    statement = NAMED_DESIGN_READS[name](dialect)
    check_golden(f"{name}.{dialect.name}", render(statement.sql, statement.params))


def squeeze(sql: str) -> str:
    return re.sub(r"\s+", "", sql)


@EVERY_DIALECT
@pytest.mark.parametrize("name", sorted(NAMED_QUERIES))
def test_compiled_sql_parses_back_with_every_value_a_numbered_parameter(
    name: str, dialect: Dialect
) -> None:
    compiled = compile_query(NAMED_QUERIES[name], dialect=dialect)
    tree = sqlglot.parse_one(compiled.sql, read=dialect.sqlglot)
    assert squeeze(tree.sql(dialect=dialect.sqlglot)) == squeeze(compiled.sql)
    placeholders = [n for n in tree.walk() if isinstance(n, exp.Parameter | exp.Placeholder)]
    assert "%s" not in compiled.sql
    if dialect is TRINO:
        # Positional: each place binds a value of its own, so there are at least as many.
        assert all(node.name in ("", "?") for node in placeholders)
        assert len(placeholders) >= len(compiled.params)
        return
    # `$n`, or Spark's `:pn`.
    numbers = {int(node.name.removeprefix("p")) for node in placeholders if node.name}
    assert numbers == set(range(1, len(compiled.params) + 1))
    assert "?" not in compiled.sql


# -- values never become SQL -------------------------------------------------------------------


def test_a_code_carrying_sql_cannot_even_be_built() -> None:
    with pytest.raises(ValidationError, match="well-formed"):
        icd10("E11'; DROP TABLE person;--")
    with pytest.raises(ValidationError):
        event(Vocabulary.ATC, "A10%")


def test_values_never_appear_in_the_sql_text() -> None:
    q = query(
        Criteria(
            sex="FEMALE",
            age=AgeRange(min=37, max=83),
            conditions=[icd10("Q87.4", window=window("2013-07-19", "2019-11-23"))],
            drugs=[event(Vocabulary.RXNORM, "314231")],
            measurements=[hba1c(value=ValueRange(min=123.456, max=654.321))],
        ),
        (AGE10,),
        reference_date=dt.date(2031, 3, 14),
    )
    for dialect in DIALECTS.values():
        sql = compile_query(q, dialect=dialect).sql
        for value in ("Q87", "314231", "4548", "2013", "2019", "2031", "123.456", "654.321"):
            assert value not in sql
        for value in ("37", "83", "1948", "1994", "8532"):
            assert value not in sql.replace("$", " ")


def test_a_range_binds_its_codes_never_writing_them() -> None:
    q = query(Criteria(conditions=[icd10("Q87.4", to="Q87.8")]))
    for dialect in DIALECTS.values():
        assert "Q87" not in compile_query(q, dialect=dialect).sql
        lookup = compile_concept_lookup(ConceptSet.of(q.criteria.conditions[0]), dialect=dialect)
        assert "Q87" not in lookup.sql
        assert ["Q87.4", "Q87.5", "Q87.6", "Q87.7", "Q87.8"] in lookup.params
        assert ["Q874", "Q875", "Q876", "Q877", "Q878"] in lookup.params


def test_concept_lookup_binds_the_code_and_escapes_like_wildcards() -> None:
    lookup = compile_concept_lookup(ConceptSet(Vocabulary.ICD10, "E11.9", True))
    assert "E11" not in lookup.sql
    assert lookup.params == (
        ["ICD10", "ICD10CM", "ICD10GM", "CIM10"],
        "E11.9",
        "E119",
        "E11.9%",
        "E119%",
    )
    assert like_prefix("A_1%\\") == "A\\_1\\%\\\\%"


def test_fingerprint_depends_on_shape_not_values() -> None:
    a = compile_query(query(Criteria(sex="FEMALE", conditions=[icd10("E11")]), (SEX,)))
    b = compile_query(
        query(
            Criteria(sex="MALE", conditions=[icd10("I10", descendants=False)]),
            (SEX,),
            reference_date=dt.date(2020, 1, 1),
        )
    )
    c = compile_query(query(Criteria(sex="FEMALE", drugs=[icd10("E11")]), (SEX,)))
    assert a.fingerprint == b.fingerprint
    assert a.params != b.params
    assert a.fingerprint != c.fingerprint


def test_a_node_never_groups_by_jurisdiction() -> None:
    with pytest.raises(BadRequest, match="JURISDICTION"):
        compile_query(query(None, (Dimension.JURISDICTION, SEX)))


def test_an_unknown_dialect_is_refused_naming_those_there_are() -> None:
    with pytest.raises(ValueError, match="unsupported dialect 'mysql'; expected one of duckdb"):
        dialect_named("mysql")
    assert dialect_named("postgres") is DIALECTS["postgres"]


def test_a_dialect_writing_its_placeholders_otherwise_gets_them_in_its_own_text() -> None:
    """The compilers number their values; a dialect writes each number its own way."""
    colon = dataclasses.replace(DUCKDB, placeholder=lambda n: exp.var(f":p{n}"))
    compiled = compile_query(NAMED_QUERIES["window_and_value_range"], dialect=colon)
    plain = compile_query(NAMED_QUERIES["window_and_value_range"], dialect=DUCKDB)
    assert "$" not in compiled.sql
    assert compiled.sql == re.sub(r"\$(\d+)", r":p\1", plain.sql)
    assert compiled.params == plain.params


# -- exact counts on the fixture database ------------------------------------------------------


def execute(con: duckdb.DuckDBPyConnection, compiled: CompiledQuery) -> dict[Breakdown, Any]:
    cursor = con.cursor()
    ids = {
        cs: [row[0] for row in cursor.execute(lookup.sql, list(lookup.params)).fetchall()]
        for cs in compiled.concept_sets
        for lookup in [compile_concept_lookup(cs)]
    }
    rows = cursor.execute(compiled.sql, list(compiled.bind(ids).params)).fetchall()
    return {
        by: {c.key: c.values[MeasureKind.PERSON_COUNT] for c in cells}
        for by, cells in compiled.tabulate(rows)
    }


def total(con: duckdb.DuckDBPyConnection, criteria: Criteria, **kwargs: Any) -> int:
    count: int = execute(con, compile_query(query(criteria, **kwargs)))[()][()]
    return count


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        pytest.param(Criteria(), 47, id="everyone-born-by-2024-less-opted-out"),
        pytest.param(Criteria(sex="FEMALE"), 23, id="female"),
        pytest.param(Criteria(sex="MALE"), 23, id="male"),
        pytest.param(Criteria(age=AgeRange(min=40, max=65)), 20, id="age-40-65"),
        pytest.param(Criteria(age=AgeRange(min=70)), 8, id="age-70-plus"),
        pytest.param(Criteria(age=AgeRange(max=20)), 10, id="age-up-to-20"),
        pytest.param(Criteria(conditions=[icd10("E11")]), 19, id="icd10-prefix"),
        pytest.param(Criteria(conditions=[icd10("E11", descendants=False)]), 5, id="icd10-exact"),
        pytest.param(Criteria(conditions=[icd10("E11.9")]), 9, id="icd10-leaf"),
        pytest.param(
            Criteria(conditions=[event(Vocabulary.SNOMED, "44054006")]), 14, id="snomed-subtree"
        ),
        pytest.param(
            Criteria(conditions=[event(Vocabulary.SNOMED, "44054006", descendants=False)]),
            9,
            id="snomed-exact",
        ),
        pytest.param(Criteria(drugs=[event(Vocabulary.ATC, "A10")]), 12, id="atc-prefix+ancestor"),
        pytest.param(Criteria(drugs=[event(Vocabulary.ATC, "A10BA")]), 11, id="atc-ancestor"),
        pytest.param(
            Criteria(drugs=[event(Vocabulary.ATC, "A10BA02", descendants=False)]),
            0,
            id="atc-class-itself-has-no-exposures",
        ),
        pytest.param(Criteria(drugs=[event(Vocabulary.RXNORM, "6809")]), 11, id="rxnorm-subtree"),
        pytest.param(Criteria(measurements=[hba1c()]), 20, id="measurement-any-value"),
        pytest.param(
            Criteria(measurements=[hba1c(value=ValueRange(min=7.0, max=8.0))]),
            11,
            id="value-range-inclusive",
        ),
        pytest.param(Criteria(measurements=[hba1c(value=ValueRange(min=7.5))]), 6, id="value-min"),
        pytest.param(
            Criteria(conditions=[icd10("E11", window=window("2021-01-01", "2022-12-31"))]),
            5,
            id="window",
        ),
        pytest.param(
            Criteria(conditions=[icd10("E11", window=window(end="2018-12-31"))]),
            1,
            id="window-end-only",
        ),
        pytest.param(
            Criteria(conditions=[icd10("E11", window=window(start="2023-01-15"))]),
            5,
            id="window-start-inclusive",
        ),
        pytest.param(
            Criteria(conditions=[icd10("E11"), icd10("I10")]), 4, id="conditions-are-anded"
        ),
        pytest.param(
            Criteria(
                any_of=[Criteria(conditions=[icd10("E10")]), Criteria(conditions=[icd10("I10")])]
            ),
            18,
            id="any-of",
        ),
        pytest.param(
            Criteria(
                sex="FEMALE",
                any_of=[
                    Criteria(conditions=[icd10("E10")]),
                    Criteria(
                        any_of=[
                            Criteria(drugs=[event(Vocabulary.RXNORM, "29046")]),
                            Criteria(measurements=[hba1c(value=ValueRange(min=7.9))]),
                        ]
                    ),
                ],
            ),
            6,
            id="nested-any-of",
        ),
        pytest.param(
            Criteria(any_of=[Criteria(), Criteria(conditions=[icd10("E10")])]),
            47,
            id="any-of-with-an-empty-group",
        ),
        pytest.param(Criteria(conditions=[icd10("C49")]), 0, id="a-code-the-vocabulary-lacks"),
        pytest.param(Criteria(conditions=[icd10("E11", exclude=True)]), 28, id="exclusion-alone"),
        pytest.param(Criteria(conditions=[icd10("E11", at_least=2)]), 1, id="at-least-two"),
        pytest.param(
            Criteria(conditions=[icd10("E11", at_least=2, exclude=True)]),
            46,
            id="fewer-than-two",
        ),
        pytest.param(
            Criteria(conditions=[icd10("I10", exclude=True), icd10("E11")]),
            15,
            id="exclusion-before-the-index-event",
        ),
        pytest.param(
            Criteria(conditions=[icd10("E11")], drugs=[event(Vocabulary.ATC, "A10", exclude=True)]),
            8,
            id="exclusion-of-a-drug",
        ),
        pytest.param(
            Criteria(conditions=[icd10("E11")], measurements=[hba1c(exclude=True)]),
            0,
            id="exclusion-of-everyone",
        ),
        pytest.param(
            Criteria(conditions=[icd10("E11", window=window(start="2019-01-01"), at_least=2)]),
            0,
            id="at-least-counts-only-events-in-the-window",
        ),
        pytest.param(
            Criteria(
                any_of=[
                    Criteria(conditions=[icd10("E10")]),
                    Criteria(conditions=[icd10("I10", exclude=True)]),
                ]
            ),
            34,
            id="exclusion-in-any-of",
        ),
        pytest.param(Criteria(prior_observation_days=0), 46, id="observed-on-the-reference-date"),
        pytest.param(
            Criteria(prior_observation_days=2555), 23, id="observed-seven-years-before-it"
        ),
        pytest.param(Criteria(prior_observation_days=3653), 1, id="observed-ten-years-before-it"),
        pytest.param(
            Criteria(prior_observation_days=1000, conditions=[icd10("E11")]),
            14,
            id="observed-before-the-index-event",
        ),
        pytest.param(Criteria(death=DeathCriterion()), 5, id="died"),
        pytest.param(
            Criteria(death=DeathCriterion(window=window(start="2024-01-01"))),
            1,
            id="died-in-the-window",
        ),
        pytest.param(Criteria(death=DeathCriterion(exclude=True)), 42, id="alive"),
        pytest.param(
            Criteria(conditions=[icd10("E11")], death=DeathCriterion()), 1, id="diabetic-and-died"
        ),
        pytest.param(Criteria(conditions=[icd10("E10", to="E14")]), 24, id="icd10-range"),
        pytest.param(
            Criteria(conditions=[icd10("E10", to="E14", descendants=False)]),
            10,
            id="icd10-range-exact",
        ),
        pytest.param(
            Criteria(conditions=[icd10("e11.0", to="e119")]), 14, id="icd10-subcode-range"
        ),
        pytest.param(
            Criteria(conditions=[icd10("E11.0", to="E11.9", descendants=False)]),
            9,
            id="icd10-subcode-range-exact",
        ),
        pytest.param(
            Criteria(conditions=[icd10("E11.00", to="E11.99", descendants=False)]),
            5,
            id="icd10-range-of-longer-subcodes",
        ),
        pytest.param(Criteria(conditions=[icd10("I00", to="I09")]), 0, id="range-short-of-i10"),
        pytest.param(
            Criteria(drugs=[event(Vocabulary.ATC, "A10BA", to="A10BB")]),
            12,
            id="atc-range-prefix+ancestor",
        ),
        pytest.param(
            Criteria(drugs=[event(Vocabulary.ATC, "A10BB", to="A10BX")]), 1, id="atc-range-tail"
        ),
    ],
)
def test_total_counts(
    omop_con: duckdb.DuckDBPyConnection, criteria: Criteria, expected: int
) -> None:
    assert total(omop_con, criteria) == expected


def test_persons_born_after_the_reference_year_are_not_counted(
    omop_con: duckdb.DuckDBPyConnection,
) -> None:
    assert total(omop_con, Criteria(), reference_date=dt.date(1990, 1, 1)) == 28


def test_opted_out_persons_are_never_counted(build_omop_db: BuildDatabase, tmp_path: Path) -> None:
    with duckdb.connect(str(build_omop_db(tmp_path / "all.duckdb", opted_out=()))) as con:
        assert total(con, Criteria()) == 49
        assert total(con, Criteria(conditions=[icd10("E11")])) == 20


def breakdown(con: duckdb.DuckDBPyConnection, criteria: Criteria, table: Breakdown) -> Any:
    return execute(con, compile_query(query(criteria, table)))[table]


def test_sex_breakdown(omop_con: duckdb.DuckDBPyConnection) -> None:
    assert breakdown(omop_con, Criteria(), (SEX,)) == {
        ("FEMALE",): 23,
        ("MALE",): 23,
        ("UNKNOWN",): 1,
    }


@pytest.mark.parametrize(
    ("dimension", "expected"),
    [
        (AGE5, {"20-24": 10, "30-34": 9, "40-44": 1, "45-49": 10, "60-64": 9, "70-74": 8}),
        (AGE10, {"20-29": 10, "30-39": 9, "40-49": 11, "60-69": 9, "70-79": 8}),
        (AGE20, {"20-39": 19, "40-59": 11, "60-79": 17}),
    ],
)
def test_age_band_breakdowns(
    omop_con: duckdb.DuckDBPyConnection, dimension: Dimension, expected: dict[str, int]
) -> None:
    result = breakdown(omop_con, Criteria(), (dimension,))
    assert result == {(band,): n for band, n in expected.items()}


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        pytest.param(
            Criteria(), {"2010": 1, "2015": 22, "2018": 23, "UNKNOWN": 1}, id="first-observation"
        ),
        pytest.param(
            Criteria(conditions=[icd10("E11")]),
            {"2016": 1, "2019": 8, "2021": 5, "2023": 5},
            id="first-index-event",
        ),
        pytest.param(
            Criteria(conditions=[icd10("E11", window=window(start="2018-01-01"))]),
            {"2019": 9, "2021": 5, "2023": 5},
            id="first-index-event-in-window",
        ),
        pytest.param(
            Criteria(drugs=[event(Vocabulary.ATC, "A10")], sex="FEMALE"),
            {"2019": 4, "2021": 1},
            id="drug-index-event",
        ),
        pytest.param(
            Criteria(measurements=[hba1c(value=ValueRange(min=7.5))]),
            {"2023": 6},
            id="measurement-index-event",
        ),
    ],
)
def test_calendar_year_breakdown(
    omop_con: duckdb.DuckDBPyConnection, criteria: Criteria, expected: dict[str, int]
) -> None:
    result = breakdown(omop_con, criteria, (YEAR,))
    assert result == {(year,): n for year, n in expected.items()}


def test_all_tables_come_from_one_statement(omop_con: duckdb.DuckDBPyConnection) -> None:
    compiled = compile_query(
        query(
            Criteria(conditions=[icd10("E11")]),
            (SEX,),
            (SEX, AGE10),
            (AGE10, SEX),
            (YEAR,),
            age_at=AgeAt.REFERENCE_DATE,
        )
    )
    assert compiled.tables == ((), (SEX,), (SEX, AGE10), (AGE10, SEX), (YEAR,))
    result = execute(omop_con, compiled)
    assert result[()] == {(): 19}
    assert result[(SEX,)] == {("FEMALE",): 9, ("MALE",): 10}
    assert result[(SEX, AGE10)] == {
        ("FEMALE", "40-49"): 5,
        ("FEMALE", "60-69"): 4,
        ("MALE", "40-49"): 5,
        ("MALE", "60-69"): 5,
    }
    # The same grouping set in another order: the same cells, keys in the table's order.
    assert result[(AGE10, SEX)] == {(a, s): n for (s, a), n in result[(SEX, AGE10)].items()}
    assert sum(result[(YEAR,)].values()) == 19


def test_an_empty_cohort_still_has_a_total(omop_con: duckdb.DuckDBPyConnection) -> None:
    result = execute(omop_con, compile_query(query(Criteria(conditions=[icd10("C49")]), (SEX,))))
    assert result == {(): {(): 0}, (SEX,): {}}


# -- when ages are taken -----------------------------------------------------------------------


def ages_at_index_event(
    con: duckdb.DuckDBPyConnection, low: int, high: int, window_start: str | None = None
) -> dict[tuple[str], int]:
    """Persons with an E11.x diagnosis by age band of 10 at their first one (in the window),
    aged `low`-`high` then: computed directly, independently of the compiler."""
    rows = con.execute(
        """
        WITH first AS (
            SELECT o.person_id, min(o.condition_start_date) AS first_date
            FROM condition_occurrence o
            JOIN concept c ON c.concept_id = o.condition_source_concept_id
            WHERE c.vocabulary_id = 'ICD10' AND starts_with(c.concept_code, 'E11')
              AND o.condition_start_date >= coalesce(CAST(? AS DATE), DATE '1900-01-01')
            GROUP BY o.person_id
        ), aged AS (
            SELECT year(f.first_date) - p.year_of_birth AS age
            FROM first f JOIN person p ON p.person_id = f.person_id
            WHERE p.year_of_birth <= ?
              AND p.person_id NOT IN (SELECT person_id FROM tessera_optout)
              AND p.person_id IN (SELECT person_id FROM tessera_person)
        )
        SELECT age - age % 10, count(*) FROM aged WHERE age BETWEEN ? AND ? GROUP BY 1
        """,
        [window_start, REFERENCE_DATE.year, low, high],
    ).fetchall()
    return {(f"{band}-{band + 9}",): n for band, n in rows}


@pytest.mark.parametrize("window_start", [None, "2020-01-01"])
def test_ages_default_to_the_index_event_when_the_criteria_name_one(
    omop_con: duckdb.DuckDBPyConnection, window_start: str | None
) -> None:
    e11 = icd10("E11", window=window(window_start) if window_start else None)
    criteria = Criteria(conditions=[e11], age=AgeRange(min=30, max=69))
    compiled = compile_query(query(criteria, (AGE10,)))
    assert compiled == compile_query(query(criteria, (AGE10,), age_at=AgeAt.INDEX_EVENT))
    expected = ages_at_index_event(omop_con, 30, 69, window_start)
    assert expected
    assert execute(omop_con, compiled)[(AGE10,)] == expected


def test_ages_at_the_reference_date_stay_available(omop_con: duckdb.DuckDBPyConnection) -> None:
    criteria = Criteria(conditions=[icd10("E11")])
    at_reference = execute(
        omop_con, compile_query(query(criteria, (AGE10,), age_at=AgeAt.REFERENCE_DATE))
    )
    at_index = execute(omop_con, compile_query(query(criteria, (AGE10,))))
    # The same persons, in other bands: their diagnoses lie years before the reference date.
    assert at_reference[()] == at_index[()]
    assert at_reference[(AGE10,)] != at_index[(AGE10,)]
    assert at_index[(AGE10,)] == ages_at_index_event(omop_con, 0, 130)


def test_ages_at_the_index_event_need_one() -> None:
    with pytest.raises(ValidationError, match="index event"):
        query(Criteria(sex="FEMALE"), age_at=AgeAt.INDEX_EVENT)
    assert query(Criteria(sex="FEMALE")).age_basis is AgeAt.REFERENCE_DATE
    assert query(Criteria(conditions=[icd10("E11")])).age_basis is AgeAt.INDEX_EVENT


def test_rows_are_read_by_column_name_not_position() -> None:
    query = CohortQuery(criteria=Criteria(), reference_date=REFERENCE_DATE, tables=[(SEX,)])
    compiled = compile_query(query)
    assert compiled.columns == ("grouping_id", "sex", "person_count")
    rows = [(1, None, 120), (0, "MALE", 8), (0, "FEMALE", 112)]
    expected = {(): {(): 120}, (SEX,): {("FEMALE",): 112, ("MALE",): 8}}
    tables = compiled.tabulate(rows)
    assert {
        by: {c.key: c.values[MeasureKind.PERSON_COUNT] for c in cells} for by, cells in tables
    } == expected
    # The same result with its columns in another order reads the same.
    shuffled = dataclasses.replace(compiled, columns=("person_count", "grouping_id", "sex"))
    moved = [(n, g, s) for g, s, n in rows]
    assert shuffled.tabulate(moved) == tables
    # Without a row for the total, it has one cell, each measure at its value for nobody.
    assert compiled.tabulate([]) == [
        ((), [TabulatedCell((), {MeasureKind.PERSON_COUNT: 0})]),
        ((SEX,), []),
    ]
