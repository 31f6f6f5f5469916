"""A numeric variable's summary at the gateway: each node's released statistics pooled by
summing (a country's own and the pooled ones), the mean, variance, sd and confidence interval
derived from them with the noise's sd on each, everything withheld where n is; and the vetting
of a node's statistics (noise at each sum's sensitivity, sums withheld exactly with their
count)."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from gateway.combine import Combined, combine
from gateway.nodes import NodeOutcome
from gateway.statistics import (
    BEYOND_BOUNDS,
    FROM_HISTOGRAM,
    NOISY_VARIANCE,
    WITHHELD_BINS,
    Moments,
    mean_and_variance,
    quantiles,
    summarise,
    with_quantiles,
    with_summaries,
)
from gateway.vetting import vet
from policies.disclosure import BELOW_MINIMUM
from policies.loader import shipped_disclosure_profile as profile_for
from schema.codes import Dimension, Jurisdiction, MeasureKind, NodeStatus, ValueStatus
from schema.query import STATISTICS, CohortQuery, Criteria, Measure, NumericVariable
from schema.result import Cell, DimensionValue, Reason, Value
from schema.variables import VariableSource
from schema.wire import NodeRequest
from tests.gateway.gateway_kit import APPROVAL, make_plan

FR, DK = Jurisdiction.FR, Jurisdiction.DK
COUNT = MeasureKind.PERSON_COUNT
N, S1, S2 = STATISTICS
SEX = (Dimension.SEX,)
# Ages 18-90: centre 54, Δ₁ 36, k 648, Δ₂ 648.
AGE = NumericVariable(source=VariableSource.AGE, lo=18, hi=90)
CLIPPING = AGE.clipping


def noisy(n: int, sd: float) -> Value:
    return Value(value=n, status=ValueStatus.PERTURBED, sd=sd)


def low(sd: float) -> Value:
    return Value.low(Reason(rule=BELOW_MINIMUM), sd=sd)


def statistics_of(ages: list[int]) -> dict[MeasureKind, int]:
    units = [min(max(a, 18), 90) - 54 for a in ages]
    return {
        COUNT: len(ages),
        N: len(ages),
        S1: sum(units),
        S2: sum(u * u - 648 for u in units),
    }


def released(exact: dict[MeasureKind, int], sd: float = 5.0) -> dict[MeasureKind, Value]:
    """The statistics as an honest node without noise would release them at FR's minimum."""
    scale = {COUNT: 1, N: 1, S1: 36, S2: 648}
    if exact[N] < 11:
        return {
            COUNT: low(sd),
            N: low(sd),
            S1: Value.low(sd=sd * 36),
            S2: Value.low(sd=sd * 648),
        }
    return {k: noisy(v, sd * scale[k]) for k, v in exact.items()}


def test_the_summary_of_exact_statistics_is_the_samples() -> None:
    ages = [20, 35, 41, 41, 57, 60, 62, 70, 88, 95, 17, 44]  # 95 and 17 are clipped
    exact = statistics_of(ages)
    values = released(exact)
    summary = summarise(values[N], values[S1], values[S2], CLIPPING)
    clipped = [min(max(a, 18), 90) for a in ages]
    mean = sum(clipped) / len(clipped)
    variance = sum((a - mean) ** 2 for a in clipped) / (len(clipped) - 1)
    assert summary.mean.value == pytest.approx(mean, rel=1e-12)
    assert summary.variance.value == pytest.approx(variance, rel=1e-12)
    assert summary.sd.value == pytest.approx(math.sqrt(variance), rel=1e-12)
    assert summary.ci_low.value is not None
    assert summary.ci_high.value is not None
    assert summary.ci_low.value < mean < summary.ci_high.value
    # The mean's noise: S₁'s sd / n and n's sd times S₁ / n², to first order.
    s1, n = exact[S1], exact[N]
    assert summary.mean.sd == pytest.approx(math.hypot(5 * 36 / n, 5 * s1 / n**2))
    assert all(
        e.status is ValueStatus.PERTURBED
        for e in (summary.mean, summary.variance, summary.sd, summary.ci_low, summary.ci_high)
    )


def test_a_summary_over_fewer_persons_than_the_minimum_is_low() -> None:
    values = released(statistics_of([30, 40, 50]))
    summary = summarise(values[N], values[S1], values[S2], CLIPPING)
    assert summary.n.status is ValueStatus.LOW
    for estimate in (summary.mean, summary.variance, summary.sd, summary.ci_low, summary.ci_high):
        assert estimate.status is ValueStatus.LOW
        assert estimate.value is None
        assert next(r.rule for r in estimate.reasons) == BELOW_MINIMUM


