"""Picking what to attack from the truth: small sets, the large cohorts that pad them, and
persons a few known attributes single out.

The simulator picks targets an attacker would be lucky to get (small but not empty sets,
persons who really are unique given what the attacker knows): the worst case for the
protection.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from bench.attacks.truth import NodeTruth
from bench.attacks.where import SEXES, Death, Event, SexName, Where, in_month, month_of, union
from schema.codes import Jurisdiction

# Diagnoses whose small sets the counting attacks go after, rarest first.
SMALL_SET_CODES: Final = ("C49", "F73", "I30", "I40", "F72", "F79", "E10", "F84", "G40", "I21")
# The diagnoses an attacker wants to learn about one person.
SENSITIVE_CODES: Final = ("G40", "C49", "F84")
OLDEST: Final = 100  # no synthetic person is older at the reference date


@dataclass(frozen=True)
class SmallSet:
    """A set defined by a diagnosis, a sex and an age band, small in some jurisdictions."""

    where: Where
    band: tuple[int, int]
    truth: Mapping[Jurisdiction, int]
    small_in: tuple[Jurisdiction, ...]


def small_sets(
    truth: Mapping[Jurisdiction, NodeTruth],
    minimums: Mapping[Jurisdiction, int],
    *,
    per_jurisdiction: int,
    rng: np.random.Generator,
    codes: Sequence[str] = SMALL_SET_CODES,
    candidates: Sequence[Where] = (),
) -> list[SmallSet]:
    """Sets (diagnosis, sex, 10-year band; or `candidates`, each with an age band) with
    1..minimum-1 persons, until every jurisdiction has `per_jurisdiction` of them (each set
    counts wherever it is small)."""
    candidates = candidates or [
        Where(sex=sex, age_min=low, age_max=low + 9, conditions=(Event(code),))
        for code in codes
        for sex in SEXES
        for low in range(0, OLDEST, 10)
    ]
    order = rng.permutation(len(candidates))
    needed = dict.fromkeys(truth, per_jurisdiction)
    chosen: list[SmallSet] = []
    for i in order:
        where = candidates[int(i)]
        counts = {j: t.count(where) for j, t in truth.items()}
        small = tuple(j for j, n in counts.items() if 1 <= n < minimums[j])
        if not any(needed[j] > 0 for j in small):
            continue
        for j in small:
            needed[j] -= 1
        assert where.age_min is not None
        assert where.age_max is not None
        chosen.append(SmallSet(where, (where.age_min, where.age_max), counts, small))
        if all(n <= 0 for n in needed.values()):
            break
    return chosen


@dataclass
class Cohorts:
    """Large birth cohorts (age windows) to pad small sets with, each handed out once: two
    questions padded with different cohorts differ by at least a year of births."""

    used: set[tuple[int, int]] = field(default_factory=set)
    _next: int = 0

    def window(self, *avoid: tuple[int, int]) -> tuple[int, int]:
        """A fresh window [low, high] of ages overlapping none of `avoid`."""
        for width in range(8, 60):
            for start in range(0, OLDEST - width):
                low = (start + self._next * 7) % (OLDEST - width)
                high = low + width - 1
                if (low, high) in self.used:
                    continue
                if any(low <= b and a <= high for a, b in avoid):
                    continue
                self.used.add((low, high))
                self._next += 1
                return low, high
        raise RuntimeError("no fresh birth cohort left")

    def cohort(self, *avoid: tuple[int, int]) -> tuple[Where, tuple[int, int]]:
        """A fresh cohort, and its window."""
        low, high = self.window(*avoid)
        return Where(age_min=low, age_max=high), (low, high)


def outside(*bands: tuple[int, int]) -> Where:
    """Everyone whose age lies in none of `bands` (a complement, written with ranges)."""
    edges = sorted(bands)
    groups = []
    low = 0
    for a, b in edges:
        if a > low:
            groups.append(Where(age_min=low, age_max=a - 1))
        low = max(low, b + 1)
    if low <= OLDEST:
        groups.append(Where(age_min=low))
    return union(*groups)


# -- persons singled out by what an attacker knows ----------------------------------------------
@dataclass(frozen=True)
class Person:
    """A person the attacker knows by sex, year of birth and the month of one recorded
    event; `alone` is that description as criteria, which only they match."""

    jurisdiction: Jurisdiction
    index: int
    sex: SexName
    age: int
    event: Event

    @property
    def alone(self) -> Where:
        return Where(sex=self.sex, age_min=self.age, age_max=self.age, conditions=(self.event,))


def singled_out(
    truth: NodeTruth, jurisdiction: Jurisdiction, avoid: Sequence[str]
) -> Iterator[Person]:
    """Every counted person one of whose records (a diagnosis not in `avoid`, by month) is
    shared by nobody else of their sex and year of birth."""
    rows = truth.counted[truth.event_person]
    category = np.array([c[:3] for c in truth.codes])
    codes = np.unique(category)
    code_of = np.searchsorted(codes, category)[truth.event_code]
    rows &= ~np.isin(codes[code_of], list(avoid))
    days = truth.event_day[rows]
    dates = np.datetime64("1970-01-01") + days.astype("timedelta64[D]")
    months = dates.astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    person = truth.event_person[rows]
    key = (
        (truth.female[person].astype(np.int64) * 4096 + truth.year_of_birth[person]) * 256
        + code_of[rows]
    ) * 4096 + months
    pairs = np.unique(np.stack([key, person]), axis=1)
    keys, first, counts = np.unique(pairs[0], return_index=True, return_counts=True)
    seen: set[int] = set()
    for k, at in zip(keys[counts == 1], first[counts == 1], strict=True):
        index = int(pairs[1, at])
        if index in seen:
            continue
        seen.add(index)
        month = int(k % 4096)
        code = str(codes[int(k // 4096 % 256)])
        year, month0 = divmod(month, 12)
        yield Person(
            jurisdiction=jurisdiction,
            index=index,
            sex="FEMALE" if truth.female[index] else "MALE",
            age=int(truth.age[index]),
            event=in_month(code, 1970 + year, month0 + 1),
        )


@dataclass(frozen=True)
class Suspect:
    """A membership trial: does `person` have `code`?"""

    person: Person
    code: str
    member: bool

    @property
    def cell(self) -> Where:
        """The set of at most one person the trial is about: them, if they have the code."""
        alone = self.person.alone
        return Where(
            sex=alone.sex,
            age_min=alone.age_min,
            age_max=alone.age_max,
            conditions=(*alone.conditions, Event(self.code)),
        )

    @property
    def label(self) -> str:
        p = self.person
        return f"{p.sex[0]} {p.age} {p.event.label()} {self.code}?"


def suspects(
    truth: Mapping[Jurisdiction, NodeTruth],
    *,
    per_jurisdiction: int,
    rng: np.random.Generator,
    codes: Sequence[str] = SENSITIVE_CODES,
    sex: SexName | None = None,
) -> list[Suspect]:
    """Balanced trials per jurisdiction: half about persons who have the diagnosis asked,
    half about persons who have not, the diagnoses taken in turn; of one sex if given."""
    chosen: list[Suspect] = []
    for j, node in truth.items():
        people = [p for p in singled_out(node, j, codes) if sex is None or p.sex == sex]
        order = rng.permutation(len(people))
        want_members = per_jurisdiction // 2
        members: list[Suspect] = []
        others: list[Suspect] = []
        for n, i in enumerate(order):
            person = people[int(i)]
            code = codes[n % len(codes)]
            has = [c for c in codes if node.event_mask(Event(c))[person.index]]
            if has and len(members) < want_members:
                members.append(Suspect(person, has[0], True))
            elif not has and len(others) < per_jurisdiction - want_members:
                others.append(Suspect(person, code, False))
            if len(members) >= want_members and len(others) >= per_jurisdiction - want_members:
                break
        for suspect in (*members, *others):
            assert node.count(suspect.cell) == int(suspect.member), suspect
        chosen.extend([*members, *others])
    return chosen


# -- known decedents ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decedent:
    """A counted person the attacker knows by sex, year of birth and month of death (an
    obituary), which describe nobody else counted."""

    jurisdiction: Jurisdiction
    index: int
    sex: SexName
    age: int
    died: Death

    @property
    def alone(self) -> Where:
        return Where(sex=self.sex, age_min=self.age, age_max=self.age, death=self.died)


def decedents(truth: NodeTruth, jurisdiction: Jurisdiction) -> Iterator[Decedent]:
    """Every counted person whose sex, year of birth and month of death no other counted
    person shares."""
    rows = truth.counted[truth.death_person]
    person = truth.death_person[rows]
    dates = np.datetime64("1970-01-01") + truth.death_day[rows].astype("timedelta64[D]")
    months = dates.astype("datetime64[M]").astype(np.int64)
    key = (truth.female[person].astype(np.int64) * 4096 + truth.year_of_birth[person]) * 4096
    keys, first, counts = np.unique(key + months, return_index=True, return_counts=True)
    for k, at in zip(keys[counts == 1], first[counts == 1], strict=True):
        year, month0 = divmod(int(k % 4096), 12)
        index = int(person[at])
        yield Decedent(
            jurisdiction=jurisdiction,
            index=index,
            sex="FEMALE" if truth.female[index] else "MALE",
            age=int(truth.age[index]),
            died=Death(*month_of(1970 + year, month0 + 1)),
        )


@dataclass(frozen=True)
class DeathTrial:
    """Did `decedent` have `code`?"""

    decedent: Decedent
    code: str
    member: bool

    @property
    def label(self) -> str:
        d = self.decedent
        return f"{d.sex[0]} {d.age} {d.died.label()} {self.code}?"


def death_trials(
    truth: Mapping[Jurisdiction, NodeTruth],
    *,
    per_jurisdiction: int,
    rng: np.random.Generator,
    codes: Sequence[str],
) -> list[DeathTrial]:
    """Balanced trials per jurisdiction about known decedents: half about a diagnosis of
    `codes` they had (the first of them), half about one they had not. The k-th trial about
    a decedent without the diagnosis asks about the k-th member's diagnosis: members and the
    others are asked about the same diagnoses, so that the diagnosis asked tells nothing of
    the answer (members' diagnoses are common ones, and a curve or count of a rare one, all
    `LOW`, would otherwise say "absent" for the others without saying anything about them)."""
    chosen: list[DeathTrial] = []
    for j, node in truth.items():
        people = list(decedents(node, j))
        order = [people[int(i)] for i in rng.permutation(len(people))]
        want = per_jurisdiction // 2
        members: list[DeathTrial] = []
        for d in order:
            if len(members) >= want:
                break
            has = [c for c in codes if node.event_mask(Event(c))[d.index]]
            if has:
                members.append(DeathTrial(d, has[0], True))
        taken = {t.decedent.index for t in members}
        others: list[DeathTrial] = []
        for k in range(per_jurisdiction - want):
            code = members[k % len(members)].code if members else codes[k % len(codes)]
            lacking = node.event_mask(Event(code, exclude=True))
            for d in order:
                if d.index not in taken and lacking[d.index]:
                    others.append(DeathTrial(d, code, False))
                    taken.add(d.index)
                    break
        for trial in (*members, *others):
            alone = trial.decedent.alone
            assert node.count(alone) == 1, trial
            had = node.count(Where(any_of=(alone,), conditions=(Event(trial.code),)))
            assert had == int(trial.member), trial
        chosen.extend([*members, *others])
    return chosen
