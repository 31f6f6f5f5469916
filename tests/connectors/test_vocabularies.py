"""Codes against a node's vocabulary: national ICD-10 modifications found through `ICD10`,
codes normalised, and an unknown code told apart from a known code nobody has.

The counts are exact (no noise: the compiler and the DuckDB backend), checked against the
truth computed directly from the synthetic database."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path

import duckdb
import pytest

from connectors.backends.duckdb import DuckDBBackend
from connectors.compiler import ConceptResolver, ConceptSet, compile_query
from schema.codes import Jurisdiction, MeasureKind, Vocabulary, normalise_code
from schema.query import CohortQuery, Criteria, DateWindow, EventCriterion
from synth import generate
from synth import vocabulary as v

PERSONS = 4_000
REFERENCE_DATE = dt.date(2026, 1, 1)


@pytest.fixture(scope="module", params=["ICD10", "ICD10GM", "CIM10"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    vocabulary: str = request.param
    path = tmp_path_factory.mktemp(f"vocab-{vocabulary}") / "de.duckdb"
    generate(
        path,
        jurisdiction=Jurisdiction.DE,
        persons=PERSONS,
        seed=5,
        state=path.with_suffix(".state"),
        icd10_vocabulary=vocabulary,
    )
    return path


@pytest.fixture
async def backend(database: Path) -> AsyncIterator[DuckDBBackend]:
    backend = DuckDBBackend(database, threads=1)
    yield backend
    await backend.close()


def recorded_vocabulary(database: Path) -> str:
    with duckdb.connect(str(database), read_only=True) as con:
        rows = con.execute(
            "SELECT DISTINCT c.vocabulary_id FROM condition_occurrence o "
            "JOIN concept c ON c.concept_id = o.condition_source_concept_id"
        ).fetchall()
    assert len(rows) == 1
    return str(rows[0][0])


def truth(database: Path, vocabulary: str, prefix: str) -> int:
    """Persons (not opted out) with a diagnosis recorded under `vocabulary` starting with
    `prefix`: independent of the compiler's code lookup."""
    return truth_matching(database, vocabulary, "^" + re.escape(prefix))


def truth_matching(database: Path, vocabulary: str, pattern: str) -> int:
    """Persons (not opted out) with a diagnosis recorded under `vocabulary` whose code matches
    the regular expression `pattern`."""
    with duckdb.connect(str(database), read_only=True) as con:
        row = con.execute(
            """
            SELECT count(DISTINCT o.person_id)
            FROM condition_occurrence o
            JOIN concept c ON c.concept_id = o.condition_source_concept_id
            JOIN person p ON p.person_id = o.person_id
            WHERE c.vocabulary_id = ? AND regexp_matches(c.concept_code, ?)
              AND p.year_of_birth <= ?
              AND o.person_id NOT IN (SELECT person_id FROM tessera_optout)
            """,
            [vocabulary, pattern, REFERENCE_DATE.year],
        ).fetchone()
    assert row is not None
    return int(row[0])


async def count(backend: DuckDBBackend, *codes: EventCriterion) -> tuple[int, tuple[str, ...]]:
    compiled = compile_query(
        CohortQuery(criteria=Criteria(conditions=list(codes)), reference_date=REFERENCE_DATE),
        dialect=backend.dialect,
    )
    resolution = await ConceptResolver(backend.execute, dialect=backend.dialect).resolution(
        compiled
    )
    assert resolution.unknown == ()
    rows = await backend.execute(resolution.query)
    ((_, cells),) = resolution.query.tabulate(rows)
    return cells[0].values[MeasureKind.PERSON_COUNT], resolution.vocabularies


@pytest.mark.parametrize("code", ["E11", "I21", "F84.0"])
async def test_an_icd10_question_counts_the_national_modification_exactly(
    backend: DuckDBBackend, database: Path, code: str
) -> None:
    vocabulary = recorded_vocabulary(database)
    expected = truth(database, vocabulary, code)
    assert expected > 0
    persons, used = await count(backend, EventCriterion(vocabulary=Vocabulary.ICD10, code=code))
    assert persons == expected
    assert used == (vocabulary,)