def test_a_variance_the_noise_made_negative_is_zero_and_says_so() -> None:
    # Everyone at the centre (u = 0: S₂ = -648 n); noise pushes S₂ lower still.
    summary = summarise(noisy(20, 5), noisy(0, 180), noisy(-648 * 20 - 5000, 3240), CLIPPING)
    assert summary.variance.value == 0.0
    assert summary.sd.value == 0.0
    assert NOISY_VARIANCE in [r.rule for r in summary.variance.reasons]


def test_moments_merge_as_sums() -> None:
    # Chan et al.'s merge of two groups' means and variances, against pooled sums.
    a, b = [20, 30, 45, 50], [60, 61, 80]
    ma, mb = statistics_of(a), statistics_of(b)
    pooled = Moments(ma[N] + mb[N], ma[S1] + mb[S1], ma[S2] + mb[S2])
    mean, variance = mean_and_variance(pooled, CLIPPING)
    mean_a, var_a = mean_and_variance(Moments(ma[N], ma[S1], ma[S2]), CLIPPING)
    mean_b, var_b = mean_and_variance(Moments(mb[N], mb[S1], mb[S2]), CLIPPING)
    assert var_a is not None
    assert var_b is not None
    assert variance is not None
    delta = mean_b - mean_a
    m2 = var_a * 3 + var_b * 2 + delta**2 * 4 * 3 / 7
    assert mean == pytest.approx((mean_a * 4 + mean_b * 3) / 7, rel=1e-12)
    assert variance == pytest.approx(m2 / 6, rel=1e-12)


def query() -> CohortQuery:
    return CohortQuery(
        criteria=Criteria(),
        reference_date=dt.date(2025, 1, 1),
        tables=[(), SEX],
        measures=[Measure(kind=k) for k in (COUNT, *STATISTICS)],
        variable=AGE,
    )


def outcome(j: Jurisdiction, cells: dict[tuple[str, ...], dict[MeasureKind, Value]]) -> NodeOutcome:
    measures = {
        kind: {
            (): {(): cells[()][kind]},
            SEX: {key: values[kind] for key, values in cells.items() if key},
        }
        for kind in (COUNT, *STATISTICS)
    }
    return NodeOutcome(jurisdiction=j, status=NodeStatus.OK, latency_ms=1.0, measures=measures)


FR_AGES = {
    ("FEMALE",): [30 + i % 40 for i in range(40)],
    ("MALE",): [50 + i % 30 for i in range(25)],
    ("UNKNOWN",): [],
}
DK_AGES = {
    ("FEMALE",): [20 + i % 50 for i in range(30)],
    ("MALE",): [60, 61, 62],
    ("UNKNOWN",): [],
}


def cells_of(
    ages: dict[tuple[str, ...], list[int]],
) -> dict[tuple[str, ...], dict[MeasureKind, Value]]:
    everyone = [a for of_sex in ages.values() for a in of_sex]
    return {
        (): released(statistics_of(everyone)),
        **{k: released(statistics_of(v)) for k, v in ages.items()},
    }


def test_summaries_per_country_and_pooled() -> None:
    outcomes = [outcome(FR, cells_of(FR_AGES)), outcome(DK, cells_of(DK_AGES))]
    tables = [(), SEX]
    combined = with_summaries(
        combine(tables, outcomes, profile_for), query(), tables, outcomes, profile_for
    )
    everyone = [a for ages in (FR_AGES, DK_AGES) for of_sex in ages.values() for a in of_sex]
    assert combined.summary is not None
    assert combined.summary.mean.value == pytest.approx(sum(everyone) / len(everyone))
    assert combined.summary.n.value == len(everyone)
    # The pooled noise: the root of the parts' variances.
    assert combined.summary.n.sd == pytest.approx(5 * math.sqrt(2))
    fr, dk = combined.by_jurisdiction
    assert fr.summary is not None
    assert dk.summary is not None
    fr_all = [a for v in FR_AGES.values() for a in v]
    assert fr.summary.mean.value == pytest.approx(sum(fr_all) / len(fr_all))
    by_sex = {c.dimensions[0].value: c.summary for c in combined.tables[SEX]}
    # DK's 3 men are LOW: the pooled men's summary is withheld with them (INCOMPLETE_POOL).
    male = by_sex["MALE"]
    assert male is not None
    assert male.mean.value is None
    assert male.mean.status is ValueStatus.SUPPRESSED
    female = by_sex["FEMALE"]
    assert female is not None
    women = FR_AGES[("FEMALE",)] + DK_AGES[("FEMALE",)]
    assert female.mean.value == pytest.approx(sum(women) / len(women))


