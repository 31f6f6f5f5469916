"""GraphQL input types and their translation into the query model's plain data.

This only renames fields: planning checks the codes (`gateway.planner.check_codes`) and the
query model (`schema.query`) does the rest of the validating.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import strawberry

from gateway.graphql.enums import (
    EventDomain,
    Occurrence,
    PerPerson,
    Sex,
    VariableSource,
    VisitType,
    Vocabulary,
)
from schema.query import (
    MAX_CODES_PER_GROUP,
    MAX_INDEX_EVENTS,
    MAX_OCCURRENCES,
    MAX_POST_OBSERVATION_DAYS,
    MAX_PRIOR_OBSERVATION_DAYS,
    MAX_QUESTION_RELATIVE,
    MAX_RELATIVE_CRITERIA,
    MAX_RELATIVE_DAYS,
)
from schema.variables import AGE, MEASUREMENTS


@strawberry.input(description="Inclusive window on an event's start date.")
class DateWindowInput:
    start: dt.date | None = strawberry.UNSET
    end: dt.date | None = strawberry.UNSET


@strawberry.input(description="Inclusive age range in whole years at the age date (see ageAt).")
class AgeRangeInput:
    min: int | None = strawberry.UNSET
    max: int | None = strawberry.UNSET


@strawberry.input(description="Inclusive range on a measurement's value (canonical unit).")
class ValueRangeInput:
    min: float | None = strawberry.UNSET
    max: float | None = strawberry.UNSET


RANGE_END = (
    "The last code of a range starting at code, inclusive (ICD10 and ATC only: F70 to F79, "
    "A10BA to A10BX): the codes of one level under one parent, at most 512."
)


AT_LEAST = f"How many such events a person has at least (1 to {MAX_OCCURRENCES}; default 1)."
EXCLUDE = (
    "Exclusion: the person matches if they do NOT have the events (with atLeast 1, the "
    "default: no such event in the window)."
)


@strawberry.input(
    description="At least one event (or atLeast events) with this code (or a descendant; or a "
    "code of the range code to `to`) in the window; none with exclude."
)
class EventInput:
    vocabulary: Vocabulary
    code: str
    to: str | None = strawberry.field(default=strawberry.UNSET, description=RANGE_END)
    descendants: bool = True
    window: DateWindowInput | None = strawberry.UNSET
    at_least: int = strawberry.field(default=1, description=AT_LEAST)
    exclude: bool = strawberry.field(default=False, description=EXCLUDE)


@strawberry.input(description="A measurement event, optionally restricted to a value range.")
class MeasurementInput:
    vocabulary: Vocabulary
    code: str
    to: str | None = strawberry.field(default=strawberry.UNSET, description=RANGE_END)
    descendants: bool = True
    window: DateWindowInput | None = strawberry.UNSET
    at_least: int = strawberry.field(default=1, description=AT_LEAST)
    exclude: bool = strawberry.field(default=False, description=EXCLUDE)
    value: ValueRangeInput | None = strawberry.UNSET


@strawberry.input(
    description="Death (OMOP death) within the window, or ever without one; none with exclude."
)
class DeathInput:
    window: DateWindowInput | None = strawberry.UNSET
    exclude: bool = False


@strawberry.input(
    description="A code, as a concept set or a look-up names it (with its descendants by default)."
)
class CodeInput:
    vocabulary: Vocabulary
    code: str
    to: str | None = strawberry.field(default=strawberry.UNSET, description=RANGE_END)
    descendants: bool = True


@strawberry.input(
    description="The events of one domain that qualify. For CONDITION, DRUG and MEASUREMENT: "
    "those whose concept (standard or source) is one of `codes`' and none of `excluded`' "
    f"(a concept set; at most {MAX_CODES_PER_GROUP} codes each). For VISIT: visits of the "
    "type `visit`. For DEATH: the person's death. `visit` on a coded domain keeps the events "
    "recorded at a visit of that type; `value` (MEASUREMENT) the values in range; `window` "
    "the events whose date lies in it."
)
class EventSpecInput:
    domain: EventDomain
    codes: list[CodeInput] | None = strawberry.UNSET
    excluded: list[CodeInput] | None = strawberry.UNSET
    visit: VisitType | None = strawberry.UNSET
    value: ValueRangeInput | None = strawberry.UNSET
    window: DateWindowInput | None = strawberry.UNSET


@strawberry.input(
    description="Inclusive window of days around the index date: negative before it, 0 the "
    f"index date, positive after it (each -{MAX_RELATIVE_DAYS} to {MAX_RELATIVE_DAYS}, start "
    "not after end). -365 to -1: the year before; 0 to 28: the index date and 28 days after."
)
class RelativeWindowInput:
    start_days: int
    end_days: int


@strawberry.input(
    description="From atLeast (default 1) to atMost (default: no bound) events of `event` in "
    "the window around the index date; none of them (or not that many) with exclude. Needs "
    f"an index. At most {MAX_RELATIVE_CRITERIA} in one criteria group, "
    f"{MAX_QUESTION_RELATIVE} in a question."
)
class RelativeCriterionInput:
    event: EventSpecInput
    window: RelativeWindowInput
    at_least: int = strawberry.field(default=1, description=AT_LEAST)
    at_most: int | None = strawberry.field(
        default=strawberry.UNSET, description=f"At most this many (1 to {MAX_OCCURRENCES})."
    )
    exclude: bool = strawberry.field(
        default=False,
        description="Exclusion: the index date qualifies if the person does NOT have the "
        "events in the window (with the default counts: none).",
    )


@strawberry.input(
    description="The index event: what dates each person's entry into the cohort. A "
    f"qualifying event matches one of `events` (1 to {MAX_INDEX_EVENTS}, ORed), has its date "
    "in `window`, and lies in an observation period that began at least priorObservationDays "
    "before it and ends at least postObservationDays after it. FIRST: each person's earliest "
    "qualifying event is their only candidate; ALL: every one is. A person belongs to the "
    "cohort if a candidate satisfies the criteria (relative criteria and ages taken at it); "
    "their index date is the earliest that does."
)
class IndexEventInput:
    events: list[EventSpecInput]
    occurrence: Occurrence = Occurrence.FIRST
    window: DateWindowInput | None = strawberry.UNSET
    prior_observation_days: int | None = strawberry.field(
        default=strawberry.UNSET,
        description=f"Days observed before the index date (0 to {MAX_PRIOR_OBSERVATION_DAYS}).",
    )
    post_observation_days: int | None = strawberry.field(
        default=strawberry.UNSET,
        description=f"Days observed after the index date (0 to {MAX_POST_OBSERVATION_DAYS}).",
    )


@strawberry.input(
    description="A cohort: every field given must hold (AND); anyOf holds when one group holds."
)
class CriteriaInput:
    sex: Sex | None = strawberry.UNSET
    age: AgeRangeInput | None = strawberry.UNSET
    prior_observation_days: int | None = strawberry.field(
        default=strawberry.UNSET,
        description="At least this many days of observation (0 to "
        f"{MAX_PRIOR_OBSERVATION_DAYS}) before the date ages are taken at (see ageAt: each "
        "person's index event, or the reference date), in one observation period covering it.",
    )
    conditions: list[EventInput] | None = strawberry.UNSET
    drugs: list[EventInput] | None = strawberry.UNSET
    measurements: list[MeasurementInput] | None = strawberry.UNSET
    any_of: list[CriteriaInput] | None = strawberry.UNSET
    death: DeathInput | None = strawberry.UNSET
    relative: list[RelativeCriterionInput] | None = strawberry.field(
        default=strawberry.UNSET,
        description="Criteria relative to each candidate index date (needs the index).",
    )


_REGISTERED = "; ".join(
    [f"AGE {AGE.lo:g}-{AGE.hi:g} {AGE.unit}"]
    + [
        f"LOINC {code} ({spec.name}) {spec.lo:g}-{spec.hi:g} {spec.unit} by {spec.resolution:g}"
        for code, spec in MEASUREMENTS.items()
    ]
)


_WIDTHS = "; ".join(
    [f"AGE {', '.join(f'{w:g}' for w in AGE.bin_widths)}"]
    + [
        f"LOINC {code} {', '.join(f'{w:g}' for w in spec.bin_widths)}"
        for code, spec in MEASUREMENTS.items()
    ]
)


@strawberry.input(
    description="A numeric variable to summarise in every cell (n, mean, variance, sd, a 95% "
    "confidence interval): a person's age, or a registered LOINC measurement's value per "
    "person (in the node's canonical unit). Values are clipped to public bounds, lo to hi, "
    "within the variable's registered ones (its own when not given), and counted at its "
    f"resolution. Registered: {_REGISTERED}; histogram bin widths: {_WIDTHS}."
)
class VariableInput:
    source: VariableSource
    code: str | None = strawberry.field(
        default=strawberry.UNSET, description="The LOINC code of a MEASUREMENT variable."
    )
    per_person: PerPerson = PerPerson.FIRST
    window: DateWindowInput | None = strawberry.field(
        default=strawberry.UNSET,
        description="The calendar window of the measurements (every one without it).",
    )
    index_window: RelativeWindowInput | None = strawberry.field(
        default=strawberry.UNSET,
        description="The measurements' days around each person's index date (needs an "
        "index): -365 to 0, the year up to it.",
    )
    lo: float | None = strawberry.field(default=strawberry.UNSET, description="Lower bound.")
    hi: float | None = strawberry.field(default=strawberry.UNSET, description="Upper bound.")
    bin_width: float | None = strawberry.field(
        default=strawberry.UNSET,
        description="The width of a histogram's bins (a breakdown by VALUE_BIN), one its "
        "registry allows (age: 5, 10 or 20 years); the bounds span a whole number of bins.",
    )


def variable_data(variable: VariableInput) -> dict[str, Any]:
    """The query model's `NumericVariable` as plain data."""
    data: dict[str, Any] = {"source": variable.source, "per_person": variable.per_person}
    if _given(variable.code):
        data["code"] = {"vocabulary": Vocabulary.LOINC, "code": variable.code}
    if variable.window:
        data["window"] = _fields(variable.window, "start", "end")
    if variable.index_window:
        data["index_window"] = _fields(variable.index_window, "start_days", "end_days")
    data |= _fields(variable, "lo", "hi", "bin_width")
    return data


