"""Federated regression (generalised linear models): what a researcher may fit, what one
iteration asks of a node, and the arithmetic both sides share.

A model is a family (Gaussian, binomial with the logit link, Poisson with the log link), an
outcome per person of the cohort (an event in a window after the index, how many such events,
or age at the index) and covariates per person (age at the index, being female, an event in a
window before the index). The gateway fits it by Newton–Raphson (IRLS): each iteration sends
β to every node, which returns only its cohort's noisy sufficient statistics at that β:

    information  H(β) = Σ wᵢ xᵢ xᵢ'       score part  v(β) = Σ rᵢ xᵢ

with wᵢ = 1 (Gaussian), μᵢ(1 − μᵢ) (binomial), μᵢ (Poisson) and rᵢ = yᵢ (Gaussian: the score
is then v − Hβ), yᵢ − μᵢ (binomial, Poisson). Every covariate is scaled to [−1, 1] (age: its
clipped value less the bounds' centre, over their half width; a binary covariate is 0 or 1),
so ‖xᵢ‖² ≤ p, and each person's |wᵢ| ≤ W and |rᵢ| ≤ R for the family's public bounds
(`PersonBounds`): one person moves H's upper triangle by at most W·√(p(p+1)/2) (L2) and v by
R·√p. Nodes
release both in whole units of 2^-`RESOLUTION_BITS` (`connectors.regression`), the gateway
undoes the scaling (`gateway.regression`). docs/protection.md, "Regression", has the
arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Final, Literal, Self

from pydantic import Field, model_validator

from schema.codes import Jurisdiction, NodeStatus, Occurrence
from schema.model import Contract
from schema.query import (
    MAX_RELATIVE_DAYS,
    CohortQuery,
    EventSpec,
    NumericVariable,
    RelativeWindow,
)
from schema.result import Reason, Value
from schema.variables import AGE, VariableSource
from schema.wire import NodeRequest, PrivacySpend, QueryId

REGRESSION_PATH: Final = "/v1/regression"
MAX_COVARIATES: Final = 12
MAX_ITERATIONS: Final = 12
# Released sums are whole multiples of 2^-24: fine enough that rounding moves a coefficient by
# far less than 1e-6 of itself (its error is about 2^-24 times its variance), coarse enough
# that a node's sums of a few million persons stay exact in a float64 (below 2^53).
RESOLUTION_BITS: Final = 24
RESOLUTION: Final = 2.0**-RESOLUTION_BITS
# Each iteration's releases carry noise at the jurisdiction's sd times a public scale, and cost
# 1/(2(σ·scale)²) each: the approach's steps are cheap and noisy (scale 2: a quarter of a count's
# cost each), the final step precise (scale 1/√2: twice a count's cost each). Under zCDP a
# coefficient's noise depends only on what was spent on the sums it is read from, so the budget
# goes where the answer is read: the final step, at the fit (docs/protection.md, "Regression").
# A whole fit at σ 5 costs at most 0.17 (eight iterations): a person who has spent less than
# a third of a 0.5 budget can still enter one.
APPROACH_NOISE_SCALE: Final = 2.0
FINAL_NOISE_SCALE: Final = math.sqrt(0.5)
MIN_NOISE_SCALE: Final = 0.5
MAX_NOISE_SCALE: Final = 4.0
# The most events an EVENT_COUNT outcome counts per person (its public clipping bound).
MAX_EVENT_COUNT: Final = 50
INTERCEPT: Final = "(Intercept)"


class Family(StrEnum):
    GAUSSIAN = "GAUSSIAN"  # identity link
    BINOMIAL = "BINOMIAL"  # logit link
    POISSON = "POISSON"  # log link


class OutcomeKind(StrEnum):
    EVENT = "EVENT"  # 1 if the person has an event of `event` in `window`, else 0
    EVENT_COUNT = "EVENT_COUNT"  # how many, clipped to `max_count`
    AGE = "AGE"  # age at the index, whole years, clipped to `lo`..`hi`
    MEASUREMENT = "MEASUREMENT"  # a measurement's value in `window` (GAUSSIAN only)


class CovariateKind(StrEnum):
    AGE = "AGE"  # age at the index, whole years, clipped to `lo`..`hi`
    FEMALE = "FEMALE"  # 1 for a woman, else 0
    EVENT = "EVENT"  # 1 if the person has an event of `event` in `window` (before the index)
    MEASUREMENT = "MEASUREMENT"  # a measurement's value in `window`, clipped and scaled


class RegressionRefusal(StrEnum):
    """Why a node refuses to release an iteration (DataSHIELD's default disclosure checks),
    each a stable rule code of the refusal's reasons."""

    # More parameters than 0.33 × the cohort's persons (DataSHIELD's nfilter.glm).
    TOO_MANY_PARAMETERS = "REGRESSION_TOO_MANY_PARAMETERS"
    # A level of a binary covariate or outcome held by fewer persons than the minimum count.
    SPARSE_LEVEL = "REGRESSION_SPARSE_LEVEL"
    # As many parameters as distinct covariate patterns, or a covariate that is a combination
    # of the others: the fit would reproduce persons' outcomes.
    SATURATED = "REGRESSION_SATURATED"
    # Fewer persons than the minimum count (DataSHIELD's nfilter.subset), or than the
    # minimum regression size.
    TOO_FEW_PERSONS = "REGRESSION_TOO_FEW_PERSONS"


# A cohort smaller than this is never fitted, whatever the jurisdiction's minimum count.
MIN_REGRESSION_PERSONS: Final = 20
# DataSHIELD's nfilter.glm: parameters at most this share of the persons.
MAX_PARAMETER_SHARE: Final = 0.33

BEFORE_INDEX: Final = RelativeWindow(start_days=-MAX_RELATIVE_DAYS, end_days=-1)
AFTER_INDEX_28: Final = RelativeWindow(start_days=0, end_days=28)


def _check_measurement(measurement: NumericVariable | None, measured: bool) -> None:
    """A MEASUREMENT term, and only one, names its measurement: a registered LOINC code, its
    first, last or mean value per person and public bounds (`NumericVariable`, which checks
    them against the registry); its window is the term's, relative to the index."""
    if measured != (measurement is not None):
        raise ValueError("a MEASUREMENT term, and only one, names its measurement")
    if measurement is None:
        return
    if measurement.source is not VariableSource.MEASUREMENT:
        raise ValueError("a measurement term's variable is a MEASUREMENT")
    if measurement.window is not None or measurement.bin_width is not None:
        raise ValueError("a measurement term's window is relative to the index (its window)")


def measured_bounds(measurement: NumericVariable) -> tuple[float, float]:
    """A measurement term's public bounds, in its unit."""
    clipping = measurement.clipping
    return clipping.lo * clipping.resolution, clipping.hi * clipping.resolution


class Covariate(Contract):
    name: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")]
    kind: CovariateKind
    event: EventSpec | None = None
    window: RelativeWindow = BEFORE_INDEX
    lo: Annotated[int, Field(ge=0, le=130)] | None = None
    hi: Annotated[int, Field(ge=0, le=130)] | None = None
    measurement: NumericVariable | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.kind is CovariateKind.EVENT) != (self.event is not None):
            raise ValueError("an EVENT covariate, and only one, names its event")
        if self.kind is CovariateKind.EVENT and self.window.end_days >= 0:
            raise ValueError("a covariate's events are recorded before the index (endDays < 0)")
        _check_measurement(self.measurement, self.kind is CovariateKind.MEASUREMENT)
        if self.kind is CovariateKind.MEASUREMENT and self.window.end_days > 0:
            raise ValueError("a covariate's measurement is taken by the index (endDays ≤ 0)")
        if self.kind is not CovariateKind.AGE and (self.lo is not None or self.hi is not None):
            raise ValueError("only AGE takes bounds")
        if self.kind is CovariateKind.AGE and self.age_bounds[0] >= self.age_bounds[1]:
            raise ValueError("an age's lower bound is below its upper bound")
        return self

    @property
    def age_bounds(self) -> tuple[int, int]:
        return _age_bounds(self.lo, self.hi)

    @property
    def binary(self) -> bool:
        return self.kind in (CovariateKind.FEMALE, CovariateKind.EVENT)

    @property
    def span(self) -> tuple[float, float] | None:
        """A numeric covariate's public range (clipped to it, scaled to [−1, 1] by it)."""
        if self.kind is CovariateKind.AGE:
            lo, hi = self.age_bounds
            return float(lo), float(hi)
        if self.measurement is not None:
            return measured_bounds(self.measurement)
        return None


