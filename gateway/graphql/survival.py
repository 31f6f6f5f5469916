"""GraphQL for survival questions: the `survival` argument of `cohort` and the curves and
log-rank tests of its answer (`gateway.survival` computes them)."""

from __future__ import annotations

from typing import Any

import strawberry

from gateway.combine import Combined
from gateway.graphql.enums import Dimension, Jurisdiction
from gateway.graphql.inputs import EventSpecInput, spec_data
from gateway.graphql.types import DimensionValue, Estimate
from schema import survival_result as model
from schema.survival import INTERVAL_DAYS, MAX_FOLLOW_UP_DAYS, MAX_INTERVALS

_WIDTHS = ", ".join(str(w) for w in INTERVAL_DAYS)


@strawberry.input(
    description="Follow each person from their index date (argument index, required) to the "
    "first outcome event on or after it, censored at the end of the observation period "
    f"holding the index date, for at most maxDays (≤ {MAX_FOLLOW_UP_DAYS}) in intervals of "
    f"intervalDays ({_WIDTHS}; at most {MAX_INTERVALS} intervals). Each node releases, per "
    "interval, the persons who left follow-up in it by the outcome and by censoring, and "
    "those at risk at the maximum: each person in one cell, each cell a count under the full "
    "pipeline, charged as one table. The gateway derives the numbers at risk, the "
    "Kaplan–Meier curve with its 95% band, per country and pooled, and the log-rank test "
    "between the groups of groupBy."
)
class SurvivalInput:
    outcome: EventSpecInput = strawberry.field(
        description="The outcome event (a DEATH, a diagnosis, …); no calendar window."
    )
    interval_days: int
    max_days: int
    group_by: Dimension | None = strawberry.field(
        default=strawberry.UNSET,
        description="A dimension to draw one curve per group of and compare by the log-rank "
        "test (SEX, an age band); its UNKNOWN group is drawn, never compared.",
    )
    by_country: bool = strawberry.field(
        default=True,
        description="Each country's curves too (the default), made of each country's own "
        "released exits; the pooled curves are then the sum of those. false: the pooled "
        "curves only, from exits pooled securely across the countries that pool (one noisy "
        "count of the whole per cell, never a country's own): the way to a rare cohort's "
        "curve, whose exits are below every country's minimum. Each costs one table per "
        "table by FOLLOW_UP.",
    )


def survival_data(survival: SurvivalInput) -> dict[str, Any]:
    """The query model's `Survival` as plain data, codes as written."""
    return {
        "outcome": spec_data(survival.outcome),
        "interval_days": survival.interval_days,
        "max_days": survival.max_days,
    }


def survival_tables(survival: SurvivalInput) -> list[tuple[Dimension, ...]]:
    """The tables a survival question asks: by FOLLOW_UP, and by it and the group."""
    tables: list[tuple[Dimension, ...]] = [(Dimension.FOLLOW_UP,)]
    if survival.group_by is not None and survival.group_by is not strawberry.UNSET:
        tables.append((Dimension.FOLLOW_UP, survival.group_by))
    return tables


@strawberry.type(
    description="One interval of follow-up, from `start` days after the index date to `end`: "
    "the persons at risk at its start (a sum of released exits, never increasing), the "
    "events and censorings in it, and the survival at its end with its 95% band (Greenwood's "
    "variance, log(−log) scale). A withheld exit (LOW) is counted at half the minimum in "
    "what is derived from it (reason LOW_EXITS_AT_HALF_MINIMUM; `bound`: how far its truth "
    "could move the number)."
)
class SurvivalStep:
    start: int
    end: int
    at_risk: Estimate
    events: Estimate
    censored: Estimate
    survival: Estimate
    ci_low: Estimate
    ci_high: Estimate

    @classmethod
    def of(cls, step: model.SurvivalStep) -> SurvivalStep:
        return cls(
            start=step.start,
            end=step.end,
            at_risk=Estimate.of(step.at_risk),
            events=Estimate.of(step.events),
            censored=Estimate.of(step.censored),
            survival=Estimate.of(step.survival),
            ci_low=Estimate.of(step.ci_low),
            ci_high=Estimate.of(step.ci_high),
        )


@strawberry.type(
    description="The Kaplan–Meier curve of one group (its values of groupBy; none for the "
    "whole cohort), of one country or pooled over the countries that answered (null)."
)
class SurvivalCurve:
    jurisdiction: Jurisdiction | None
    dimensions: list[DimensionValue]
    steps: list[SurvivalStep]

    @classmethod
    def of(cls, curve: model.SurvivalCurve) -> SurvivalCurve:
        return cls(
            jurisdiction=curve.jurisdiction,
            dimensions=[DimensionValue(name=d.name, value=d.value) for d in curve.dimensions],
            steps=[SurvivalStep.of(s) for s in curve.steps],
        )


@strawberry.type(
    description="The log-rank test between the groups of groupBy (UNKNOWN left out), of one "
    "country or pooled (null): χ² with groups − 1 degrees of freedom, and its p-value."
)
class LogRank:
    jurisdiction: Jurisdiction | None
    dimension: Dimension
    groups: list[str]
    statistic: Estimate
    degrees_of_freedom: int
    p_value: Estimate

    @classmethod
    def of(cls, test: model.LogRank) -> LogRank:
        return cls(
            jurisdiction=test.jurisdiction,
            dimension=test.dimension,
            groups=list(test.groups),
            statistic=Estimate.of(test.statistic),
            degrees_of_freedom=test.degrees_of_freedom,
            p_value=Estimate.of(test.p_value),
        )


@strawberry.type(description="A survival question's curves and log-rank tests.")
class SurvivalResult:
    curves: list[SurvivalCurve]
    log_rank: list[LogRank]

    @classmethod
    def of(cls, combined: Combined) -> SurvivalResult:
        return cls(
            curves=[SurvivalCurve.of(c) for c in combined.survival],
            log_rank=[LogRank.of(t) for t in combined.log_rank],
        )
