"""The questions of the utility benchmark (`bench/disclosure_utility.py`), written once and read
twice: as the GraphQL a researcher sends, and as the cohort `bench.truth` computes on its own.

A `Cohort` is the criteria a researcher would type (events ANDed, a sex, an age range); a
`Question` adds the breakdowns and the noise level. `domain` lists the cells a breakdown must
show, from the question alone (the documented public domain: every sex, every age band from
the age range, every year of the index event's window up to the reference date), without
the connector's code, so that a missing or extra cell shows.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from schema.codes import Dimension

Breakdown = tuple[Dimension, ...]
Kind = Literal["condition", "drug", "measurement"]
Noise = Literal["STANDARD", "COARSE"]

REQUEST: Final = "DR-2026-0042"
REFERENCE_DATE: Final = dt.date(2026, 1, 1)
# The query model's bounds (schema.query): ages 0-130, dates 1900-2100.
MIN_AGE, MAX_AGE = 0, 130
FIRST_YEAR, LAST_YEAR = 1900, 2100
UNKNOWN: Final = "UNKNOWN"
SEXES: Final = ("FEMALE", "MALE")
SEX, AGE5, AGE10, AGE20, YEAR, JURISDICTION = (
    Dimension.SEX,
    Dimension.AGE_BAND_5,
    Dimension.AGE_BAND_10,
    Dimension.AGE_BAND_20,
    Dimension.CALENDAR_YEAR,
    Dimension.JURISDICTION,
)
_WIDTHS: Final = {AGE5: 5, AGE10: 10, AGE20: 20}
_SHORT: Final = {SEX: "sex", AGE5: "age5", AGE10: "age10", AGE20: "age20", YEAR: "year"}
_SHORT[JURISDICTION] = "country"


@dataclass(frozen=True, slots=True)
class Event:
    """At least one event of `kind` with this code (ICD10 and ATC: or any code starting with
    it) starting in the window, and for a measurement a value of at least `min_value`."""

    kind: Kind
    vocabulary: str
    code: str
    start: dt.date | None = None
    end: dt.date | None = None
    min_value: float | None = None
    name: str = ""

    def graphql(self) -> str:
        parts = [f"vocabulary: {self.vocabulary}", f'code: "{self.code}"']
        if self.start or self.end:
            bounds = [
                f'{k}: "{d.isoformat()}"'
                for k, d in (("start", self.start), ("end", self.end))
                if d
            ]
            parts.append(f"window: {{ {', '.join(bounds)} }}")
        if self.min_value is not None:
            parts.append(f"value: {{ min: {self.min_value:g} }}")
        return f"{{ {', '.join(parts)} }}"

    @property
    def label(self) -> str:
        text = self.name or self.code
        if self.start or self.end:
            first = self.start.year if self.start else ""
            last = self.end.year if self.end else ""
            text += f" {first}–{last}"
        return text

    def within(self, start: dt.date | None, end: dt.date | None) -> Event:
        return Event(self.kind, self.vocabulary, self.code, start, end, self.min_value, self.name)


@dataclass(frozen=True, slots=True)
class Cohort:
    events: tuple[Event, ...] = ()
    sex: str | None = None
    age_min: int | None = None
    age_max: int | None = None

    def graphql(self) -> str:
        parts = []
        if self.sex is not None:
            parts.append(f"sex: {self.sex}")
        if self.age_min is not None or self.age_max is not None:
            bounds = [
                f"{k}: {v}"
                for k, v in (("min", self.age_min), ("max", self.age_max))
                if v is not None
            ]
            parts.append(f"age: {{ {', '.join(bounds)} }}")
        for kind, field in (
            ("condition", "conditions"),
            ("drug", "drugs"),
            ("measurement", "measurements"),
        ):
            events = [e.graphql() for e in self.events if e.kind == kind]
            if events:
                parts.append(f"{field}: [{', '.join(events)}]")
        return f"{{ {', '.join(parts)} }}"

    @property
    def index_event(self) -> Event | None:
        """The event dating a person for CALENDAR_YEAR: the first condition, else the first
        drug, else the first measurement (as the query model documents it)."""
        for kind in ("condition", "drug", "measurement"):
            for event in self.events:
                if event.kind == kind:
                    return event
        return None

    @property
    def label(self) -> str:
        parts = [" ∧ ".join(e.label for e in self.events) or "everyone"]
        if self.sex is not None:
            parts.append(self.sex.lower())
        if self.age_min is not None or self.age_max is not None:
            low = "" if self.age_min is None else str(self.age_min)
            high = "+" if self.age_max is None else f"–{self.age_max}"
            parts.append(f"aged {low}{high}" if low else f"aged ≤{self.age_max}")
        return ", ".join(parts)

    def key(self, table: Breakdown) -> tuple[object, ...]:
        """What makes a node's table of this cohort the same question (the criteria, events in
        any order; and for CALENDAR_YEAR the index event): asked again, it is not charged."""
        dated = self.index_event if YEAR in table else None
        return (frozenset(self.events), self.sex, self.age_min, self.age_max, dated)


@dataclass(frozen=True, slots=True)
class Question:
    cohort: Cohort
    tables: tuple[Breakdown, ...] = ()
    noise: Noise = "STANDARD"
    note: str = ""

    def document(self) -> str:
        """The GraphQL a researcher sends: the pooled count, each node's count and privacy
        line, and each breakdown as `t0`, `t1`, ..."""
        value = "{ value status sd contributors }"
        tables = "\n".join(
            f"    t{i}: breakdown(by: [{', '.join(d.value for d in by)}]) "
            f"{{ by cells {{ dimensions {{ name value }} count {value} }} }}"
            for i, by in enumerate(self.tables)
        )
        noise = "" if self.noise == "STANDARD" else f", noise: {self.noise}"
        return (
            # Ages at the reference date: the truth (`bench.truth`) takes them there.
            f'{{ cohort(request: "{REQUEST}", referenceDate: "{REFERENCE_DATE.isoformat()}"'
            f", ageAt: REFERENCE_DATE{noise},\n    criteria: {self.cohort.graphql()}) {{\n"
            f"    count {value}\n"
            f"    byJurisdiction {{ jurisdiction status privacy {{ sigma "
            "questionRho spentRho capRho organisationSpentRho organisationCapRho } }\n"
            f"{tables}\n}} }}"
        )

    @property
    def node_tables(self) -> tuple[Breakdown, ...]:
        """The tables each node computes: the total, then each breakdown without JURISDICTION
        (which the gateway adds), dimensions in a fixed order, each once."""
        found: list[Breakdown] = [()]
        for by in self.tables:
            table = node_table(by)
            if table not in found:
                found.append(table)
        return tuple(found)

    @property
    def national_tables(self) -> tuple[Breakdown, ...]:
        """What each node releases on its own when the question is pooled securely: the tables
        asked by JURISDICTION. The document asks no country's own count, so the total is
        released only pooled (a table by JURISDICTION alone is each country's total)."""
        found: list[Breakdown] = []
        for by in self.tables:
            if JURISDICTION in by and (table := node_table(by)) not in found:
                found.append(table)
        return tuple(found)

    @property
    def pooled_tables(self) -> tuple[Breakdown, ...]:
        """What the nodes pool securely: the total (the document asks for the pooled count)
        and the tables asked without JURISDICTION. Each is charged apart from a national
        table of the same dimensions."""
        found: list[Breakdown] = [()]
        for by in self.tables:
            if JURISDICTION not in by and (table := node_table(by)) not in found:
                found.append(table)
        return tuple(found)

    @property
    def label(self) -> str:
        text = self.cohort.label
        if self.tables:
            text += " by " + ", ".join(" × ".join(_SHORT[d] for d in by) for by in self.tables)
        if self.noise != "STANDARD":
            text += f" ({self.noise.lower()})"
        return text


def node_table(by: Breakdown) -> Breakdown:
    order = list(Dimension)
    return tuple(sorted((d for d in by if d is not JURISDICTION), key=order.index))


def dimension_values(dimension: Dimension, cohort: Cohort) -> tuple[str, ...]:
    """The values a node's cells take along `dimension` for `cohort` (JURISDICTION: none, the
    gateway's)."""
    if dimension is SEX:
        return (cohort.sex,) if cohort.sex else (*SEXES, UNKNOWN)
    width = _WIDTHS.get(dimension)
    if width is not None:
        low = MIN_AGE if cohort.age_min is None else cohort.age_min
        high = MAX_AGE if cohort.age_max is None else cohort.age_max
        return tuple(f"{b}-{b + width - 1}" for b in range(low - low % width, high + 1, width))
    if dimension is YEAR:
        event = cohort.index_event
        first = event.start.year if event and event.start else FIRST_YEAR
        last = min(event.end.year if event and event.end else LAST_YEAR, REFERENCE_DATE.year)
        years = tuple(str(y) for y in range(first, last + 1))
        # Without an index event persons are dated by their first observation period, which
        # some lack.
        return years if event else (*years, UNKNOWN)
    if dimension is JURISDICTION:
        return ()
    raise ValueError(f"no domain for {dimension.value}")


def domain(table: Breakdown, cohort: Cohort) -> list[tuple[str, ...]]:
    """Every cell key of a node's `table` (dimensions in the table's order)."""
    return list(itertools.product(*(dimension_values(d, cohort) for d in table)))


def age_band(age: int, dimension: Dimension) -> str:
    width = _WIDTHS[dimension]
    low = age - age % width
    return f"{low}-{low + width - 1}"


@dataclass(frozen=True, slots=True)
class Table:
    """A table measured per country (`by` starts with JURISDICTION) and pooled."""

    name: str
    cohort: Cohort
    by: Breakdown
    margins: tuple[Breakdown, ...]

    @property
    def pooled(self) -> Breakdown:
        return tuple(d for d in self.by if d is not JURISDICTION)

    def alone(self, noise: Noise = "STANDARD") -> Question:
        return Question(self.cohort, (self.by, self.pooled), noise)

    def with_margins(self, noise: Noise = "STANDARD") -> Question:
        tables = tuple(dict.fromkeys((self.by, self.pooled, *self.margins)))
        return Question(self.cohort, tables, noise)


# The demo data's codes: type 2 diabetes, COVID-19, drugs used in diabetes, BMI.
E11: Final = Event("condition", "ICD10", "E11")
COVID: Final = Event("condition", "ICD10", "U07.1")
A10: Final = Event("drug", "ATC", "A10")
OBESE: Final = Event("measurement", "LOINC", "39156-5", min_value=30, name="BMI≥30")


def gateway_cells(
    by: Breakdown, cohort: Cohort, jurisdictions: Sequence[str]
) -> list[tuple[str, ...]]:
    """Every cell key a gateway table `by` must list: the nodes' domain, and for JURISDICTION
    each jurisdiction asked."""
    values = [
        tuple(jurisdictions) if d is JURISDICTION else dimension_values(d, cohort) for d in by
    ]
    return list(itertools.product(*values))


def split_key(by: Breakdown, key: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    """A gateway cell key of `by` as (its jurisdiction or None, the node's key in the order of
    `node_table(by)`)."""
    values = dict(zip(by, key, strict=True))
    return values.get(JURISDICTION), tuple(values[d] for d in node_table(by))