class RegressionOutcome(Contract):
    kind: OutcomeKind
    event: EventSpec | None = None
    window: RelativeWindow = AFTER_INDEX_28
    max_count: Annotated[int, Field(ge=1, le=MAX_EVENT_COUNT, strict=True)] = 10
    lo: Annotated[int, Field(ge=0, le=130)] | None = None
    hi: Annotated[int, Field(ge=0, le=130)] | None = None
    measurement: NumericVariable | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_measurement(self.measurement, self.kind is OutcomeKind.MEASUREMENT)
        if self.kind is OutcomeKind.MEASUREMENT and self.window.start_days < 0:
            raise ValueError("an outcome's measurement follows the index (startDays ≥ 0)")
        counted = self.kind in (OutcomeKind.EVENT, OutcomeKind.EVENT_COUNT)
        if counted != (self.event is not None):
            raise ValueError("an EVENT or EVENT_COUNT outcome, and only one, names its event")
        if counted and self.window.start_days < 0:
            raise ValueError("an outcome's events follow the index (startDays ≥ 0)")
        if self.kind is OutcomeKind.AGE and self.age_bounds[0] >= self.age_bounds[1]:
            raise ValueError("an age's lower bound is below its upper bound")
        return self

    @property
    def age_bounds(self) -> tuple[int, int]:
        return _age_bounds(self.lo, self.hi)

    @property
    def span(self) -> tuple[float, float]:
        """The outcome's public range: (lowest, highest) value a person can have."""
        if self.kind is OutcomeKind.EVENT:
            return 0.0, 1.0
        if self.kind is OutcomeKind.EVENT_COUNT:
            return 0.0, float(self.max_count)
        if self.measurement is not None:
            return measured_bounds(self.measurement)
        lo, hi = self.age_bounds
        return float(lo), float(hi)


