"""The query model: what a researcher can ask. Aggregate-only by construction — nothing here
can express a record-level answer, a minimum, a maximum or a free quantile."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final, Self

from pydantic import Field, field_validator, model_validator

from schema.code_ranges import range_members
from schema.codes import (
    CODE_PATTERNS,
    AgeAt,
    Dimension,
    EventDomain,
    Jurisdiction,
    MeasureKind,
    Occurrence,
    Sex,
    VisitType,
    Vocabulary,
    normalise_code,
)
from schema.dimensions import age_band_width
from schema.model import Contract
from schema.survival import INTERVAL_DAYS, MAX_FOLLOW_UP_DAYS, MAX_INTERVALS
from schema.variables import (
    AGE,
    MAX_SPAN_UNITS,
    MEASUREMENTS,
    Clipping,
    PerPerson,
    VariableSource,
    VariableSpec,
)

MAX_CRITERIA_DEPTH = 4
MAX_CODES_PER_GROUP = 32
MAX_ANY_OF = 8
MAX_BREAKDOWN_DIMENSIONS = 4
MAX_TABLES = 8
# Codes anywhere in one question: every group full, at every level of nesting.
MAX_QUESTION_CODES = 3 * MAX_CODES_PER_GROUP * MAX_ANY_OF ** (MAX_CRITERIA_DEPTH - 1)
# "At least N events": enough for any protocol's "two or more" or "at least 10 fills".
MAX_OCCURRENCES = 100
# Days of observation asked for before the age date: ten years is beyond any protocol's.
MAX_PRIOR_OBSERVATION_DAYS = 3653
MAX_POST_OBSERVATION_DAYS = MAX_PRIOR_OBSERVATION_DAYS
# Alternative events an index may start from (an ATLAS cohort's primary criteria).
MAX_INDEX_EVENTS = 8
# Criteria relative to the index: in one group, and in the whole question.
MAX_RELATIVE_CRITERIA = 16
MAX_QUESTION_RELATIVE = 64
# A relative window reaches at most a century either side of the index date.
MAX_RELATIVE_DAYS = 36_525
MIN_AGE, MAX_AGE = 0, 130
# Dates outside this range are certainly mistakes; bounding them keeps SQL predicates sane.
MIN_DATE, MAX_DATE = dt.date(1900, 1, 1), dt.date(2100, 12, 31)


class DateWindow(Contract):
    """Inclusive window on an event's start date."""

    start: dt.date | None = None
    end: dt.date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        for d in (self.start, self.end):
            if d is not None and not MIN_DATE <= d <= MAX_DATE:
                raise ValueError(f"dates must lie between {MIN_DATE} and {MAX_DATE}")
        if self.start and self.end and self.start > self.end:
            raise ValueError("window start is after its end")
        return self