def criteria_data(criteria: CriteriaInput) -> dict[str, Any]:
    """The query model's `Criteria` as plain data, codes as written."""
    data: dict[str, Any] = {}
    if _given(criteria.sex):
        data["sex"] = criteria.sex
    if criteria.age:
        data["age"] = _fields(criteria.age, "min", "max")
    if _given(criteria.prior_observation_days):
        data["prior_observation_days"] = criteria.prior_observation_days
    groups: dict[str, Sequence[EventInput | MeasurementInput] | None] = {
        "conditions": criteria.conditions,
        "drugs": criteria.drugs,
        "measurements": criteria.measurements,
    }
    for name, events in groups.items():
        if events:
            data[name] = [_event(e) for e in events]
    if criteria.any_of:
        data["any_of"] = [criteria_data(group) for group in criteria.any_of]
    if criteria.death:
        data["death"] = _death(criteria.death)
    if criteria.relative:
        data["relative"] = [_relative(r) for r in criteria.relative]
    return data


def index_data(index: IndexEventInput) -> dict[str, Any]:
    """The query model's `IndexEvent` as plain data, codes as written."""
    data: dict[str, Any] = {
        "events": [_spec(e) for e in index.events],
        "occurrence": index.occurrence,
    }
    if index.window:
        data["window"] = _fields(index.window, "start", "end")
    data.update(_fields(index, "prior_observation_days", "post_observation_days"))
    return data


