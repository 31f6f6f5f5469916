"""The truth: each cohort's persons read straight from a node's DuckDB file with SQL of our own,
independent of the connector's compiler, and tabulated in Python.

What a cohort means here, as the README and the query model document it: persons born by the
reference year and not in the opt-out register, with at least one matching event of every
criterion (a condition, drug or measurement whose concept or source concept is of the
criterion's vocabulary, with its code or, for ICD10 and ATC, a code starting with it, starting
in the window, a measurement's value at least the minimum); of the given sex and age (the
reference year minus the year of birth). A person's CALENDAR_YEAR is the year of their first
matching index event (the cohort's first condition) within its window.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import duckdb

from bench.cohorts import (
    MAX_AGE,
    MIN_AGE,
    REFERENCE_DATE,
    SEX,
    UNKNOWN,
    YEAR,
    Breakdown,
    Cohort,
    Event,
    age_band,
)
from schema.codes import Dimension
from schema.dimensions import age_band_width

_SEX_OF_CONCEPT: Final = {8532: "FEMALE", 8507: "MALE"}
_CONCEPT_OF_SEX: Final = {sex: concept for concept, sex in _SEX_OF_CONCEPT.items()}
# (table, concept column, source concept column, date column, value column) per kind.
_TABLES: Final = {
    "condition": (
        "condition_occurrence",
        "condition_concept_id",
        "condition_source_concept_id",
        "condition_start_date",
        None,
    ),
    "drug": (
        "drug_exposure",
        "drug_concept_id",
        "drug_source_concept_id",
        "drug_exposure_start_date",
        None,
    ),
    "measurement": (
        "measurement",
        "measurement_concept_id",
        "measurement_source_concept_id",
        "measurement_date",
        "value_as_number",
    ),
}
_PREFIX_VOCABULARIES: Final = frozenset({"ICD10", "ATC"})


@dataclass(frozen=True, slots=True)
class Person:
    """A cohort member as the tables see them."""

    person_id: int
    sex: str
    age: int
    year: str  # of the first index event, or UNKNOWN

    def key(self, table: Breakdown) -> tuple[str, ...] | None:
        """The person's cell in `table` (dimensions in its order); None when outside the
        table's domain (an age beyond the query model's)."""
        values = []
        for dimension in table:
            if dimension is SEX:
                values.append(self.sex)
            elif dimension is YEAR:
                values.append(self.year)
            elif age_band_width(dimension) is not None:
                if not MIN_AGE <= self.age <= MAX_AGE:
                    return None
                values.append(age_band(self.age, dimension))
            else:
                raise ValueError(f"a node never tabulates {dimension.value}")
        return tuple(values)


def _matches(event: Event, params: list[object]) -> str:
    """SQL listing (person_id, day) of the events matching `event`; its values in `params`."""
    table, concept, source, day, value = _TABLES[event.kind]
    code = (
        "starts_with(c.concept_code, ?)"
        if event.vocabulary in _PREFIX_VOCABULARIES
        else "c.concept_code = ?"
    )
    where = ["c.vocabulary_id = ?", code]
    params += [event.vocabulary, event.code]
    if event.start is not None:
        where.append(f"e.{day} >= ?")
        params.append(event.start)
    if event.end is not None:
        where.append(f"e.{day} <= ?")
        params.append(event.end)
    if event.min_value is not None:
        assert value is not None
        where.append(f"e.{value} >= ?")
        params.append(event.min_value)
    return (
        # Names from _TABLES only; every value is a bound parameter.
        f"SELECT e.person_id, e.{day} AS day FROM {table} e "  # noqa: S608
        f"JOIN concept c ON c.concept_id IN (e.{concept}, e.{source}) "
        f"WHERE {' AND '.join(where)}"
    )


def persons(database: Path, cohort: Cohort) -> list[Person]:
    """The cohort's persons in one node's database (opened read-only)."""
    year = REFERENCE_DATE.year
    params: list[object] = []
    matches = [f"m{i} AS ({_matches(e, params)})" for i, e in enumerate(cohort.events)]
    where = ["p.year_of_birth <= ?", "p.person_id NOT IN (SELECT person_id FROM tessera_optout)"]
    params.append(year)
    if cohort.sex is not None:
        where.append("p.gender_concept_id = ?")
        params.append(_CONCEPT_OF_SEX[cohort.sex])
    if cohort.age_max is not None:
        where.append("p.year_of_birth >= ?")
        params.append(year - cohort.age_max)
    if cohort.age_min is not None:
        where.append("p.year_of_birth <= ?")
        params.append(year - cohort.age_min)
    for i in range(len(matches)):
        where.append(f"p.person_id IN (SELECT person_id FROM m{i})")  # noqa: S608
    index = cohort.index_event
    # Dated by the index event's first match, else by the first observation period.
    dated = "SELECT person_id, min(observation_period_start_date) AS first FROM observation_period"
    if index is not None:
        dated = f"SELECT person_id, min(day) AS first FROM m{cohort.events.index(index)}"  # noqa: S608
    # Fixed SQL of this module; every value is a bound parameter.
    sql = (
        (f"WITH {', '.join(matches)} " if matches else "")
        + "SELECT p.person_id, p.gender_concept_id, p.year_of_birth, year(d.first) "
        + f"FROM person p LEFT JOIN ({dated} GROUP BY 1) d ON d.person_id = p.person_id "
        + f"WHERE {' AND '.join(where)}"
    )
    with duckdb.connect(str(database), read_only=True) as connection:
        rows = connection.execute(sql, params).fetchall()
    return [
        Person(
            person_id=int(pid),
            sex=_SEX_OF_CONCEPT.get(gender, UNKNOWN),
            age=year - int(born),
            year=UNKNOWN if first is None else str(first),
        )
        for pid, gender, born, first in rows
    ]


def tabulate(members: Iterable[Person], table: Breakdown) -> Counter[tuple[str, ...]]:
    """Distinct persons per cell of `table` (the total: `()`)."""
    counts: Counter[tuple[str, ...]] = Counter()
    for person in members:
        key = person.key(table)
        if key is not None:
            counts[key] += 1
    return counts


def with_jurisdiction(by: Breakdown, key: Sequence[str], jurisdiction: str) -> tuple[str, ...]:
    """A node's cell key as the gateway shows it in `by`: the jurisdiction in its place."""
    values = iter(key)
    return tuple(jurisdiction if d is Dimension.JURISDICTION else next(values) for d in by)
