"""The result model: every released number has a value, a status and the reasons for it."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from schema.codes import WITHHELD, Dimension, Jurisdiction, ValueStatus
from schema.model import Contract


class Reason(Contract):
    """Why a number is what it is, or why a jurisdiction refused: a stable rule id, the
    jurisdiction whose rule it is, a sentence for humans, and the legal provision or policy
    source behind the rule. Never carries the value it explains."""

    rule: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{1,63}$")]
    jurisdiction: Jurisdiction | None = None
    message: Annotated[str, Field(max_length=512)] = ""
    article: Annotated[str, Field(max_length=512)] | None = None


class Value(Contract):
    """A released number. A withheld value (LOW or SUPPRESSED) is `None`, never a hint;
    `bound` is the largest distance from the truth that rounding may have introduced, `sd`
    the standard deviation of the noise added (unbiased, so the truth is the value give or
    take about `sd`). A pooled number lists its `contributors`, the jurisdictions whose
    counts are in it (None for a country's own number)."""

    # A count is at least zero (its measure's minimum, `schema.measures`, checked on the
    # wire); a noisy sum of centred units may be negative.
    value: int | None
    status: ValueStatus
    # A factory, not `= []`: pydantic deep-copies a mutable default for every instance, and
    # the gateway validates and builds a Value for every cell of every node (-0.6 us each).
    reasons: list[Reason] = Field(default_factory=list)
    bound: Annotated[float, Field(ge=0)] | None = None
    sd: Annotated[float, Field(ge=0, le=1e9)] | None = None
    contributors: list[Jurisdiction] | None = None

    @model_validator(mode="after")
    def _withheld_is_null(self) -> Self:
        if (self.status in WITHHELD) != (self.value is None):
            raise ValueError("a value is null exactly when it is withheld (LOW or SUPPRESSED)")
        return self

    @classmethod
    def exact(cls, value: int) -> Value:
        return cls(value=value, status=ValueStatus.EXACT)

    @classmethod
    def suppressed(cls, *reasons: Reason) -> Value:
        return cls(value=None, status=ValueStatus.SUPPRESSED, reasons=list(reasons))

    @classmethod
    def low(cls, *reasons: Reason, sd: float | None = None) -> Value:
        return cls(value=None, status=ValueStatus.LOW, reasons=list(reasons), sd=sd)

    @property
    def withheld(self) -> bool:
        return self.value is None


class DimensionValue(Contract):
    name: Dimension
    value: str


class Estimate(Contract):
    """A number the gateway derives from released values (a mean, a variance, an end of a
    confidence interval): null exactly when withheld, with the status and reasons of what it
    was derived from, and `sd`, the standard deviation the noise of those values gives it (to
    first order): the truth, before sampling, is the value give or take about `sd`."""

    value: float | None
    status: ValueStatus
    reasons: list[Reason] = Field(default_factory=list)
    sd: Annotated[float, Field(ge=0)] | None = None
    # The largest distance from the estimate its method allows beyond the noise (a quantile
    # interpolated within its bin: the bin's width).
    bound: Annotated[float, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _withheld_is_null(self) -> Self:
        if (self.status in WITHHELD) != (self.value is None):
            raise ValueError("a value is null exactly when it is withheld (LOW or SUPPRESSED)")
        return self


class Summary(Contract):
    """A numeric variable in one cell, from its released sufficient statistics: `n` persons
    with a value (a noisy count), their mean, variance and standard deviation (in the
    variable's unit, of values clipped to the question's bounds), and a 95% confidence
    interval for the mean that counts both the sampling and the noise. Every number is
    withheld where `n` is (LOW below the minimum)."""

    n: Value
    mean: Estimate
    variance: Estimate
    sd: Estimate
    ci_low: Estimate
    ci_high: Estimate


class Quantiles(Contract):
    """The median and quartiles of the question's variable in one group of a histogram (a
    table by VALUE_BIN: the cells sharing the other dimensions' values), estimated from its
    released bins only: each by linear interpolation within the bin it falls in."""

    dimensions: list[DimensionValue]
    q1: Estimate
    median: Estimate
    q3: Estimate
    iqr: Estimate  # q3 − q1, within twice the bin width


class Rate(Contract):
    """An incidence rate in one cell, from its released events and days at risk: `events`
    (persons whose first outcome fell in their follow-up, a noisy count), `person_years` (the
    days at risk / 365.25), the rate per `per` person-years and its exact Poisson 95%
    confidence interval (Garwood's, from the chi-squared distribution, on the released events).
    Withheld where the events or the days at risk are."""

    events: Value
    person_years: Estimate
    rate: Estimate
    ci_low: Estimate
    ci_high: Estimate
    per: int


class Cell(Contract):
    dimensions: list[DimensionValue]
    count: Value
    summary: Summary | None = None
    rate: Rate | None = None
