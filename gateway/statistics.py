"""A numeric variable's summary in every cell, from the nodes' released sufficient statistics.

Each node releases per cell n (VALUE_N, a noisy count), S₁ = Σu and S₂ = Σ(u² − k) of its
persons' clipped, centred units (`schema.variables`), each with noise of its own. The gateway
pools each statistic as counts pool (`gateway.combine`: the sum of the nodes' released parts,
withheld with INCOMPLETE_POOL when one is withheld), so the pooled statistics are those of the
union of the nodes' persons, as if in one place, plus noise: the parallel merge of Chan, Golub
& LeVeque (1979) for per-node means and variances reduces, for sums, to adding them up. Then,
per cell (each country's and the pooled):

    mean = (S₁/n + c)·r        variance = (S₂ + n·k − S₁²/n) / (n − 1) · r²

with c the bounds' centre and r the resolution; the standard deviation is the variance's root
and the 95% confidence interval for the mean uses Student's t with n − 1 degrees of freedom on
the sampling variance plus the noise's (delta method). Every number says how much the noise
moves it (`Estimate.sd`, to first order). Everything is withheld where n is (LOW below the
minimum, as counts): never a mean over fewer persons than the minimum, and never a minimum
or a maximum. An estimate the noise took beyond what values within the public bounds allow
is shown at that limit: a variance below 0 at 0 (reason NOISY_VARIANCE), a mean beyond the
bounds or a variance above (hi − lo)²/4 · n/(n − 1) at the bound (BEYOND_BOUNDS), and the
interval within the bounds.
Integer arithmetic up to the divisions: before protection, the figures equal a direct
computation on the clipped values of the union.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Final

from scipy import stats

from gateway.combine import Combined, Profiles, combine
from gateway.nodes import NodeOutcome
from schema.codes import Dimension, MeasureKind, ValueStatus
from schema.dimensions import UNKNOWN_KEY
from schema.measures import asked
from schema.query import STATISTICS, Breakdown, CohortQuery
from schema.result import Cell, DimensionValue, Estimate, Quantiles, Reason, Summary, Value
from schema.variables import Clipping

N, S1, S2 = MeasureKind.VALUE_N, MeasureKind.VALUE_SUM, MeasureKind.VALUE_SUM_SQUARES
NOISY_VARIANCE: Final = "NOISY_VARIANCE"
BEYOND_BOUNDS: Final = "BEYOND_BOUNDS"
TOO_FEW_FOR_VARIANCE: Final = "TOO_FEW_FOR_VARIANCE"
CONFIDENCE: Final = 0.95


@dataclasses.dataclass(frozen=True, slots=True)
class Moments:
    """A cell's exact or noisy sufficient statistics, as released (`S2` less the offset)."""

    n: int
    s1: int
    s2: int


def mean_and_variance(moments: Moments, clipping: Clipping) -> tuple[float, float | None]:
    """The mean and the (sample) variance in the variable's unit; no variance for n < 2. The
    numerator n·S₂ − S₁² is formed in integers (exact), then divided once."""
    n, s1 = moments.n, moments.s1
    r = clipping.resolution
    mean = (s1 / n + clipping.centre) * r
    if n < 2:
        return mean, None
    squares = moments.s2 + n * clipping.square_offset
    variance = (n * squares - s1 * s1) / (n * (n - 1)) * r * r
    return mean, variance


