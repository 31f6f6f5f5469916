"""Cohort criteria as the attacker writes them: rendered to the GraphQL input language, and
evaluated independently of the connector by `bench.attacks.truth`.

Only what the attacks need: sex, an age range, ICD-10 conditions (a category and its
subcodes) with an optional window on the event's date, and `anyOf` unions. Ages are whole
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


@dataclass(frozen=True, slots=True)
class Event:
    """At least one condition coded `code` (ICD-10, with its subcodes) starting in the window."""

    code: str
    start: dt.date | None = None
    end: dt.date | None = None

    def graphql(self) -> str:
        window = ""
        if self.start is not None or self.end is not None:
            parts = []
            if self.start is not None:
                parts.append(f'start: "{self.start.isoformat()}"')
            if self.end is not None:
                parts.append(f'end: "{self.end.isoformat()}"')
            window = f", window: {{ {', '.join(parts)} }}"
        return f'{{ vocabulary: ICD10, code: "{self.code}"{window} }}'

    def label(self) -> str:
        if self.start is not None and self.end is not None and self.start.day == 1:
            return f"{self.code}@{self.start:%Y-%m}"
        return self.code


def in_month(code: str, year: int, month: int) -> Event:
    first = dt.date(year, month, 1)
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return Event(code, first, following - dt.timedelta(days=1))


@dataclass(frozen=True, slots=True)
class Where:
    """Every field given must hold; `any_of` holds when one of its groups holds."""

    sex: SexName | None = None
    age_min: int | None = None
    age_max: int | None = None
    conditions: tuple[Event, ...] = ()
    any_of: tuple[Where, ...] = ()
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
        return f"{{ {', '.join(parts)} }}"

    def label(self) -> str:
        parts = [e.label() for e in self.conditions]
        if self.sex is not None:
            parts.append(self.sex[0])
        if self.age_min is not None or self.age_max is not None:
            low = "" if self.age_min is None else str(self.age_min)
            high = "" if self.age_max is None else str(self.age_max)
            parts.append(low if low == high else f"{low}-{high}")
        if self.any_of:
            parts.append("(" + " | ".join(g.label() for g in self.any_of) + ")")
        return " ".join(parts) or "everyone"


def union(*groups: Where) -> Where:
    return Where(any_of=tuple(groups))
