"""Cohort criteria as the attacker writes them: rendered to the GraphQL input language, and
evaluated independently of the connector by `bench.attacks.truth`.

Only what the attacks need: sex, an age range, ICD-10 conditions (a category and its
subcodes) with an optional window on the event's date, at least N of them, or none (`exclude`),
a death in a window (or none), `anyOf` unions, and an index event (each person's first
condition of a category) with conditions in windows of days around it. Ages are whole
years at the reference date every question names (`REFERENCE_DATE`): reference year minus
year of birth, as the public query model defines them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final, Literal

REFERENCE_DATE: Final = dt.date(2026, 1, 1)
REFERENCE_YEAR: Final = REFERENCE_DATE.year
MAX_AGE: Final = 130

SexName = Literal["FEMALE", "MALE"]
SEXES: Final[tuple[SexName, SexName]] = ("FEMALE", "MALE")


def other_sex(sex: SexName) -> SexName:
    return "MALE" if sex == "FEMALE" else "FEMALE"


def _window(start: dt.date | None, end: dt.date | None) -> str:
    parts = []
    if start is not None:
        parts.append(f'start: "{start.isoformat()}"')
    if end is not None:
        parts.append(f'end: "{end.isoformat()}"')
    return f"window: {{ {', '.join(parts)} }}" if parts else ""


@dataclass(frozen=True, slots=True)
class Event:
    """At least `at_least` conditions coded `code` (ICD-10, with its subcodes) starting in the
    window; with `exclude`, fewer than that (none, by default)."""

    code: str
    start: dt.date | None = None
    end: dt.date | None = None
    at_least: int = 1
    exclude: bool = False

    def graphql(self) -> str:
        parts = [f'vocabulary: ICD10, code: "{self.code}"']
        if window := _window(self.start, self.end):
            parts.append(window)
        if self.at_least != 1:
            parts.append(f"atLeast: {self.at_least}")
        if self.exclude:
            parts.append("exclude: true")
        return f"{{ {', '.join(parts)} }}"

    def label(self) -> str:
        label = self.code
        if self.start is not None and self.end is not None and self.start.day == 1:
            label = f"{self.code}@{self.start:%Y-%m}"
        if self.at_least != 1:
            label = f"{self.at_least}×{label}"
        return f"not {label}" if self.exclude else label


@dataclass(frozen=True, slots=True)
class Death:
    """Died in the window (ever, without one); with `exclude`, did not."""

    start: dt.date | None = None
    end: dt.date | None = None
    exclude: bool = False

    def graphql(self) -> str:
        parts = [w] if (w := _window(self.start, self.end)) else []
        if self.exclude:
            parts.append("exclude: true")
        return f"{{ {', '.join(parts)} }}"

    def label(self) -> str:
        when = f"†{self.start:%Y-%m}" if self.start is not None else "†"
        return f"not {when}" if self.exclude else when


def month_of(year: int, month: int) -> tuple[dt.date, dt.date]:
    """The first and the last day of a month."""
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return dt.date(year, month, 1), following - dt.timedelta(days=1)


def in_month(code: str, year: int, month: int) -> Event:
    return Event(code, *month_of(year, month))


@dataclass(frozen=True, slots=True)
class Index:
    """Each person's first condition coded `code` (with its subcodes): the index event."""

    code: str

    def graphql(self) -> str:
        return f"{{ events: [{{ domain: CONDITION, codes: [{_code(self.code)}] }}] }}"

    def label(self) -> str:
        return f"first {self.code}"


@dataclass(frozen=True, slots=True)
class Relative:
    """At least `at_least` conditions coded `code` starting between `start` and `end` days
    after the index date (negative: before it), inclusive; with `exclude`, fewer."""

    code: str
    start: int
    end: int
    at_least: int = 1
    exclude: bool = False

    def graphql(self) -> str:
        parts = [
            f"event: {{ domain: CONDITION, codes: [{_code(self.code)}] }}",
            f"window: {{ startDays: {self.start}, endDays: {self.end} }}",
        ]
        if self.at_least != 1:
            parts.append(f"atLeast: {self.at_least}")
        if self.exclude:
            parts.append("exclude: true")
        return f"{{ {', '.join(parts)} }}"

    def label(self) -> str:
        label = f"{self.code}@[{self.start:+d},{self.end:+d}]"
        return f"not {label}" if self.exclude else label


def _code(code: str) -> str:
    return f'{{ vocabulary: ICD10, code: "{code}" }}'


@dataclass(frozen=True, slots=True)
class Where:
    """Every field given must hold; `any_of` holds when one of its groups holds."""

    sex: SexName | None = None
    age_min: int | None = None
    age_max: int | None = None
    conditions: tuple[Event, ...] = ()
    any_of: tuple[Where, ...] = ()
    death: Death | None = None
    # The index event (asked beside the criteria) and the conditions relative to it: only at
    # the top level, where the query model takes the index.
    index: Index | None = None
    relative: tuple[Relative, ...] = ()
    # A redundant spelling of the same criteria (rewordings): `age: { min: 0 }` when no age
    # is given. The population is the same; only the question's text differs.
    spell_open_age: bool = False

    def graphql(self) -> str:
        parts = []
        if self.sex is not None:
            parts.append(f"sex: {self.sex}")
        if self.age_min is not None or self.age_max is not None:
            bounds = []
            if self.age_min is not None:
                bounds.append(f"min: {self.age_min}")
            if self.age_max is not None:
                bounds.append(f"max: {self.age_max}")
            parts.append(f"age: {{ {', '.join(bounds)} }}")
        elif self.spell_open_age:
            parts.append("age: { min: 0 }")
        if self.conditions:
            parts.append(f"conditions: [{', '.join(e.graphql() for e in self.conditions)}]")
        if self.any_of:
            parts.append(f"anyOf: [{', '.join(g.graphql() for g in self.any_of)}]")
        if self.death is not None:
            parts.append(f"death: {self.death.graphql()}")
        if self.relative:
            parts.append(f"relative: [{', '.join(r.graphql() for r in self.relative)}]")
        return f"{{ {', '.join(parts)} }}"

    def label(self) -> str:
        parts = [e.label() for e in self.conditions]
        if self.index is not None:
            parts.insert(0, self.index.label())
        parts += [r.label() for r in self.relative]
        if self.sex is not None:
            parts.append(self.sex[0])
        if self.age_min is not None or self.age_max is not None:
            low = "" if self.age_min is None else str(self.age_min)
            high = "" if self.age_max is None else str(self.age_max)
            parts.append(low if low == high else f"{low}-{high}")
        if self.any_of:
            parts.append("(" + " | ".join(g.label() for g in self.any_of) + ")")
        if self.death is not None:
            parts.append(self.death.label())
        return " ".join(parts) or "everyone"


def union(*groups: Where) -> Where:
    return Where(any_of=tuple(groups))
