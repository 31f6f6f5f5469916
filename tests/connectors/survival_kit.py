"""The truth of a survival question, for tests: each cohort person's follow-up found by the
reference implementation (`tests.connectors.reference_kit`: the cohort and index dates) and
plain Python here (the first outcome on or after the index date, the end of the observation
period holding it), and each time as the nodes' cells group it."""

from __future__ import annotations

from pathlib import Path

from schema.query import CohortQuery, Survival
from tests.connectors.reference_kit import Reference, read_cdm

SEXES = {8532: "FEMALE", 8507: "MALE"}


def followed(path: Path, query: CohortQuery) -> list[tuple[str, int, bool]]:
    """Each cohort person's sex, time (days from the index date, at most the maximum) and
    whether it ended with the outcome."""
    survival = query.survival
    assert survival is not None
    cdm = read_cdm(path)
    reference = Reference(cdm, query)
    person_of = {i: p for p, i in cdm.index.items()}
    out = []
    for person_index, index_date in reference.dated().items():
        assert index_date is not None
        person = person_of[person_index]
        outcomes = [
            e.date for e in reference.events_of(survival.outcome, person) if e.date >= index_date
        ]
        ends = [end for start, end in cdm.observed.get(person, ()) if start <= index_date <= end]
        end = (max(ends) - index_date).days if ends else 0
        first = (min(outcomes) - index_date).days if outcomes else None
        if first is not None and first <= end and first < survival.max_days:
            time, event = first, True
        else:
            time, event = min(end, survival.max_days), False
        out.append((SEXES.get(cdm.persons[person][0], "UNKNOWN"), time, event))
    return out


def grouped(time: int, event: bool, survival: Survival) -> int:
    """The time at the end of its interval, as the cells have it (the maximum for those at
    risk there)."""
    if time >= survival.max_days:
        return survival.max_days
    return (time // survival.interval_days + 1) * survival.interval_days