def _age_bounds(lo: int | None, hi: int | None) -> tuple[int, int]:
    return (int(AGE.lo) if lo is None else lo, int(AGE.hi) if hi is None else hi)


_FAMILY_OUTCOMES: Final = {
    Family.GAUSSIAN: {
        OutcomeKind.AGE,
        OutcomeKind.EVENT_COUNT,
        OutcomeKind.EVENT,
        OutcomeKind.MEASUREMENT,
    },
    Family.BINOMIAL: {OutcomeKind.EVENT},
    Family.POISSON: {OutcomeKind.EVENT_COUNT, OutcomeKind.EVENT},
}


@dataclass(frozen=True, slots=True)
class PersonBounds:
    """How far one person can move the released sums: |w| ≤ `weight`, |r| ≤ `residual`, and
    the Gaussian's Σỹ² by `squares` (ỹ the outcome scaled to [−1, 1])."""

    weight: float
    residual: float
    squares: float


class RegressionModel(Contract):
    family: Family
    outcome: RegressionOutcome
    covariates: Annotated[list[Covariate], Field(min_length=1, max_length=MAX_COVARIATES)]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.outcome.kind not in _FAMILY_OUTCOMES[self.family]:
            raise ValueError(
                f"a {self.family.value} model takes an outcome of "
                + " or ".join(sorted(k.value for k in _FAMILY_OUTCOMES[self.family]))
            )
        names = [c.name for c in self.covariates]
        if len(set(names)) != len(names):
            raise ValueError("covariates have distinct names")
        return self

    @property
    def parameters(self) -> list[str]:
        return [INTERCEPT, *(c.name for c in self.covariates)]

    @property
    def bounds(self) -> PersonBounds:
        if self.family is Family.GAUSSIAN:
            return PersonBounds(weight=1.0, residual=1.0, squares=1.0)
        if self.family is Family.BINOMIAL:
            return PersonBounds(weight=0.25, residual=1.0, squares=0.0)
        # Poisson: μ and |y − μ| clipped at the outcome's largest count (docs/protection.md).
        top = self.outcome.span[1]
        return PersonBounds(weight=top, residual=top, squares=0.0)

    def sensitivities(self) -> tuple[int, int, int]:
        """The L2 sensitivity, in units of `RESOLUTION`, of the released information matrix
        (upper triangle), score part and (Gaussian) sum of squares: one person's largest
        contribution, plus one unit per value for the rounding of each sum. One person's
        wxx' has an upper triangle of squared L2 norm w²(‖x‖⁴ + Σxⱼ⁴)/2 ≤ W²(p² + p)/2, as
        every |xⱼ| ≤ 1."""
        p = len(self.parameters)
        bounds = self.bounds
        entries = p * (p + 1) // 2
        information = math.ceil(bounds.weight * math.sqrt(entries) / RESOLUTION) + math.ceil(
            math.sqrt(entries)
        )
        score = math.ceil(bounds.residual * math.sqrt(p) / RESOLUTION) + math.ceil(math.sqrt(p))
        squares = math.ceil(bounds.squares / RESOLUTION) + 1
        return information, score, squares


