"""Visits and condition records.

Each condition record carries the standard SNOMED concept in `condition_concept_id` and the
ICD-10 code the (synthetic) clinician recorded in `condition_source_concept_id`, and belongs
to a visit: an admission for severe events, an outpatient visit otherwise. Acute cardiac
events come through the emergency room: an emergency room visit (9203), or one followed by an
admission (262); other admissions are inpatient visits (9201).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from synth import vocabulary as v
from synth.arrays import (
    MISSING,
    Days,
    Index,
    Ints,
    Mask,
    categorical,
    chance,
    pick,
    repeat_rows,
    uniform_days,
)
from synth.histories import Diagnosis, Events, History
from synth.population import People
from synth.rows import Rows, full

Codes = tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class ChronicCondition:
    attribute: str  # the History field
    codes: Codes  # ICD-10 codes a clinician records, with their shares
    follow_ups: float  # mean number of later records of the same condition
    admitted: float  # chance the first record comes from a hospital admission
    stay: tuple[int, int] = (3, 10)  # length of that admission, days


CHRONIC: Final = (
    ChronicCondition("t1d", (("E10.9", 0.85), ("E10", 0.15)), 2.0, 0.1),
    ChronicCondition(
        "t2d",
        (("E11.9", 0.55), ("E11", 0.10), ("E11.6", 0.12), ("E11.2", 0.12), ("E11.4", 0.11)),
        2.0,
        0.02,
    ),
    ChronicCondition("hypertension", (("I10", 1.0),), 1.5, 0.0),
    ChronicCondition(
        "myocardial_infarction", (("I21.9", 0.5), ("I21.0", 0.2), ("I21.4", 0.3)), 0.3, 1.0
    ),
    ChronicCondition(
        "heart_failure", (("I50.9", 0.55), ("I50.0", 0.30), ("I50.1", 0.15)), 1.5, 0.5, (4, 12)
    ),
    ChronicCondition("obesity", (("E66.9", 0.7), ("E66.0", 0.2), ("E66", 0.1)), 0.3, 0.0),
    ChronicCondition(
        "autism",
        (("F84.0", 0.40), ("F84.5", 0.25), ("F84.1", 0.10), ("F84.8", 0.05), ("F84.9", 0.20)),
        0.8,
        0.0,
    ),
    ChronicCondition(
        "intellectual_disability",
        (("F70", 0.55), ("F71", 0.20), ("F72", 0.08), ("F73", 0.02), ("F79", 0.15)),
        0.5,
        0.0,
    ),
    ChronicCondition("epilepsy", (("G40.9", 0.6), ("G40.3", 0.3), ("G40", 0.1)), 1.5, 0.15, (2, 5)),
    ChronicCondition(
        "sarcoma",
        (
            ("C49.9", 0.35),
            ("C49.2", 0.25),
            ("C49.1", 0.10),
            ("C49.4", 0.12),
            ("C49.3", 0.10),
            ("C49.0", 0.08),
        ),
        2.0,
        0.6,
        (3, 14),
    ),
)
PNEUMONIA_CODES: Final = (("J18.9", 0.7), ("J18.1", 0.15), ("J18.0", 0.15))
COVID_CODES: Final = (("U07.1", 0.9), ("U07.2", 0.1))
MYOCARDITIS_CODES: Final = (("I40.9", 0.6), ("I40.1", 0.2), ("I40.0", 0.1), ("I40.8", 0.1))
PERICARDITIS_CODES: Final = (("I30.9", 0.6), ("I30.0", 0.3), ("I30.8", 0.1))
SAME_CODE_AT_FOLLOW_UP: Final = 0.7


def _icd10(rng: np.random.Generator, codes: Codes, n: int) -> Ints:
    return pick([v.ICD10_ID[c] for c, _ in codes], categorical(rng, [w for _, w in codes], n))


_MAP_KEYS: Final = np.array(sorted(v.MAPS_TO), dtype=np.int64)
_MAP_VALUES: Final = np.array([v.MAPS_TO[k] for k in sorted(v.MAPS_TO)], dtype=np.int64)


def _standard(source: Ints) -> Ints:
    mapped: Ints = _MAP_VALUES[np.searchsorted(_MAP_KEYS, source)]
    return mapped


class Encounters:
    """Visits, and the condition records made at them."""

    def __init__(self, rng: np.random.Generator, people: People, end: Days) -> None:
        self.rng, self.people, self.end = rng, people, end
        self.visits = Rows()
        self.conditions = Rows()
        self.visit_count = 0

    def visit(
        self,
        who: Index,
        start: Days,
        admitted: Mask,
        stay: tuple[int, int],
        died_there: Mask | None = None,
        *,
        emergency: bool = False,
        rng: np.random.Generator | None = None,
    ) -> Index:
        """One visit per row: an admission of `stay` days where `admitted`, else an
        outpatient visit; through the emergency room with `emergency`. Where `died_there`,
        the admission lasts until the death. `rng`, if given, draws the stays instead of the
        encounters' own stream."""
        n = len(who)
        rng = self.rng if rng is None else rng
        length = np.where(admitted, uniform_days(rng, stay[0], stay[1], n), 0)
        end = np.minimum(start + length, self.end[who])
        if died_there is not None:
            end = np.where(died_there, self.end[who], end)
        end = np.maximum(end, start)
        self.visits.add(
            n,
            person_id=self.people.person_id[who],
            visit_concept_id=(
                np.where(admitted, v.EMERGENCY_INPATIENT, v.EMERGENCY)
                if emergency
                else np.where(admitted, v.INPATIENT, v.OUTPATIENT)
            ),
            visit_start_date=start,
            visit_start_datetime=start,
            visit_end_date=end,
            visit_end_datetime=end,
            visit_type_concept_id=v.EHR,
        )
        local: Index = np.arange(self.visit_count, self.visit_count + n)
        self.visit_count += n
        return local

    def record(
        self, who: Index, start: Days, source: Ints, visit: Index, end: Days | None = None
    ) -> None:
        """Condition records at the given visits; `end` for episodes that end (never after
        the person's observation ends), none for chronic conditions."""
        self.conditions.add(
            len(who),
            person_id=self.people.person_id[who],
            condition_concept_id=_standard(source),
            condition_start_date=start,
            condition_start_datetime=start,
            condition_end_date=MISSING if end is None else np.minimum(end, self.end[who]),
            condition_type_concept_id=v.EHR,
            visit_occurrence_id=visit,
            condition_source_concept_id=source,
        )


