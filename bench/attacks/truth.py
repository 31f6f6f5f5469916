"""What the simulator knows and the attacker does not: each node's true counts, read straight
from the node's OMOP database with SQL of its own and evaluated in NumPy, independently of the
connector's compiler (so a bug there cannot hide behind a truth computed the same way).

A node whose CDM is in PostgreSQL was copied from its DuckDB database (`tessera connector
copy-to-postgres`, again after every refresh): the truth is read from that database.

A person counts when born by the reference year and not in the node's opt-out register, as
the public query model says. ICD-10 criteria match a condition whose source concept (or, for
an unmapped record, its concept) is an ICD-10 concept with that code or a subcode of it.
`atLeast: N` counts condition records (a record matching by both its concepts counts once); a
death criterion matches a record of the `death` table dated in its window. An index event is
each person's first record of its code (persons without one are in no cohort that names it);
a relative criterion counts records of its code dated in its window of days around that date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import duckdb
import numpy as np
from numpy.typing import NDArray

from bench.attacks.where import REFERENCE_YEAR, Death, Event, Index, Relative, SexName, Where

FEMALE_CONCEPT: Final = 8532
MALE_CONCEPT: Final = 8507
_EPOCH: Final = dt.date(1970, 1, 1)
# The index day of a person without the index event: after any day a record can have.
NO_INDEX: Final = np.iinfo(np.int64).max // 2

Mask = NDArray[np.bool_]
Ints = NDArray[np.int64]

_PERSONS: Final = "SELECT person_id, gender_concept_id, year_of_birth FROM person ORDER BY 1"
_OPTOUTS: Final = "SELECT person_id FROM tessera_optout"
_DEATHS: Final = "SELECT DISTINCT person_id, death_date - DATE '1970-01-01' AS day FROM death"
# Both the source concept and the concept of a record can be ICD-10 (unmapped records).
_CONDITIONS: Final = """
SELECT DISTINCT occurrence, person_id, concept_code, day FROM (
    SELECT co.condition_occurrence_id AS occurrence, co.person_id, c.concept_code,
        co.condition_start_date - DATE '1970-01-01' AS day
    FROM condition_occurrence co JOIN concept c ON c.concept_id = co.condition_source_concept_id
    WHERE c.vocabulary_id = 'ICD10'
    UNION ALL
    SELECT co.condition_occurrence_id AS occurrence, co.person_id, c.concept_code,
        co.condition_start_date - DATE '1970-01-01' AS day
    FROM condition_occurrence co JOIN concept c ON c.concept_id = co.condition_concept_id
    WHERE c.vocabulary_id = 'ICD10'
)
"""


def day_number(date: dt.date) -> int:
    return (date - _EPOCH).days


@dataclass
class NodeTruth:
    """One node's persons and ICD-10 condition records."""

    person_id: Ints
    female: Mask
    male: Mask
    year_of_birth: Ints
    counted: Mask  # born by the reference year and not opted out
    event_person: Ints  # index into the person arrays
    event_code: NDArray[np.int32]  # index into `codes`
    event_day: Ints  # days since 1970-01-01
    event_occurrence: Ints  # the condition record (a record may appear under two codes)
    codes: list[str]
    death_person: Ints  # index into the person arrays
    death_day: Ints
    _events: dict[Event, Mask] = field(default_factory=dict)

    @classmethod
    def load(cls, database: Path) -> NodeTruth:
        with duckdb.connect(str(database), read_only=True) as con:
            persons = con.execute(_PERSONS).fetchnumpy()
            optouts = con.execute(_OPTOUTS).fetchnumpy()["person_id"]
            events = con.execute(_CONDITIONS).fetchnumpy()
            deaths = con.execute(_DEATHS).fetchnumpy()
        person_id = np.asarray(persons["person_id"], dtype=np.int64)
        gender = np.asarray(persons["gender_concept_id"], dtype=np.int64)
        year_of_birth = np.asarray(persons["year_of_birth"], dtype=np.int64)
        counted = (year_of_birth <= REFERENCE_YEAR) & ~np.isin(
            person_id, np.asarray(optouts, dtype=np.int64)
        )
        codes, event_code = np.unique(
            np.asarray(events["concept_code"], dtype=str), return_inverse=True
        )
        return cls(
            person_id=person_id,
            female=gender == FEMALE_CONCEPT,
            male=gender == MALE_CONCEPT,
            year_of_birth=year_of_birth,
            counted=counted,
            event_person=np.searchsorted(person_id, np.asarray(events["person_id"], np.int64)),
            event_code=event_code.astype(np.int32),
            event_day=np.asarray(events["day"], dtype=np.int64),
            event_occurrence=np.asarray(events["occurrence"], dtype=np.int64),
            codes=[str(c) for c in codes],
            death_person=np.searchsorted(person_id, np.asarray(deaths["person_id"], np.int64)),
            death_day=np.asarray(deaths["day"], dtype=np.int64),
        )

    @property
    def age(self) -> Ints:
        result: Ints = REFERENCE_YEAR - self.year_of_birth
        return result

    def sex_mask(self, sex: SexName) -> Mask:
        return self.female if sex == "FEMALE" else self.male

    def event_mask(self, event: Event) -> Mask:
        """Persons with at least `at_least` records of the event's code (or a subcode) in its
        window; with `exclude`, the others."""
        known = self._events.get(event)
        if known is not None:
            return known
        wanted = [i for i, code in enumerate(self.codes) if code.startswith(event.code)]
        rows = np.isin(self.event_code, wanted)
        if event.start is not None:
            rows &= self.event_day >= day_number(event.start)
        if event.end is not None:
            rows &= self.event_day <= day_number(event.end)
        _, first = np.unique(self.event_occurrence[rows], return_index=True)
        records = np.bincount(self.event_person[rows][first], minlength=len(self.person_id))
        mask: Mask = records >= event.at_least
        if event.exclude:
            mask = ~mask
        self._events[event] = mask
        return mask

    def _rows_of(self, code: str) -> Mask:
        """The condition records (rows, each record once) of `code` or a subcode."""
        wanted = [i for i, c in enumerate(self.codes) if c.startswith(code)]
        rows = np.isin(self.event_code, wanted)
        _, first = np.unique(self.event_occurrence[rows], return_index=True)
        kept: Mask = np.zeros(len(rows), dtype=bool)
        kept[np.flatnonzero(rows)[first]] = True
        return kept

    def index_day(self, index: Index) -> Ints:
        """Each person's first day with a record of the index's code; `NO_INDEX` without."""
        rows = self._rows_of(index.code)
        days: Ints = np.full(len(self.person_id), NO_INDEX, dtype=np.int64)
        np.minimum.at(days, self.event_person[rows], self.event_day[rows])
        return days

    def relative_mask(self, relative: Relative, index_day: Ints) -> Mask:
        """Persons with at least `at_least` records of the code within the window around
        their index day (persons without an index: none); with `exclude`, the others."""
        rows = self._rows_of(relative.code)
        person = self.event_person[rows]
        offset = self.event_day[rows] - index_day[person]
        inside = (index_day[person] != NO_INDEX) & (offset >= relative.start)
        inside &= offset <= relative.end
        records = np.bincount(person[inside], minlength=len(self.person_id))
        mask: Mask = records >= relative.at_least
        return ~mask if relative.exclude else mask

    def death_mask(self, death: Death) -> Mask:
        """Persons with a death record in the window; with `exclude`, the others."""
        rows = np.ones(len(self.death_person), dtype=bool)
        if death.start is not None:
            rows &= self.death_day >= day_number(death.start)
        if death.end is not None:
            rows &= self.death_day <= day_number(death.end)
        mask = np.zeros(len(self.person_id), dtype=bool)
        mask[self.death_person[rows]] = True
        return ~mask if death.exclude else mask

    def mask(self, where: Where) -> Mask:
        """The persons a question with these criteria counts."""
        return self.counted & self._criteria(where)

    def _criteria(self, where: Where) -> Mask:
        mask = np.ones(len(self.person_id), dtype=bool)
        if where.index is not None:
            index_day = self.index_day(where.index)
            mask &= index_day != NO_INDEX
            for relative in where.relative:
                mask &= self.relative_mask(relative, index_day)
        if where.sex is not None:
            mask &= self.sex_mask(where.sex)
        age = self.age
        if where.age_min is not None:
            mask &= age >= where.age_min
        if where.age_max is not None:
            mask &= age <= where.age_max
        for event in where.conditions:
            mask &= self.event_mask(event)
        if where.death is not None:
            mask &= self.death_mask(where.death)
        if where.any_of:
            either = np.zeros(len(self.person_id), dtype=bool)
            for group in where.any_of:
                either |= self._criteria(group)
            mask &= either
        return mask

    def count(self, where: Where) -> int:
        return int(self.mask(where).sum())

    def events_of(self, person: int) -> Iterator[tuple[str, dt.date]]:
        """A person's condition records: (code, date)."""
        for row in np.flatnonzero(self.event_person == person):
            yield (
                self.codes[self.event_code[row]],
                _EPOCH + dt.timedelta(days=int(self.event_day[row])),
            )
