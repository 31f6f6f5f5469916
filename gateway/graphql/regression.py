"""GraphQL for federated regression: the `regression` query's inputs, its result and its
resolver, which only translates (`gateway.regression.answer_regression` does the work)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import strawberry

from gateway.graphql.context import GatewayContext
from gateway.graphql.enums import (
    AgeAt,
    Jurisdiction,
    NoiseLevel,
    PerPerson,
    VariableSource,
    Vocabulary,
)
from gateway.graphql.inputs import (
    CriteriaInput,
    EventSpecInput,
    IndexEventInput,
    RelativeWindowInput,
    _spec,
    criteria_data,
    index_data,
)
from gateway.graphql.types import Count, Reason
from gateway.regression import RegressionQuestion, answer_regression
from gateway.regression_fit import DEFAULT_MAX_ITERATIONS, Fit
from schema.regression import MAX_COVARIATES, CovariateKind, Family, OutcomeKind

strawberry.enum(
    Family,
    description="GAUSSIAN (linear, identity link), BINOMIAL (logistic, logit link), POISSON "
    "(log link).",
)
strawberry.enum(
    OutcomeKind,
    description="EVENT: 1 if the person has an event of `event` in `window` after the index, "
    "else 0. EVENT_COUNT: how many (clipped at maxCount). AGE: age at the index in years "
    "(clipped to lo..hi). MEASUREMENT (GAUSSIAN): a measurement's value in `window` after the "
    "index (`measurement`).",
)
strawberry.enum(
    CovariateKind,
    description="AGE: age at the index (clipped to lo..hi). FEMALE: 1 for a woman. EVENT: 1 "
    "if the person has an event of `event` in `window` before the index (default: any time "
    "before it). MEASUREMENT: a measurement's value in `window` up to the index "
    "(`measurement`), clipped to its bounds.",
)

Info = strawberry.Info[GatewayContext, None]


@strawberry.input(
    description="A measurement per person for a MEASUREMENT term: a registered LOINC code's "
    "value (in the node's canonical unit) in the term's window relative to the index, the "
    "first, last or mean of the person's measurements there, clipped to public bounds lo..hi "
    "within the code's registered ones (its own when not given). Persons without a value in "
    "the window leave the model (complete cases): each node's n counts those left."
)
class RegressionMeasurementInput:
    code: str = strawberry.field(description="The LOINC code (e.g. 4548-4, HbA1c).")
    per_person: PerPerson = PerPerson.LAST
    lo: float | None = strawberry.UNSET
    hi: float | None = strawberry.UNSET


def _measurement(measurement: RegressionMeasurementInput | None) -> dict[str, Any] | None:
    if not measurement:
        return None
    return _dropped(
        {
            "source": VariableSource.MEASUREMENT,
            "code": {"vocabulary": Vocabulary.LOINC, "code": measurement.code},
            "per_person": measurement.per_person,
            "lo": measurement.lo,
            "hi": measurement.hi,
        }
    )


@strawberry.input(description="The model's outcome per person of the cohort.")
class RegressionOutcomeInput:
    kind: OutcomeKind
    event: EventSpecInput | None = strawberry.UNSET
    window: RelativeWindowInput | None = strawberry.field(
        default=strawberry.UNSET,
        description="Days after the index (default 0 to 28).",
    )
    max_count: int | None = strawberry.field(
        default=strawberry.UNSET,
        description="EVENT_COUNT's clipping bound (default 10, at most 50): it sets the "
        "noise of a Poisson or linear fit.",
    )
    lo: int | None = strawberry.UNSET
    hi: int | None = strawberry.UNSET
    measurement: RegressionMeasurementInput | None = strawberry.field(
        default=strawberry.UNSET,
        description="MEASUREMENT's (a linear model's outcome; window: days after the index).",
    )


@strawberry.input(description="A covariate per person of the cohort.")
class CovariateInput:
    name: str = strawberry.field(description="Its name in the result (letters, digits, _).")
    kind: CovariateKind
    event: EventSpecInput | None = strawberry.UNSET
    window: RelativeWindowInput | None = strawberry.field(
        default=strawberry.UNSET,
        description="Days before the index (default: any time before it; endDays below 0).",
    )
    lo: int | None = strawberry.field(
        default=strawberry.UNSET,
        description="AGE's lower clipping bound (default 0): narrow bounds that hold "
        "everyone's age cut the noise.",
    )
    hi: int | None = strawberry.field(
        default=strawberry.UNSET, description="AGE's upper clipping bound (default 130)."
    )
    measurement: RegressionMeasurementInput | None = strawberry.field(
        default=strawberry.UNSET,
        description="MEASUREMENT's (window: days up to the index, endDays at most 0).",
    )


@strawberry.input(
    description=f"A generalised linear model: the family, the outcome and 1 to "
    f"{MAX_COVARIATES} covariates (an intercept is always fitted)."
)
class RegressionModelInput:
    family: Family
    outcome: RegressionOutcomeInput
    covariates: list[CovariateInput]


def _window(window: RelativeWindowInput | None) -> dict[str, int] | None:
    if not window:
        return None
    return {"start_days": window.start_days, "end_days": window.end_days}


def _dropped(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None and v is not strawberry.UNSET}


def model_data(model: RegressionModelInput) -> dict[str, Any]:
    outcome = model.outcome
    return {
        "family": model.family,
        "outcome": _dropped(
            {
                "kind": outcome.kind,
                "event": _spec(outcome.event) if outcome.event else None,
                "window": _window(outcome.window),
                "max_count": outcome.max_count,
                "lo": outcome.lo,
                "hi": outcome.hi,
                "measurement": _measurement(outcome.measurement),
            }
        ),
        "covariates": [
            _dropped(
                {
                    "name": c.name,
                    "kind": c.kind,
                    "event": _spec(c.event) if c.event else None,
                    "window": _window(c.window),
                    "lo": c.lo,
                    "hi": c.hi,
                    "measurement": _measurement(c.measurement),
                }
            )
            for c in model.covariates
        ],
    }


@strawberry.type(description="One coefficient, on the researcher's scale (ages in years).")
class RegressionCoefficient:
    name: str = strawberry.field(description="(Intercept) or the covariate's name.")
    estimate: float
    se: float = strawberry.field(description="Its standard error (the model's, from the fit).")
    noise_sd: float = strawberry.field(
        description="The sd the nodes' noise gives the estimate (first order): the interval "
        "and the p-value count it beside the standard error."
    )
    ci_low: float = strawberry.field(description="95% interval, lower end.")
    ci_high: float
    p_value: float = strawberry.field(description="Two-sided, against zero.")


@strawberry.type(description="One node's part of a regression.")
class RegressionNode:
    jurisdiction: Jurisdiction
    n: Count = strawberry.field(description="The cohort's count at the node, released as counts.")


@strawberry.type(description="A federated regression's fit.")
class RegressionResult:
    family: Family
    coefficients: list[RegressionCoefficient]
    iterations: int
    converged: bool = strawberry.field(
        description="Whether the last step moved no coefficient by more than its noise could."
    )
    dispersion: float | None = strawberry.field(
        description="GAUSSIAN: the residual variance on the outcome's scale."
    )
    by_jurisdiction: list[RegressionNode] = strawberry.field(
        description="The nodes that contributed, each with its released count."
    )
    reasons: list[Reason] = strawberry.field(
        description="Why a node did not contribute (its refusal, e.g. "
        "REGRESSION_SPARSE_LEVEL, or its failure)."
    )
    trace_id: str | None

    @classmethod
    def of(cls, fit: Fit, trace_id: str | None) -> RegressionResult:
        return cls(
            family=fit.family,
            coefficients=[
                RegressionCoefficient(
                    name=c.name,
                    estimate=c.estimate,
                    se=c.se,
                    noise_sd=c.noise_sd,
                    ci_low=c.ci_low,
                    ci_high=c.ci_high,
                    p_value=c.p_value,
                )
                for c in fit.coefficients
            ],
            iterations=fit.iterations,
            converged=fit.converged,
            dispersion=fit.dispersion,
            by_jurisdiction=[
                RegressionNode(jurisdiction=j, n=Count.of(v)) for j, v in fit.n.items()
            ],
            reasons=[Reason.of(r) for r in fit.reasons],
            trace_id=trace_id,
        )


async def resolve_regression(
    info: Info,
    *,
    request: str,
    criteria: CriteriaInput,
    index: Annotated[
        IndexEventInput,
        strawberry.argument(
            description="The index event (FIRST): the outcome's and covariates' windows are "
            "relative to it."
        ),
    ],
    model: RegressionModelInput,
    jurisdictions: list[Jurisdiction] | None = strawberry.UNSET,
    reference_date: dt.date | None = strawberry.UNSET,
    age_at: Annotated[
        AgeAt | None,
        strawberry.argument(
            description="When ages are taken, for age criteria and the AGE terms alike "
            "(default: the index event)."
        ),
    ] = strawberry.UNSET,
    noise: NoiseLevel | None = strawberry.UNSET,
    max_iterations: Annotated[
        int | None,
        strawberry.argument(
            description=f"Newton iterations at most (default {DEFAULT_MAX_ITERATIONS}): each "
            "one is charged to every person counted, as two counts."
        ),
    ] = strawberry.UNSET,
) -> RegressionResult | None:
    question = RegressionQuestion(
        request=request,
        criteria=criteria_data(criteria),
        index=index_data(index),
        model=model_data(model),
        jurisdictions=None if not jurisdictions else tuple(jurisdictions),
        reference_date=None if reference_date is strawberry.UNSET else reference_date,
        age_at=None if age_at is strawberry.UNSET else age_at,
        noise=noise if noise else NoiseLevel.STANDARD,
        max_iterations=max_iterations if max_iterations else DEFAULT_MAX_ITERATIONS,
    )
    answer = await answer_regression(info.context.services, info.context, question)
    return RegressionResult.of(answer.fit, answer.trace_id)