def check_cohort_form(request: NodeRequest) -> None:
    """`check_cohort` on a node's request."""
    check_cohort(request.query)


def check_cohort(query: CohortQuery) -> None:
    """A regression's cohort has an explicit index whose FIRST event dates each person (the
    windows of the outcome and covariates are relative to it, taken at the same date for
    every term) and asks only the total count; ValueError otherwise."""
    if query.index is None:
        raise ValueError("a regression's cohort needs an index event (index)")
    if query.index.occurrence is not Occurrence.FIRST:
        raise ValueError("a regression's index takes each person's FIRST event")
    if query.variable is not None or query.tables != [()]:
        raise ValueError("a regression's cohort asks no breakdown and no variable")


class RegressionStep(Contract):
    """One iteration for one node: the cohort as a count's request (its permit, its
    approval, its noise level), the model, the current coefficients on the scaled
    covariates (intercept first) and the iteration's noise scale (its releases' sd is the
    jurisdiction's times it, their cost divided by its square)."""

    request: NodeRequest
    model: RegressionModel
    beta: Annotated[
        list[Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]],
        Field(min_length=2, max_length=MAX_COVARIATES + 1),
    ]
    noise_scale: Annotated[
        float, Field(allow_inf_nan=False, ge=MIN_NOISE_SCALE, le=MAX_NOISE_SCALE)
    ] = 1.0
    # The noise scales of the iterations the fit may still ask after this one: a person
    # enters this iteration only if they can afford them too (not charged), so that the
    # design stays one set of persons from the first iteration to the last.
    then: Annotated[
        list[Annotated[float, Field(allow_inf_nan=False, ge=MIN_NOISE_SCALE, le=MAX_NOISE_SCALE)]],
        Field(max_length=MAX_ITERATIONS),
    ] = []

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(self.beta) != len(self.model.parameters):
            raise ValueError("beta has one coefficient per parameter, the intercept first")
        check_cohort_form(self.request)
        return self


class RegressionPart(Contract):
    """A node's answer to one iteration: OK with its noisy sums (each a multiple of
    `RESOLUTION`), or DENIED with reasons (a `RegressionRefusal` among them, or its policy's).
    `n` is the cohort's released count (persons the ledger still counts), with its status;
    the sds are the noise's on each released number, in the sums' own scale. Floats, not
    integers, on the wire: the gateway checks what a node sends (finite, symmetric, the shape
    of the model) rather than trusting a type."""

    protocol: Literal["tessera/1"] = "tessera/1"
    query_id: QueryId
    jurisdiction: Jurisdiction
    status: Literal[NodeStatus.OK, NodeStatus.DENIED, NodeStatus.UNKNOWN_CODE]
    reasons: list[Reason] = []
    n: Value | None = None
    information: Annotated[list[list[float]], Field(max_length=MAX_COVARIATES + 1)] = []
    score: Annotated[list[float], Field(max_length=MAX_COVARIATES + 1)] = []
    squares: float | None = None
    sd_information: Annotated[float, Field(ge=0)] = 0.0
    sd_score: Annotated[float, Field(ge=0)] = 0.0
    sd_squares: Annotated[float, Field(ge=0)] = 0.0
    privacy: PrivacySpend | None = None