async def test_a_code_is_the_same_code_however_it_is_written(
    backend: DuckDBBackend, database: Path
) -> None:
    vocabulary = recorded_vocabulary(database)
    expected = truth(database, vocabulary, "E11.9")
    assert expected > 0
    for written in ("E11.9", "e11.9", "E119", " e119 "):
        criterion = EventCriterion(vocabulary=Vocabulary.ICD10, code=written)
        assert criterion.code == "E11.9"
        assert (await count(backend, criterion))[0] == expected


async def test_an_icd10_range_counts_every_code_of_it_in_the_national_modification(
    backend: DuckDBBackend, database: Path
) -> None:
    vocabulary = recorded_vocabulary(database)
    # Intellectual disability, F70-F79 (the synthetic data hold F70, F71, F72, F73 and F79).
    expected = truth_matching(database, vocabulary, "^F7[0-9]")
    assert expected > truth_matching(database, vocabulary, "^F7[0129]") > 0
    in_range = EventCriterion(vocabulary=Vocabulary.ICD10, code="F70", to="F79")
    persons, used = await count(backend, in_range)
    assert (persons, used) == (expected, (vocabulary,))
    # A range of subcodes: F84.0-F84.1 (childhood and atypical autism).
    expected = truth_matching(database, vocabulary, r"^F84\.?[01]")
    assert expected > 0
    subcodes = EventCriterion(vocabulary=Vocabulary.ICD10, code="F84.0", to="F84.1")
    assert (await count(backend, subcodes))[0] == expected


async def test_the_snomed_standard_concept_finds_the_same_persons(
    backend: DuckDBBackend, database: Path
) -> None:
    # Every synthetic E11.x maps to type 2 diabetes or a descendant: through the standard
    # concept, the same persons as through the ICD-10 source concepts.
    by_icd10, _ = await count(backend, EventCriterion(vocabulary=Vocabulary.ICD10, code="E11"))
    by_snomed, used = await count(
        backend, EventCriterion(vocabulary=Vocabulary.SNOMED, code="44054006")
    )
    assert by_snomed == by_icd10
    assert used == ("SNOMED",)


async def test_an_unknown_code_is_unknown_and_a_known_code_nobody_has_is_a_count(
    backend: DuckDBBackend,
) -> None:
    resolver = ConceptResolver(backend.execute, dialect=backend.dialect)
    for vocabulary, code in [(Vocabulary.ICD10, "Z99.99"), (Vocabulary.ATC, "C10")]:
        resolved = await resolver.resolve(ConceptSet(vocabulary, code, True))
        assert not resolved.known
        assert resolved.vocabularies == ()
    # Known to the vocabulary, nobody in the window: a count of zero, not "unknown".
    nobody = EventCriterion(
        vocabulary=Vocabulary.ATC,
        code="J07BN01",
        window=DateWindow(start=dt.date(1990, 1, 1), end=dt.date(1990, 12, 31)),
    )
    persons, used = await count(backend, nobody)
    assert (persons, used) == (0, ("ATC",))


def test_national_concepts_have_ids_of_their_own() -> None:
    who = v.icd10_ids("ICD10")
    for national in ("ICD10GM", "CIM10"):
        ids = v.icd10_ids(national)
        assert set(ids) == set(who)
        assert not set(ids.values()) & set(who.values())
        assert min(ids.values()) >= v.LOCAL_ID_BASE
    with pytest.raises(ValueError, match="ICD-10 vocabulary"):
        v.icd10_ids("ICD9CM")


@pytest.mark.parametrize(
    ("vocabulary", "written", "normalised"),
    [
        (Vocabulary.ICD10, "e11", "E11"),
        (Vocabulary.ICD10, "E119", "E11.9"),
        (Vocabulary.ICD10, "e11.9", "E11.9"),
        (Vocabulary.ICD10, " E11.90 ", "E11.90"),
        (Vocabulary.ATC, "c10aa05", "C10AA05"),
        (Vocabulary.LOINC, " 4548-4", "4548-4"),
    ],
)
def test_codes_are_normalised(vocabulary: Vocabulary, written: str, normalised: str) -> None:
    assert normalise_code(vocabulary, written) == normalised
    assert EventCriterion(vocabulary=vocabulary, code=written).code == normalised