def request_for(j: Jurisdiction) -> NodeRequest:
    request = make_plan(SEX).node_request(j, APPROVAL)
    return request.model_copy(update={"query": query()})


def test_a_node_releasing_a_sum_beside_its_low_count_is_rejected() -> None:
    cells = cells_of(DK_AGES)
    cells[("MALE",)][S1] = noisy(18, 5 * 36)  # released though n is LOW
    result = vet(outcome(FR, cells), profile_for(FR), request_for(FR))
    assert result.status is NodeStatus.REJECTED
    assert "VALUE_SUM" in (result.message or "")


def test_a_sum_with_less_noise_than_its_sensitivity_asks_is_rejected() -> None:
    cells = cells_of(FR_AGES)
    cells[()][S2] = noisy(cells[()][S2].value or 0, 5.0)  # a count's noise, not 5 x 648
    result = vet(outcome(FR, cells), profile_for(FR), request_for(FR))
    assert result.status is NodeStatus.REJECTED
    assert "less noise" in (result.message or "")


def test_an_honest_nodes_statistics_pass() -> None:
    result = vet(outcome(FR, cells_of(FR_AGES)), profile_for(FR), request_for(FR))
    assert result.status is NodeStatus.OK


def test_a_mean_the_noise_took_beyond_the_bounds_is_shown_at_the_bound() -> None:
    # 12 persons; S₁ pushed by its noise to 12 × 40 units above the centre (bounds ±36).
    summary = summarise(noisy(12, 5), noisy(12 * 40, 180), noisy(0, 3240), CLIPPING)
    assert summary.mean.value == 90.0
    assert BEYOND_BOUNDS in [r.rule for r in summary.mean.reasons]
    assert summary.ci_high.value is not None
    assert summary.ci_high.value <= 90.0


def test_quartiles_are_interpolated_within_their_bins() -> None:
    bins = [(0.0, noisy(10, 5)), (10.0, noisy(20, 5)), (20.0, noisy(10, 5))]
    q1, median, q3 = quantiles(bins, 10.0, 30.0)
    # 40 persons: 10 reach the first quarter at the top of the first bin, the median half way
    # into the second (10 + 10/20 of it), the third quarter at its top.
    assert (q1.value, median.value, q3.value) == (10.0, 15.0, 20.0)
    assert median.bound == 10.0
    assert median.status is ValueStatus.PERTURBED
    assert FROM_HISTOGRAM in [r.rule for r in median.reasons]


def test_the_interquartile_range_of_a_histogram() -> None:
    bins = [
        (0.0, noisy(10, 5)),
        (10.0, noisy(20, 5)),
        (20.0, noisy(10, 5)),
        (30.0, low(5)),
    ]
    cells = [
        Cell(dimensions=[DimensionValue(name=Dimension.VALUE_BIN, value=f"{edge:g}")], count=n)
        for edge, n in bins
    ]
    query = CohortQuery(
        criteria=Criteria(),
        reference_date=dt.date(2025, 1, 1),
        tables=[(Dimension.VALUE_BIN,)],
        variable=NumericVariable(source=VariableSource.AGE, lo=0, hi=40, bin_width=10),
    )
    combined = Combined(
        count=noisy(40, 5), by_jurisdiction=(), tables={(Dimension.VALUE_BIN,): tuple(cells)}
    )
    ((found,),) = with_quantiles(combined, query).quantiles.values()
    assert (found.q1.value, found.median.value, found.q3.value) == (10.0, 15.0, 20.0)
    assert found.iqr.value == 10.0
    assert found.iqr.bound == 20.0
    assert found.dimensions == []


def test_quartiles_take_withheld_bins_as_empty_and_say_so() -> None:
    suppressed = Value.suppressed(Reason(rule="INCOMPLETE_POOL"))
    bins = [(0.0, low(5)), (10.0, noisy(20, 5)), (20.0, noisy(20, 5)), (30.0, suppressed)]
    _, median, _ = quantiles(bins, 10.0, 40.0)
    assert median.value == 20.0
    assert WITHHELD_BINS in [r.rule for r in median.reasons]


def test_quartiles_are_withheld_where_every_bin_is() -> None:
    _, median, _ = quantiles([(0.0, low(5)), (10.0, low(5))], 10.0, 20.0)
    assert median.status is ValueStatus.LOW
    assert median.value is None