def summarise(n: Value, s1: Value, s2: Value, clipping: Clipping) -> Summary:
    """One cell's summary from its released (or pooled) statistics."""
    withheld = next((v for v in (n, s1, s2) if v.withheld), None)
    if withheld is not None:
        # With n (or a sum, which a node withholds with n): every number, for its reasons.
        status = (
            ValueStatus.LOW
            if n.withheld and n.status is ValueStatus.LOW
            else (ValueStatus.SUPPRESSED)
        )
        reasons = list(dict.fromkeys([*n.reasons, *s1.reasons, *s2.reasons]))
        empty = _estimate(value=None, status=status, reasons=reasons, sd=None)
        return Summary.trusted(
            n=n, mean=empty, variance=empty, sd=empty, ci_low=empty, ci_high=empty
        )
    moments = Moments(n.value or 0, s1.value or 0, s2.value or 0)  # none withheld
    reasons = list(dict.fromkeys([*n.reasons, *s1.reasons, *s2.reasons]))
    status = max(
        (v.status for v in (n, s1, s2)),
        key=(ValueStatus.EXACT, ValueStatus.ROUNDED, ValueStatus.PERTURBED).index,
    )
    count, r = moments.n, clipping.resolution
    mean, variance = mean_and_variance(moments, clipping)
    sd_n, sd_1, sd_2 = (_noise(v) for v in (n, s1, s2))
    # First-order noise of the mean: ∂/∂S₁ = 1/n, ∂/∂n = −S₁/n².
    mean_noise = r * math.hypot(sd_1 / count, moments.s1 / count**2 * sd_n)
    low, high = clipping.lo * r, clipping.hi * r
    mean_reasons = reasons
    if not low <= mean <= high:
        mean, mean_reasons = min(max(mean, low), high), [*reasons, _BEYOND_BOUNDS]
    mean_estimate = _estimate(value=mean, status=status, reasons=mean_reasons, sd=mean_noise)
    if variance is None:
        few = _estimate(
            value=None,
            status=ValueStatus.SUPPRESSED,
            reasons=[*reasons, _TOO_FEW],
            sd=None,
        )
        return Summary.trusted(
            n=n, mean=mean_estimate, variance=few, sd=few, ci_low=few, ci_high=few
        )
    units_variance = variance / (r * r)
    # ∂var/∂S₂ = 1/(n−1), ∂var/∂S₁ = −2S₁/(n(n−1)), ∂var/∂n = (k + S₁²/n² − var)/(n−1).
    k = clipping.square_offset
    variance_noise = (
        r
        * r
        / (count - 1)
        * math.sqrt(
            sd_2**2
            + (2 * moments.s1 / count * sd_1) ** 2
            + ((k + (moments.s1 / count) ** 2 - units_variance) * sd_n) ** 2
        )
    )
    variance_reasons = reasons
    # The truth lies within what values between the bounds allow: a noisy estimate beyond is
    # brought back (post-processing of released values; it only lessens the error).
    widest = ((clipping.hi - clipping.lo) * r) ** 2 / 4 * count / (count - 1)
    if variance < 0:
        variance, variance_reasons = 0.0, [*reasons, _NOISY_VARIANCE]
    elif variance > widest:
        variance, variance_reasons = widest, [*reasons, _BEYOND_BOUNDS]
    sd = math.sqrt(variance)
    sd_noise = variance_noise / (2 * sd) if sd > 0 else math.sqrt(variance_noise)
    # The mean's standard error: sampling (variance / n) and noise, together.
    error = math.sqrt(variance / count + mean_noise**2)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, count - 1)) * error
    ci_low, ci_high = max(mean - half, low), min(mean + half, high)
    return Summary.trusted(
        n=n,
        mean=mean_estimate,
        variance=_estimate(
            value=variance, status=status, reasons=variance_reasons, sd=variance_noise
        ),
        sd=_estimate(value=sd, status=status, reasons=variance_reasons, sd=sd_noise),
        ci_low=_estimate(value=ci_low, status=status, reasons=reasons, sd=mean_noise),
        ci_high=_estimate(value=ci_high, status=status, reasons=reasons, sd=mean_noise),
    )


def _estimate(
    *,
    value: float | None,
    status: ValueStatus,
    reasons: list[Reason],
    sd: float | None,
    bound: float | None = None,
) -> Estimate:
    # Made of valid parts (released values' statuses and reasons): not validated again.
    return Estimate.trusted(value=value, status=status, reasons=reasons, sd=sd, bound=bound)


def _noise(value: Value) -> float:
    return value.sd or 0.0


_NOISY_VARIANCE: Final = Reason(
    rule=NOISY_VARIANCE,
    message="the noise made the variance estimate negative: shown as 0",
)
_BEYOND_BOUNDS: Final = Reason(
    rule=BEYOND_BOUNDS,
    message="the noise took the estimate beyond what values within the bounds allow: "
    "shown at that limit",
)
_TOO_FEW: Final = Reason(
    rule=TOO_FEW_FOR_VARIANCE,
    message="a variance needs at least two persons with a value",
)


WITHHELD_BINS: Final = "WITHHELD_BINS_AS_ZERO"
FROM_HISTOGRAM: Final = "FROM_HISTOGRAM"
_WITHHELD_BINS: Final = Reason(
    rule=WITHHELD_BINS,
    message="withheld bins (LOW, or a pool with a part LOW) were taken as empty: only "
    "released bins are used",
)


def quantiles(
    bins: Sequence[tuple[float, Value]], width: float, top: float
) -> tuple[Estimate, Estimate, Estimate]:
    """The first quartile, the median and the third quartile of a histogram's released bins
    (lower edge, count; in order, the last bin up to `top`): each where the cumulative count
    reaches its share of the total, by linear interpolation within that bin, whose width
    bounds it. Withheld bins count as empty (WITHHELD_BINS_AS_ZERO): a quantile is made of
    released numbers only, and leans towards the bins released where the tails are thin.
    Withheld where every bin is."""
    counts = [v for _, v in bins]
    reasons = list(dict.fromkeys(r for v in counts for r in v.reasons))
    if not bins or all(v.withheld for v in counts):
        lows = all(v.status is ValueStatus.LOW for v in counts)
        status = ValueStatus.LOW if bins and lows else ValueStatus.SUPPRESSED
        empty = _estimate(value=None, status=status, reasons=reasons, sd=None)
        return empty, empty, empty
    if any(v.withheld for v in counts):
        reasons.append(_WITHHELD_BINS)
    reasons.append(
        Reason(
            rule=FROM_HISTOGRAM,
            message=f"interpolated within its bin of width {width:g}, from released bins only",
        )
    )
    numbers = [v.value or 0 for v in counts]
    total = sum(numbers)
    status = max(
        (v.status for v in counts if not v.withheld),
        key=(ValueStatus.EXACT, ValueStatus.ROUNDED, ValueStatus.PERTURBED).index,
    )

    def at(share: float) -> Estimate:
        target, below = share * total, 0
        for (edge, _), n in zip(bins, numbers, strict=True):
            if n > 0 and below + n >= target:
                upper = min(edge + width, top)
                value = edge + (target - below) / n * (upper - edge)
                return _estimate(value=value, status=status, reasons=reasons, sd=None, bound=width)
            below += n
        return _estimate(value=top, status=status, reasons=reasons, sd=None, bound=width)

    return at(0.25), at(0.5), at(0.75)


