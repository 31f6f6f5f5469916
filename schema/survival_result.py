"""A survival question's answer: curves and log-rank tests, every number with its status,
reasons, the noise's sd and a bound, as counts and summaries (`gateway.survival` derives
them)."""

from __future__ import annotations

from schema.codes import Dimension, Jurisdiction
from schema.model import Contract
from schema.result import DimensionValue, Estimate


class SurvivalStep(Contract):
    """One interval of follow-up, from `start` days after the index date to `end`: the
    persons at risk at its start, the events and censorings in it, and the survival at its
    end with its 95% band (Greenwood, log(−log))."""

    start: int
    end: int
    at_risk: Estimate
    events: Estimate
    censored: Estimate
    survival: Estimate
    ci_low: Estimate
    ci_high: Estimate


class SurvivalCurve(Contract):
    """The Kaplan–Meier curve of one group (`dimensions`: its values of the table's other
    dimensions; none for the whole cohort), of one country (`jurisdiction`) or pooled
    (None)."""

    jurisdiction: Jurisdiction | None
    dimensions: list[DimensionValue]
    steps: list[SurvivalStep]


class LogRank(Contract):
    """The log-rank test between the groups of `dimension` (UNKNOWN left out), of one
    country or pooled: χ² with `degrees_of_freedom` (groups − 1) and its p-value."""

    jurisdiction: Jurisdiction | None
    dimension: Dimension
    groups: list[str]
    statistic: Estimate
    degrees_of_freedom: int
    p_value: Estimate