def spec_data(spec: EventSpecInput) -> dict[str, Any]:
    """The query model's `EventSpec` as plain data, codes as written."""
    return _spec(spec)


def _spec(spec: EventSpecInput) -> dict[str, Any]:
    data: dict[str, Any] = {"domain": spec.domain}
    for name in ("codes", "excluded"):
        codes: list[CodeInput] | None = getattr(spec, name)
        if codes:
            data[name] = [_code(c) for c in codes]
    if _given(spec.visit):
        data["visit"] = spec.visit
    if spec.value:
        data["value"] = _fields(spec.value, "min", "max")
    if spec.window:
        data["window"] = _fields(spec.window, "start", "end")
    return data


def _code(code: CodeInput) -> dict[str, Any]:
    data: dict[str, Any] = {
        "vocabulary": code.vocabulary,
        "code": code.code,
        "descendants": code.descendants,
    }
    if _given(code.to):
        data["to"] = code.to
    return data


def _relative(relative: RelativeCriterionInput) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event": _spec(relative.event),
        "window": {
            "start_days": relative.window.start_days,
            "end_days": relative.window.end_days,
        },
        "at_least": relative.at_least,
        "exclude": relative.exclude,
    }
    if _given(relative.at_most):
        data["at_most"] = relative.at_most
    return data


def _death(death: DeathInput) -> dict[str, Any]:
    data: dict[str, Any] = {"exclude": death.exclude}
    if death.window:
        data["window"] = _fields(death.window, "start", "end")
    return data


def _event(event: EventInput | MeasurementInput) -> dict[str, Any]:
    data: dict[str, Any] = {
        "vocabulary": event.vocabulary,
        "code": event.code,
        "descendants": event.descendants,
    }
    if _given(event.to):
        data["to"] = event.to
    if event.at_least != 1:
        data["at_least"] = event.at_least
    if event.exclude:
        data["exclude"] = True
    if event.window:
        data["window"] = _fields(event.window, "start", "end")
    if isinstance(event, MeasurementInput) and event.value:
        data["value"] = _fields(event.value, "min", "max")
    return data


def _given(value: object) -> bool:
    return value is not None and value is not strawberry.UNSET


def _fields(obj: object, *names: str) -> dict[str, Any]:
    return {n: v for n in names if _given(v := getattr(obj, n))}