def with_quantiles(combined: Combined, query: CohortQuery) -> Combined:
    """`combined` with the quartiles of every histogram (table by VALUE_BIN), per group of
    its other dimensions' values."""
    variable = query.variable
    if variable is None or variable.bin_width is None:
        return combined
    clipping = variable.clipping
    top = clipping.hi * clipping.resolution
    found: dict[Breakdown, tuple[Quantiles, ...]] = {}
    for by, cells in combined.tables.items():
        if Dimension.VALUE_BIN not in by:
            continue
        at = by.index(Dimension.VALUE_BIN)
        groups: dict[tuple[str, ...], list[tuple[float, Value]]] = {}
        labels: dict[tuple[str, ...], list[DimensionValue]] = {}
        for cell in cells:
            key = _key(cell)
            group = key[:at] + key[at + 1 :]
            labels[group] = [d for i, d in enumerate(cell.dimensions) if i != at]
            if key[at] != UNKNOWN_KEY:
                groups.setdefault(group, []).append((float(key[at]), cell.count))
        found[by] = tuple(
            _quantiles(labels[group], quantiles(sorted(bins, key=_edge), variable.bin_width, top))
            for group, bins in groups.items()
        )
    return dataclasses.replace(combined, quantiles=found)


def _quantiles(
    dimensions: list[DimensionValue], quartiles: tuple[Estimate, Estimate, Estimate]
) -> Quantiles:
    """A group's quartiles and their interquartile range (within twice the bin width)."""
    q1, median, q3 = quartiles
    if q1.value is None or q3.value is None:
        iqr = q1
    else:
        iqr = _estimate(
            value=q3.value - q1.value,
            status=q1.status,
            reasons=q1.reasons,
            sd=None,
            bound=None if q1.bound is None else 2 * q1.bound,
        )
    return Quantiles.trusted(dimensions=dimensions, q1=q1, median=median, q3=q3, iqr=iqr)


def _edge(item: tuple[float, Value]) -> float:
    return item[0]


def with_summaries(
    combined: Combined,
    query: CohortQuery,
    tables: Sequence[Breakdown],
    outcomes: Sequence[NodeOutcome],
    profiles: Profiles,
) -> Combined:
    """`combined` with the variable's summary in every cell, each country's and the pooled
    total (unchanged when the question has no variable)."""
    variable = query.variable
    if variable is None or MeasureKind.VALUE_N not in asked(query):
        return combined  # no variable, or asked for its histogram alone
    clipping = variable.clipping
    parts = {kind: combine(tables, outcomes, profiles, None, kind) for kind in STATISTICS}

    def summary(values: Mapping[MeasureKind, Value | None]) -> Summary | None:
        n, s1, s2 = (values[k] for k in STATISTICS)
        if n is None or s1 is None or s2 is None:
            return None
        return summarise(n, s1, s2, clipping)

    nodes = [
        dataclasses.replace(
            node,
            summary=summary({k: parts[k].by_jurisdiction[i].count for k in STATISTICS}),
        )
        for i, node in enumerate(combined.by_jurisdiction)
    ]
    cells = {}
    for by, of_table in combined.tables.items():
        # Each statistic's cells by their dimension values (every node lists every cell of
        # the table's public domain, so each table has the same keys).
        of_kind = {k: {_key(c): c.count for c in parts[k].tables[by]} for k in STATISTICS}
        cells[by] = tuple(
            _summarised(cell, summary({k: of_kind[k].get(_key(cell)) for k in STATISTICS}))
            for cell in of_table
        )
    return dataclasses.replace(
        combined,
        summary=summary({k: parts[k].count for k in STATISTICS}),
        by_jurisdiction=tuple(nodes),
        tables=cells,
    )


def _summarised(cell: Cell, summary: Summary | None) -> Cell:
    return Cell.trusted(
        dimensions=cell.dimensions, count=cell.count, summary=summary, rate=cell.rate
    )


def _key(cell: Cell) -> tuple[str, ...]:
    return tuple(d.value for d in cell.dimensions)