def record_conditions(rng: np.random.Generator, enc: Encounters, history: History) -> None:
    end = history.observation_end
    for spec in CHRONIC:
        dx: Diagnosis = getattr(history, spec.attribute)
        who = dx.who
        first_code = _icd10(rng, spec.codes, len(who))
        admitted = chance(rng, spec.admitted, len(who))
        enc.record(who, dx.date[who], first_code, enc.visit(who, dx.date[who], admitted, spec.stay))
        # Later records: mostly the same code again, sometimes a more (or less) specific one.
        row, _ = repeat_rows(rng.poisson(spec.follow_ups, len(who)).astype(np.int64))
        later_who = who[row]
        date = uniform_days(rng, dx.date[later_who], end[later_who], len(row))
        code = np.where(
            chance(rng, SAME_CODE_AT_FOLLOW_UP, len(row)),
            first_code[row],
            _icd10(rng, spec.codes, len(row)),
        )
        no_stay = np.zeros(len(row), dtype=np.bool_)
        enc.record(later_who, date, code, enc.visit(later_who, date, no_stay, (0, 0)))

    covid = history.covid
    who = covid.who
    date = covid.date[who]
    admitted = history.covid_hospital[who]
    visit = enc.visit(who, date, admitted, (3, 20), died_there=history.covid_death[who])
    enc.record(who, date, _icd10(rng, COVID_CODES, len(who)), visit, date + 14)
    with_pneumonia = history.covid_pneumonia[who]
    enc.record(
        who[with_pneumonia],
        date[with_pneumonia],
        full(int(with_pneumonia.sum()), v.ICD10_ID["J18.9"]),
        visit[with_pneumonia],
        date[with_pneumonia] + 14,
    )

    pneumonia = Events(history.pneumonia.who, history.pneumonia.date[history.pneumonia.who])
    _acute(rng, enc, pneumonia, PNEUMONIA_CODES, admitted=0.6, stay=(3, 10), lasts=14)
    for events, codes, share, days in (
        (history.myocarditis, MYOCARDITIS_CODES, 0.8, (2, 7)),
        (history.pericarditis, PERICARDITIS_CODES, 0.4, (1, 4)),
    ):
        _acute(rng, enc, events, codes, admitted=share, stay=days, lasts=30, emergency=True)


def _acute(
    rng: np.random.Generator,
    enc: Encounters,
    events: Events,
    codes: Codes,
    *,
    admitted: float,
    stay: tuple[int, int],
    lasts: int,
    emergency: bool = False,
) -> None:
    n = len(events.person)
    visit = enc.visit(
        events.person, events.date, chance(rng, admitted, n), stay, emergency=emergency, rng=rng
    )
    enc.record(events.person, events.date, _icd10(rng, codes, n), visit, events.date + lasts)


def record_vaccine_signal(rng: np.random.Generator, enc: Encounters, events: Events) -> None:
    """The vaccine signal's myocarditis records (`histories.vaccine_myocarditis`), drawn from
    `rng` alone: the records of every other event stay as they were without it."""
    _acute(rng, enc, events, MYOCARDITIS_CODES, admitted=0.8, stay=(2, 7), lasts=30, emergency=True)