class AgeRange(Contract):
    """Inclusive age range in whole years at the question's age date (`CohortQuery.age_at`)."""

    min: Annotated[int, Field(ge=MIN_AGE, le=MAX_AGE)] | None = None
    max: Annotated[int, Field(ge=MIN_AGE, le=MAX_AGE)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("age min is greater than age max")
        return self


class ValueRange(Contract):
    """Inclusive range on a measurement's numeric value (in the node's canonical unit)."""

    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("value min is greater than value max")
        return self


def _absent(value: object) -> bool:
    return value is None


def _one(value: object) -> bool:
    return value == 1


def _false(value: object) -> bool:
    return value is False


def _empty(value: object) -> bool:
    return value == []


class Code(Contract):
    """A `(vocabulary, code)` pair. With `descendants`, the code's whole subtree matches.
    With `to`, the code is the first of a range ending at `to`, inclusive (ICD-10 and ATC
    only: `schema.code_ranges`), which matches as each of its codes would."""

    vocabulary: Vocabulary
    code: Annotated[str, Field(min_length=1, max_length=32)]
    descendants: bool = True
    # Left out of dumps when absent: a code's wire form and question digest
    # (`connectors.canonical`) stay what they were before ranges.
    to: Annotated[str | None, Field(min_length=1, max_length=32, exclude_if=_absent)] = None

    @model_validator(mode="before")
    @classmethod
    def _normalised(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("code"), str):
            try:
                vocabulary = Vocabulary(str(data.get("vocabulary")))
            except ValueError:
                return data  # the field's own validation says what is wrong
            normalised = {**data, "code": normalise_code(vocabulary, data["code"])}
            if isinstance(data.get("to"), str):
                normalised["to"] = normalise_code(vocabulary, data["to"])
            return normalised
        return data

    @model_validator(mode="after")
    def _well_formed(self) -> Self:
        if not CODE_PATTERNS[self.vocabulary].fullmatch(self.code):
            # Errors never quote a value (the code is the researcher's input).
            raise ValueError(f"the code is not a well-formed {self.vocabulary.value} code")
        if self.to is not None:
            range_members(self.vocabulary, self.code, self.to)
        return self


class EventCriterion(Code):
    """A person matches if they have at least `at_least` events (one by default) with this code
    in the window; with `exclude`, if they do not (with one, if they have no such event)."""

    window: DateWindow | None = None
    # Left out of dumps at their defaults, as `Code.to`: the criteria of before keep their digests.
    at_least: Annotated[int, Field(ge=1, le=MAX_OCCURRENCES, exclude_if=_one, strict=True)] = 1
    exclude: Annotated[bool, Field(exclude_if=_false)] = False


class MeasurementCriterion(EventCriterion):
    """A measurement event, optionally restricted to a value range."""

    value: ValueRange | None = None


class DeathCriterion(Contract):
    """A person matches if they died (OMOP `death`) within the window, or ever without one;
    with `exclude`, if they did not."""

    window: DateWindow | None = None
    exclude: bool = False


class RelativeWindow(Contract):
    """Inclusive window of days relative to the index date: negative before it, 0 the index
    date itself, positive after it (`-365..-1`: the year before; `0..28`: the index date and
    the 28 days after it)."""

    start_days: Annotated[int, Field(ge=-MAX_RELATIVE_DAYS, le=MAX_RELATIVE_DAYS, strict=True)]
    end_days: Annotated[int, Field(ge=-MAX_RELATIVE_DAYS, le=MAX_RELATIVE_DAYS, strict=True)]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start_days > self.end_days:
            raise ValueError("a relative window starts after it ends")
        return self


# The domains whose events are named by codes; a visit is named by its type, a death by itself.
CODED_DOMAINS: Final = frozenset({EventDomain.CONDITION, EventDomain.DRUG, EventDomain.MEASUREMENT})


class EventSpec(Contract):
    """The events of one domain that qualify: for a coded domain, those whose concept (standard
    or source) is in the concept set `codes` minus the concept set `excluded` (each code with
    its descendants unless it says otherwise); for VISIT, visits of the type `visit`; for
    DEATH, the person's death. `visit` on a coded domain keeps only the events recorded at a
    visit of that type (by `visit_occurrence_id`); `value` keeps only measurements in the
    range; `window` only events whose date lies in it (a calendar window)."""

    domain: EventDomain
    codes: Annotated[list[Code], Field(max_length=MAX_CODES_PER_GROUP)] = []
    excluded: Annotated[list[Code], Field(max_length=MAX_CODES_PER_GROUP)] = []
    visit: VisitType | None = None
    value: ValueRange | None = None
    window: DateWindow | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        domain = self.domain.value
        if self.domain in CODED_DOMAINS:
            if not self.codes:
                raise ValueError(f"a {domain} event needs at least one code")
        elif self.codes or self.excluded:
            raise ValueError(f"a {domain} event takes no codes")
        if self.domain is EventDomain.VISIT and self.visit is None:
            raise ValueError("a VISIT event needs its visit type")
        if self.domain is EventDomain.DEATH and self.visit is not None:
            raise ValueError("a DEATH event belongs to no visit")
        if self.value is not None and self.domain is not EventDomain.MEASUREMENT:
            raise ValueError("only a MEASUREMENT event takes a value range")
        return self


class RelativeCriterion(Contract):
    """A person's index date qualifies if they have from `at_least` (one by default) to
    `at_most` (no bound by default) events of `event` whose dates lie in `window`, relative to
    that index date; with `exclude`, if they do not (with the defaults: if they have no such
    event in the window). Only in a question with an index (`CohortQuery.index`)."""

    event: EventSpec
    window: RelativeWindow
    at_least: Annotated[int, Field(ge=1, le=MAX_OCCURRENCES, strict=True)] = 1
    at_most: Annotated[int | None, Field(ge=1, le=MAX_OCCURRENCES, strict=True)] = None
    exclude: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.at_most is not None and self.at_most < self.at_least:
            raise ValueError("the most events asked for are fewer than the least")
        return self


class IndexEvent(Contract):
    """What dates each person's entry into the cohort: events of any of `events` (OR).

    A qualifying event matches one of `events`, has its date in `window`, and lies in an
    observation period that began at least `prior_observation_days` before it and ends at
    least `post_observation_days` after it. With `occurrence` FIRST, each person's earliest
    qualifying event is their only candidate index date; with ALL, every qualifying event is
    one. A person belongs to the cohort if one candidate satisfies the criteria (whose
    relative criteria, ages at the index event and observation before the age date are taken
    at that candidate's date); their index date is the earliest candidate that does.
    """

    events: Annotated[list[EventSpec], Field(min_length=1, max_length=MAX_INDEX_EVENTS)]
    occurrence: Occurrence = Occurrence.FIRST
    window: DateWindow | None = None
    prior_observation_days: Annotated[
        int | None, Field(ge=0, le=MAX_PRIOR_OBSERVATION_DAYS, strict=True)
    ] = None
    post_observation_days: Annotated[
        int | None, Field(ge=0, le=MAX_POST_OBSERVATION_DAYS, strict=True)
    ] = None


class Criteria(Contract):
    """A cohort definition. Every field given must hold (AND); `any_of` holds when at least one
    of its groups holds (OR). Negation is only of an event criterion (`EventCriterion.exclude`:
    no such event), as protocols exclude; excluding a small set from a large one is the
    classic differencing attack, which the noise and the ledger charging every person counted
    answer (README, "How your numbers are protected"), not a refusal."""

    sex: Sex | None = None
    age: AgeRange | None = None
    # At least this many days of observation before the date ages are taken at (each person's
    # index event, or the reference date: `CohortQuery.age_basis`), in one observation period
    # that covers it. Left out of dumps when absent (the criteria of before keep their digests).
    prior_observation_days: Annotated[
        int | None,
        Field(ge=0, le=MAX_PRIOR_OBSERVATION_DAYS, strict=True, exclude_if=_absent),
    ] = None
    conditions: Annotated[list[EventCriterion], Field(max_length=MAX_CODES_PER_GROUP)] = []
    drugs: Annotated[list[EventCriterion], Field(max_length=MAX_CODES_PER_GROUP)] = []
    measurements: Annotated[list[MeasurementCriterion], Field(max_length=MAX_CODES_PER_GROUP)] = []
    any_of: Annotated[list[Criteria], Field(max_length=MAX_ANY_OF)] = []
    death: Annotated[DeathCriterion | None, Field(exclude_if=_absent)] = None
    # Relative to each candidate index date (`CohortQuery.index`); left out of dumps when
    # there are none.
    relative: Annotated[
        list[RelativeCriterion], Field(max_length=MAX_RELATIVE_CRITERIA, exclude_if=_empty)
    ] = []

    @model_validator(mode="after")
    def _bounded_depth(self) -> Self:
        if self.depth() > MAX_CRITERIA_DEPTH:
            raise ValueError(f"criteria nest deeper than {MAX_CRITERIA_DEPTH} levels")
        return self

    def depth(self) -> int:
        return 1 + max((group.depth() for group in self.any_of), default=0)

    def relative_count(self) -> int:
        """How many relative criteria the criteria hold, at every level."""
        return len(self.relative) + sum(group.relative_count() for group in self.any_of)

    def index_event(self) -> EventCriterion | None:
        """The criterion whose first event dates a person (for CALENDAR_YEAR): the first
        condition, else the first drug, else the first measurement, at the top level, that is
        not an exclusion (a person excluded for an event has none to be dated by)."""
        for events in (self.conditions, self.drugs, self.measurements):
            for event in events:
                if not event.exclude:
                    return event
        return None

    def age_bounds(self) -> tuple[int, int]:
        """The ages the criteria admit, inclusive: open ends at the query model's bounds."""
        age = self.age
        low = MIN_AGE if age is None or age.min is None else age.min
        high = MAX_AGE if age is None or age.max is None else age.max
        return low, high

    def index_years(self) -> tuple[int, int]:
        """The years the index event's window spans, inclusive: open ends (and criteria
        without an index event) at the query model's date bounds."""
        event = self.index_event()
        window = None if event is None else event.window
        first = MIN_DATE if window is None or window.start is None else window.start
        last = MAX_DATE if window is None or window.end is None else window.end
        return first.year, last.year


# An incidence rate's follow-up window reaches at most ten years past the index date.
MAX_RATE_FOLLOW_UP_DAYS = 3653


class Outcome(Contract):
    """What an incidence rate counts over each person's follow-up from their index date
    (`CohortQuery.index`): persons are at risk from `window.start_days` after it (0: the index
    date itself) and leave at the earliest of their first `event` in the window (an event,
    counted on its day), the window's last day (`window.end_days`), the end of the observation
    period covering the index date, and their death. A person at risk every day contributes
    `days` (the window's length): the most one person can add to a cell's person-time, the
    public maximum that clips it. Days before the window (`start_days` 0 or more) are not at
    risk; a person not observed at their index date is at risk for no day."""

    event: EventSpec
    window: RelativeWindow

    @model_validator(mode="after")
    def _forward(self) -> Self:
        if self.window.start_days < 0:
            raise ValueError("a follow-up starts on the index date or after it")
        if self.window.end_days >= MAX_RATE_FOLLOW_UP_DAYS:
            raise ValueError(f"a follow-up window ends within {MAX_RATE_FOLLOW_UP_DAYS} days")
        return self

    @property
    def days(self) -> int:
        """The window's length in days, both ends included: the most days one person is at
        risk (PERSON_DAYS' sensitivity)."""
        return self.window.end_days - self.window.start_days + 1


# An incidence rate's measures: asked together with the count of persons, or not at all.
RATES: Final = (MeasureKind.OUTCOME_EVENTS, MeasureKind.PERSON_DAYS)


class Measure(Contract):
    kind: MeasureKind = MeasureKind.PERSON_COUNT


# The measures of a numeric variable's summary: asked together or not at all.
STATISTICS: Final = (MeasureKind.VALUE_N, MeasureKind.VALUE_SUM, MeasureKind.VALUE_SUM_SQUARES)


class NumericVariable(Contract):
    """A numeric variable, one value per cohort person (`schema.variables`): their age at the
    question's age date, or a measurement's value (`code`, LOINC, in the node's canonical unit)
    taken per person as the first, last or mean of their measurements in `window` (a calendar
    window; every measurement without one) and, with an explicit index (`CohortQuery.index`),
    in `index_window` (days relative to each person's index date: `-365..0`, the year up to
    it). Values are clipped to `lo`..`hi`, public bounds
    within the registry's (its own when not given). Persons without a value are in no sum and
    not in VALUE_N. This is the variable's one definition: the compiler computes it from
    here (`connectors.compiler.cohort`), the canonical digest names it (the whole model)."""

    source: VariableSource
    code: Code | None = None
    per_person: PerPerson = PerPerson.FIRST
    window: DateWindow | None = None
    # Relative to each person's index date; left out of dumps when absent (the variables of
    # before keep their digests).
    index_window: Annotated[RelativeWindow | None, Field(exclude_if=_absent)] = None
    lo: float | None = Field(default=None, allow_inf_nan=False)
    hi: float | None = Field(default=None, allow_inf_nan=False)
    # The width of a histogram's bins (a breakdown by VALUE_BIN), one the registry allows;
    # left out of dumps when absent.
    bin_width: Annotated[
        float | None, Field(default=None, allow_inf_nan=False, exclude_if=_absent)
    ] = None

    @model_validator(mode="after")
    def _well_defined(self) -> Self:
        if self.source is VariableSource.AGE:
            if self.code is not None or self.window is not None or self.index_window is not None:
                raise ValueError("age takes no code or window")
            if self.per_person is not PerPerson.FIRST:
                raise ValueError("age is one value per person: no perPerson")
        else:
            if self.code is None or self.code.vocabulary is not Vocabulary.LOINC:
                raise ValueError("a measurement variable names a LOINC code")
            if self.code.to is not None:
                raise ValueError("a measurement variable names one code, not a range")
            if self.code.code not in MEASUREMENTS:
                raise ValueError(
                    "this LOINC code has no registered bounds: "
                    f"one of {', '.join(sorted(MEASUREMENTS))}"
                )
        spec = self.spec
        lo = spec.lo if self.lo is None else self.lo
        hi = spec.hi if self.hi is None else self.hi
        if not spec.lo <= lo < hi <= spec.hi:
            raise ValueError(
                f"bounds of {spec.name} lie within {spec.lo:g}..{spec.hi:g}, lo below hi"
            )
        clipping = self.clipping
        if clipping.hi - clipping.lo > MAX_SPAN_UNITS:
            raise ValueError(
                f"bounds of {spec.name} span at most {MAX_SPAN_UNITS} units of "
                f"{spec.resolution:g} {spec.unit}"
            )
        if self.bin_width is not None:
            if self.bin_width not in spec.bin_widths:
                widths = ", ".join(f"{w:g}" for w in spec.bin_widths)
                raise ValueError(f"bins of {spec.name} are {widths} {spec.unit} wide")
            if (clipping.hi - clipping.lo) % self.bin_units:
                raise ValueError("the bounds span a whole number of bins")
        return self

    @property
    def bin_units(self) -> int:
        """The bins' width in units of the resolution (0 without bins)."""
        return 0 if self.bin_width is None else self.spec.units(self.bin_width)

    def bin_edges(self) -> tuple[int, ...]:
        """The bins' lower edges in units, from the lower bound; the last bin holds the
        upper bound too (clipped values at it)."""
        if self.bin_width is None:
            return ()
        clipping = self.clipping
        return tuple(range(clipping.lo, clipping.hi, self.bin_units))

    @property
    def spec(self) -> VariableSpec:
        if self.source is VariableSource.AGE or self.code is None:
            return AGE
        return MEASUREMENTS[self.code.code]

    @property
    def clipping(self) -> Clipping:
        """The bounds in whole units of the resolution (refused when not on its grid)."""
        spec = self.spec
        lo = spec.lo if self.lo is None else self.lo
        hi = spec.hi if self.hi is None else self.hi
        return Clipping(lo=spec.units(lo), hi=spec.units(hi), decimals=spec.decimals)


class Survival(Contract):
    """Follow-up from each person's index date (`CohortQuery.index`) to their first `outcome`
    event on or after it (a death, a diagnosis, …), censored at the end of the observation
    period holding the index date, for at most `max_days` in intervals of `interval_days`
    (public widths: `schema.survival`). Asked with a table by FOLLOW_UP."""

    outcome: EventSpec
    interval_days: Annotated[int, Field(strict=True)]
    max_days: Annotated[int, Field(ge=1, le=MAX_FOLLOW_UP_DAYS, strict=True)]

    @model_validator(mode="after")
    def _public_intervals(self) -> Self:
        if self.interval_days not in INTERVAL_DAYS:
            widths = ", ".join(str(w) for w in INTERVAL_DAYS)
            raise ValueError(f"intervals are {widths} days wide")
        if self.max_days % self.interval_days:
            raise ValueError("the follow-up spans a whole number of intervals")
        if self.max_days // self.interval_days > MAX_INTERVALS:
            raise ValueError(f"a follow-up has at most {MAX_INTERVALS} intervals")
        if self.outcome.window is not None:
            raise ValueError("an outcome takes no calendar window: follow-up bounds it")
        return self


# The default measures, shared: a frozen model needs no copy of its own (pydantic deep-copies a
# plain default for every instance, twice a question at the gateway).
_COUNT_ONLY: Final = (Measure(),)


Breakdown = tuple[Dimension, ...]


class CohortQuery(Contract):
    """One statistical question: a cohort, the tables to break it down into, the measures.

    `tables` lists breakdowns; the empty tuple is the overall total, which is always computed.
    `reference_date` bounds the population (persons born by its year) and dates ages when they
    are taken at it; `age_at` says when ages are taken (`age_basis`: as given, else at the index
    event when there is one, else at the reference date).
    `index` is the explicit index event (`IndexEvent`), which relative criteria need; without
    it, the index event is the criteria's first top-level event criterion
    (`Criteria.index_event`), as before it existed.
    """

    criteria: Criteria
    reference_date: dt.date
    age_at: AgeAt | None = None
    # Left out of dumps when absent: the questions of before keep their digests.
    index: Annotated[IndexEvent | None, Field(exclude_if=_absent)] = None
    tables: Annotated[list[Breakdown], Field(max_length=MAX_TABLES)] = [()]
    # At most a count, a variable's three statistics and a rate's events and days.
    measures: Annotated[list[Measure], Field(min_length=1, max_length=6)] = Field(
        default_factory=lambda: list(_COUNT_ONLY)
    )
    # The variable the VALUE_* measures are of; left out of dumps when absent (the questions
    # of before keep their digests).
    variable: Annotated[NumericVariable | None, Field(exclude_if=_absent)] = None
    # The outcome the RATES measures count over each person's follow-up; left out of dumps
    # when absent.
    outcome: Annotated[Outcome | None, Field(exclude_if=_absent)] = None
    # The follow-up a table by FOLLOW_UP counts exits of; left out of dumps when absent.
    survival: Annotated[Survival | None, Field(exclude_if=_absent)] = None

    @field_validator("tables")
    @classmethod
    def _valid_tables(cls, tables: list[Breakdown]) -> list[Breakdown]:
        normalised: list[Breakdown] = [()]
        for table in tables:
            if len(table) > MAX_BREAKDOWN_DIMENSIONS:
                raise ValueError(f"a breakdown has at most {MAX_BREAKDOWN_DIMENSIONS} dimensions")
            if len(set(table)) != len(table):
                raise ValueError("a breakdown repeats a dimension")
            if sum(1 for d in table if age_band_width(d)) > 1:
                raise ValueError("a breakdown has at most one age band")
            if table not in normalised:
                normalised.append(table)
        return normalised

    @field_validator("reference_date")
    @classmethod
    def _sane_date(cls, value: dt.date) -> dt.date:
        if not MIN_DATE <= value <= MAX_DATE:
            raise ValueError(f"reference date must lie between {MIN_DATE} and {MAX_DATE}")
        return value

    @model_validator(mode="after")
    def _age_dated(self) -> Self:
        if self.age_at is AgeAt.INDEX_EVENT and not self.dated:
            raise ValueError(
                "ages at the index event need an index, or a condition, drug or measurement, "
                "not an exclusion, at the top level of the criteria"
            )
        return self

    @model_validator(mode="after")
    def _statistics_of_a_variable(self) -> Self:
        kinds = {m.kind for m in self.measures}
        statistics = kinds & set(STATISTICS)
        if statistics and statistics != set(STATISTICS):
            raise ValueError(
                "a variable's statistics are asked together: VALUE_N, VALUE_SUM, VALUE_SUM_SQUARES"
            )
        if statistics and self.variable is None:
            raise ValueError("statistics of a variable need the variable")
        binned = any(Dimension.VALUE_BIN in table for table in self.tables)
        if self.variable is not None and not statistics and not binned:
            raise ValueError("a variable is given for its statistics or its histogram: ask one")
        if binned and (self.variable is None or self.variable.bin_width is None):
            raise ValueError("a breakdown by VALUE_BIN needs a variable with a binWidth")
        relative = self.variable is not None and self.variable.index_window is not None
        if relative and self.index is None:
            raise ValueError("a variable's indexWindow is relative to an index event (index)")
        return self

    @model_validator(mode="after")
    def _rates_of_an_outcome(self) -> Self:
        kinds = {m.kind for m in self.measures}
        rates = kinds & set(RATES)
        # A variable's statistics may be asked beside (its own validator holds them).
        if rates and kinds - set(STATISTICS) != {MeasureKind.PERSON_COUNT, *RATES}:
            raise ValueError(
                "an incidence rate's measures are asked together with the count of persons: "
                "PERSON_COUNT, OUTCOME_EVENTS, PERSON_DAYS"
            )
        if rates and self.outcome is None:
            raise ValueError("an incidence rate needs its outcome")
        if self.outcome is not None and not rates:
            raise ValueError("an outcome is given for its incidence rate: ask it")
        if self.outcome is not None and self.index is None:
            raise ValueError("an incidence rate's follow-up starts at an index event (index)")
        return self

    @model_validator(mode="after")
    def _follow_up(self) -> Self:
        followed = any(Dimension.FOLLOW_UP in table for table in self.tables)
        if followed and self.survival is None:
            raise ValueError("a breakdown by FOLLOW_UP needs survival")
        if self.survival is None:
            return self
        if not followed:
            raise ValueError("survival is asked with a breakdown by FOLLOW_UP")
        if self.index is None:
            raise ValueError("survival is followed from an index event (index)")
        if self.variable is not None or {m.kind for m in self.measures} != {
            MeasureKind.PERSON_COUNT
        }:
            raise ValueError("survival counts persons: no variable or other measure with it")
        return self

    @model_validator(mode="after")
    def _relative_to_an_index(self) -> Self:
        count = self.criteria.relative_count()
        if count and self.index is None:
            raise ValueError("relative criteria need an index event (index)")
        if count > MAX_QUESTION_RELATIVE:
            raise ValueError(f"a question has at most {MAX_QUESTION_RELATIVE} relative criteria")
        return self

    @property
    def dated(self) -> bool:
        """Whether every person of the cohort has an index date: an explicit index, or an
        event criterion at the top level of the criteria."""
        return self.index is not None or self.criteria.index_event() is not None

    @property
    def age_basis(self) -> AgeAt:
        """When ages are taken: as asked, else at the index event if there is one."""
        if self.age_at is not None:
            return self.age_at
        if self.dated:
            return AgeAt.INDEX_EVENT
        return AgeAt.REFERENCE_DATE

    def index_years(self) -> tuple[int, int]:
        """The years index dates may fall in, inclusive: the explicit index's window, else
        the criteria's index event's (`Criteria.index_years`)."""
        if self.index is None:
            return self.criteria.index_years()
        window = self.index.window
        first = MIN_DATE if window is None or window.start is None else window.start
        last = MAX_DATE if window is None or window.end is None else window.end
        return first.year, last.year


class FederatedQuery(Contract):
    """A cohort query addressed to several jurisdictions under one approved data request."""

    request_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
    jurisdictions: Annotated[list[Jurisdiction], Field(min_length=1, max_length=32)]
    query: CohortQuery

    @field_validator("jurisdictions")
    @classmethod
    def _distinct(cls, values: list[Jurisdiction]) -> list[Jurisdiction]:
        return sorted(set(values), key=list(Jurisdiction).index)
