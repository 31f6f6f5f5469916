"""Survival curves and log-rank tests from the nodes' released exits from follow-up.

Each node releases one table by FOLLOW_UP (and one per group: FOLLOW_UP × SEX, …): every
cohort person in exactly one cell, where they left follow-up (`schema.survival`), each cell a
count under the full pipeline (noise, the minimum, LOW). Per group, per country and pooled
over the countries, the gateway then derives, interval by interval,

    events dₖ and censorings cₖ        the released cells ("<start>:EVENT", "<start>:CENSORED")
    at risk nₖ = Σ_{j ≥ k} (dⱼ + cⱼ) + a   (a: the cell "<max>:AT_RISK")
    S(end of k) = Π_{j ≤ k} (1 − dⱼ / nⱼ)   (Kaplan–Meier over the intervals)

with the 95% band of Greenwood's variance Σ dⱼ / (nⱼ (nⱼ − dⱼ)) on the log(−log) scale, as
lifelines computes it. An interval's events and censorings fall at its end, censorings after
events: the curve is the Kaplan–Meier estimate of the times grouped to the interval grid.

Consistent post-processing of noisy counts: a released cell is never below the minimum, and a
withheld one (LOW: its noisy value below the minimum, never shown) is taken at half the
minimum (reason LOW_EXITS_AT_HALF_MINIMUM). Every cell is then at least zero, so the number at
risk, a sum of the cells from its interval on, never increases, and dₖ ≤ nₖ always: no
clipping is needed. Nothing is charged again: every number here is a function of released
cells.

Every number's `bound` is how far what is not noise could move it: a cell's spread is half
the minimum where it was imputed, plus the `bound` each released part carries (a node's
rounding to its base: the value lies within it of the noisy count it rounded). The number at
risk, a sum of cells, has the sum of their spreads. S at the end of interval k, with rⱼ = nⱼ − dⱼ
the persons left after interval j, is Πⱼ≤ₖ rⱼ / (dⱼ + rⱼ), decreasing in each dⱼ / rⱼ: with
every cell anywhere within its spread (and at least 0), S lies between Πⱼ 1 / (1 + dⱼ⁺ / rⱼ⁻)
and Πⱼ 1 / (1 + dⱼ⁻ / rⱼ⁺) (each event count at its highest, the persons left at their fewest,
and the reverse): an enclosure, each factor bounded on its own, so a bound that holds; the
survival's bound is its larger distance from S. A band's end carries the distance its value
moves when S is taken at those two ends (its Greenwood variance held), which is what rounding
and imputation add to the sampling's band. The log-rank test's p-value carries no bound.

A pooled cell is the sum of each country's released (or imputed) part. The log-rank test
between the groups of a dimension (not UNKNOWN) compares each group's events with those
expected under one curve, interval by interval, with the hypergeometric variance (the
multivariate form for more than two groups), as lifelines' `logrank_test` and
`multivariate_logrank_test` do.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
from scipy import stats

from gateway.combine import Combined, Profiles, released_alone
from gateway.nodes import CellKey, NodeOutcome
from gateway.pooling import Pooling
from schema.codes import Dimension, Jurisdiction, NodeStatus, ValueStatus
from schema.dimensions import UNKNOWN_KEY
from schema.query import CohortQuery, Survival
from schema.result import DimensionValue, Estimate, Reason, Value
from schema.survival import Exit, exit_key, interval_starts
from schema.survival_result import LogRank, SurvivalCurve, SurvivalStep

LOW_EXITS: Final = "LOW_EXITS_AT_HALF_MINIMUM"
NONE_AT_RISK: Final = "NONE_AT_RISK"
NO_EXITS: Final = "NO_EXITS_RELEASED"
CONFIDENCE: Final = 0.95
_Z: Final = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))


@dataclasses.dataclass(frozen=True, slots=True)
class Exits:
    """One curve's cells in follow-up order: per interval its events and censorings, then
    the persons at risk at the maximum; each as a number (a withheld cell imputed), the
    noise's variance, and whether any part was imputed (with the most imputation could be
    off by)."""

    events: tuple[float, ...]
    censored: tuple[float, ...]
    at_end: float
    variances: tuple[float, ...]  # events, censored interleaved, then at_end
    imputed: tuple[float, ...]  # per cell, as `variances`: 0 where released
    # Per cell, as `variances`: the released parts' own bounds (a node's rounding).
    rounding: tuple[float, ...]
    statuses: tuple[ValueStatus, ...]  # per cell, as `variances`
    reasons: tuple[Reason, ...]

    def released(self, cells: range) -> bool:
        """Whether any of `cells` (indexes as `variances`) has a released part: a number
        made of imputed cells only would be made of nothing released."""
        values = [
            *(v for pair in zip(self.events, self.censored, strict=True) for v in pair),
            self.at_end,
        ]
        return any(values[i] > self.imputed[i] for i in cells)

    def spread(self, i: int) -> float:
        """How far cell `i`'s truth (before noise) may lie from its number."""
        return self.imputed[i] + self.rounding[i]


@dataclasses.dataclass(frozen=True, slots=True)
class Curve:
    """The Kaplan–Meier estimate over the intervals, exactly (before rounding to output)."""

    at_risk: tuple[float, ...]
    survival: tuple[float | None, ...]  # None once nobody is at risk
    greenwood: tuple[float | None, ...]  # Σ d/(n(n−d)) up to each interval


def kaplan_meier(events: Sequence[float], censored: Sequence[float], at_end: float) -> Curve:
    """The product-limit estimate at each interval's end from its exits (see the module)."""
    at_risk: list[float] = []
    remaining = at_end + sum(events) + sum(censored)
    for d, c in zip(events, censored, strict=True):
        at_risk.append(remaining)
        remaining -= d + c
    survival: list[float | None] = []
    greenwood: list[float | None] = []
    s, g = 1.0, 0.0
    for n, d in zip(at_risk, events, strict=True):
        if n <= 0 or s is None:
            survival.append(None)
            greenwood.append(None)
            continue
        s *= 1 - d / n
        g = g + d / (n * (n - d)) if n > d else math.inf
        survival.append(s)
        greenwood.append(g)
    return Curve(at_risk=tuple(at_risk), survival=tuple(survival), greenwood=tuple(greenwood))


def log_log_band(s: float, greenwood: float) -> tuple[float, float]:
    """The 95% band of S on the log(−log) scale (lifelines' default): S^exp(±z√V / log S)."""
    if s >= 1 or greenwood == 0:
        return s, s
    if s <= 0 or math.isinf(greenwood):
        return 0.0, 0.0
    log_s = math.log(s)
    spread = _Z * math.sqrt(greenwood) / log_s
    return s ** math.exp(-spread), s ** math.exp(spread)


def log_rank(groups: Sequence[Exits]) -> tuple[float, int]:
    """The log-rank statistic (χ², G − 1 degrees of freedom) between the groups' curves."""
    curves = [kaplan_meier(g.events, g.censored, g.at_end) for g in groups]
    size = len(groups)
    observed_minus_expected = np.zeros(size)
    variance = np.zeros((size, size))
    for k in range(len(groups[0].events)):
        n = np.array([c.at_risk[k] for c in curves])
        d = np.array([g.events[k] for g in groups])
        total_n, total_d = float(n.sum()), float(d.sum())
        if total_n <= 1 or total_d <= 0:
            continue
        share = n / total_n
        observed_minus_expected += d - total_d * share
        spread = total_d * (total_n - total_d) / (total_n - 1)
        variance += spread * (np.diag(share) - np.outer(share, share))
    reduced = variance[:-1, :-1]
    difference = observed_minus_expected[:-1]
    statistic = float(difference @ np.linalg.pinv(reduced) @ difference)
    return statistic, size - 1


# -- from the nodes' released cells ---------------------------------------------------------


def _exits(
    cells: Mapping[CellKey, Sequence[tuple[Value, int]]],
    survival: Survival,
    at: int,
    group: CellKey,
) -> Exits:
    """One curve's exits from the cells of a table by FOLLOW_UP (the key's FOLLOW_UP part at
    position `at`, the other parts `group`), each cell the list of its countries' parts with
    their minimum."""
    order = [
        exit_key(start, exit_)
        for start in interval_starts(survival.interval_days, survival.max_days)
        for exit_ in (Exit.EVENT, Exit.CENSORED)
    ]
    order.append(exit_key(survival.max_days, Exit.AT_RISK))
    values: list[float] = []
    variances: list[float] = []
    imputed: list[float] = []
    rounding: list[float] = []
    statuses: list[ValueStatus] = []
    reasons: dict[Reason, None] = {}
    for key in order:
        parts = cells.get((*group[:at], key, *group[at:]), ())
        value = variance = off = rounded = 0.0
        status = ValueStatus.EXACT
        for part, minimum in parts:
            variance += (part.sd or 0.0) ** 2
            reasons.update(dict.fromkeys(r for r in part.reasons))
            if part.value is None:
                # LOW (or withheld): somewhere from 0 to the minimum, never shown.
                value += minimum / 2
                off += minimum / 2
                status = _least_exact(status, ValueStatus.PERTURBED)
            else:
                value += max(part.value, 0)
                rounded += part.bound or 0.0
                status = _least_exact(status, part.status)
        values.append(value)
        variances.append(variance)
        imputed.append(off)
        rounding.append(rounded)
        statuses.append(status if parts else ValueStatus.SUPPRESSED)
    if any(imputed):
        reasons[_LOW_EXITS] = None
    return Exits(
        events=tuple(values[0:-1:2]),
        censored=tuple(values[1:-1:2]),
        at_end=values[-1],
        variances=tuple(variances),
        imputed=tuple(imputed),
        rounding=tuple(rounding),
        statuses=tuple(statuses),
        reasons=tuple(reasons),
    )


def _least_exact(a: ValueStatus, b: ValueStatus) -> ValueStatus:
    order = (ValueStatus.EXACT, ValueStatus.ROUNDED, ValueStatus.PERTURBED)
    return max(a, b, key=order.index)


def curve_steps(exits: Exits, survival: Survival) -> list[SurvivalStep]:
    """Each interval's at-risk, events, censorings, survival at its end and band, with the
    noise's sd (first order) and the bound imputation and rounding allow (see the module)."""
    curve = kaplan_meier(exits.events, exits.censored, exits.at_end)
    starts = interval_starts(survival.interval_days, survival.max_days)
    size = len(starts)
    low, high = _enclosure(exits)
    noise = _survival_noise(exits, curve)
    reasons = list(exits.reasons)
    steps = []
    for k, start in enumerate(starts):
        event_cell, censored_cell = 2 * k, 2 * k + 1
        tail = range(event_cell, 2 * size + 1)
        at_risk = _count(
            curve.at_risk[k],
            [exits.statuses[i] for i in tail],
            sum(exits.variances[i] for i in tail),
            sum(exits.spread(i) for i in tail),
            reasons,
        )
        events = _cell(exits, event_cell, exits.events[k], reasons)
        censored = _cell(exits, censored_cell, exits.censored[k], reasons)
        s, g = curve.survival[k], curve.greenwood[k]
        status = max(
            (exits.statuses[i] for i in tail if exits.statuses[i] is not ValueStatus.SUPPRESSED),
            key=(ValueStatus.EXACT, ValueStatus.ROUNDED, ValueStatus.PERTURBED).index,
            default=ValueStatus.SUPPRESSED,
        )
        if not exits.released(tail):
            # Every exit from here on withheld: nothing released to show.
            withheld = _estimate(None, ValueStatus.LOW, reasons, None, None)
            steps.append(
                SurvivalStep(
                    start=start,
                    end=start + survival.interval_days,
                    at_risk=withheld,
                    events=events,
                    censored=censored,
                    survival=withheld,
                    ci_low=withheld,
                    ci_high=withheld,
                )
            )
            continue
        if s is None or g is None or status is ValueStatus.SUPPRESSED:
            empty = _estimate(None, ValueStatus.SUPPRESSED, [*reasons, _NONE_AT_RISK], None, None)
            steps.append(
                SurvivalStep(
                    start=start,
                    end=start + survival.interval_days,
                    at_risk=at_risk,
                    events=events,
                    censored=censored,
                    survival=empty,
                    ci_low=empty,
                    ci_high=empty,
                )
            )
            continue
        ends = (low[k], high[k])
        bound = max(abs(other - s) for other in ends)
        low_band, high_band = log_log_band(s, g)
        # Each band's end at S's two ends, its variance held.
        moved = [log_log_band(other, g) for other in ends]
        low_bound = max(abs(m[0] - low_band) for m in moved)
        high_bound = max(abs(m[1] - high_band) for m in moved)
        steps.append(
            SurvivalStep(
                start=start,
                end=start + survival.interval_days,
                at_risk=at_risk,
                events=events,
                censored=censored,
                survival=_estimate(s, status, reasons, noise[k], bound or None),
                ci_low=_estimate(low_band, status, reasons, noise[k], low_bound or None),
                ci_high=_estimate(high_band, status, reasons, noise[k], high_bound or None),
            )
        )
    return steps


def _enclosure(exits: Exits) -> tuple[list[float], list[float]]:
    """The least and the most S at the end of each interval with every cell anywhere within
    its spread, at least 0 (see the module): each factor rⱼ / (dⱼ + rⱼ) bounded on its own."""
    size = len(exits.events)
    spreads = [exits.spread(i) for i in range(2 * size + 1)]
    cells = [*(v for pair in zip(exits.events, exits.censored, strict=True) for v in pair)]
    cells.append(exits.at_end)
    fewest = [max(v - spreads[i], 0.0) for i, v in enumerate(cells)]
    most = [v + spreads[i] for i, v in enumerate(cells)]
    lowest: list[float] = []
    highest: list[float] = []
    s_low = s_high = 1.0
    for j in range(size):
        # Persons left after interval j: its censorings and every later cell.
        left = range(2 * j + 1, 2 * size + 1)
        left_fewest = sum(fewest[i] for i in left)
        left_most = sum(most[i] for i in left)
        s_low *= _kept(most[2 * j], left_fewest)
        s_high *= _kept(fewest[2 * j], left_most)
        lowest.append(s_low)
        highest.append(s_high)
    return lowest, highest


def _kept(events: float, left: float) -> float:
    """r / (d + r): the share of an interval's persons at risk who had no event in it."""
    if events + left <= 0:
        return 1.0
    return left / (events + left)


def _survival_noise(exits: Exits, curve: Curve) -> list[float | None]:
    """The sd the cells' noise gives each S (first order): ∂ log S_k / ∂ cell i is
    −1/(nᵢ − dᵢ) for the events of an interval i ≤ k, plus Σ_{j ≤ min(i, k)} dⱼ/(nⱼ(nⱼ − dⱼ))
    through the numbers at risk the cell is in."""
    size = len(exits.events)
    through: list[float] = []
    total = 0.0
    for j in range(size):
        n, d = curve.at_risk[j], exits.events[j]
        total += d / (n * (n - d)) if n > d > 0 else 0.0
        through.append(total)
    out: list[float | None] = []
    for k in range(size):
        s = curve.survival[k]
        if s is None:
            out.append(None)
            continue
        variance = 0.0
        for cell in range(2 * size + 1):
            interval = min(cell // 2, size - 1) if cell < 2 * size else size - 1
            gradient = through[min(interval, k)]
            if cell < 2 * size and cell % 2 == 0 and interval <= k:
                n, d = curve.at_risk[interval], exits.events[interval]
                gradient -= 1 / (n - d) if n > d else 0.0
            variance += (gradient * s) ** 2 * exits.variances[cell]
        out.append(math.sqrt(variance))
    return out


def _cell(exits: Exits, i: int, value: float, reasons: list[Reason]) -> Estimate:
    """One interval's events or censorings: withheld where its only part is (LOW), else the
    sum of its parts (some imputed, then said)."""
    status = exits.statuses[i]
    if status is ValueStatus.SUPPRESSED:
        return _estimate(None, status, [*reasons, _NO_EXITS], None, None)
    if exits.imputed[i] and exits.imputed[i] >= value:
        # Every part withheld: the cell is LOW as its parts are.
        return _estimate(None, ValueStatus.LOW, reasons, math.sqrt(exits.variances[i]), None)
    return _count(value, [status], exits.variances[i], exits.spread(i), reasons)


def _count(
    value: float,
    statuses: Sequence[ValueStatus],
    variance: float,
    off: float,
    reasons: list[Reason],
) -> Estimate:
    shown = [s for s in statuses if s is not ValueStatus.SUPPRESSED]
    if not shown:
        return _estimate(None, ValueStatus.SUPPRESSED, [*reasons, _NO_EXITS], None, None)
    status = max(shown, key=(ValueStatus.EXACT, ValueStatus.ROUNDED, ValueStatus.PERTURBED).index)
    return _estimate(value, status, reasons, math.sqrt(variance), off or None)


def _estimate(
    value: float | None,
    status: ValueStatus,
    reasons: list[Reason],
    sd: float | None,
    bound: float | None,
) -> Estimate:
    # Made of released values' statuses and reasons: not validated again.
    return Estimate.trusted(value=value, status=status, reasons=reasons, sd=sd, bound=bound)


_LOW_EXITS: Final = Reason(
    rule=LOW_EXITS,
    message="withheld exits (LOW: below the minimum) were taken at half the minimum; the "
    "bound says how far their truth (and any rounding) could move the number",
)
_NONE_AT_RISK: Final = Reason(
    rule=NONE_AT_RISK, message="nobody is at risk from this interval on: no survival to show"
)
_NO_EXITS: Final = Reason(rule=NO_EXITS, message="no country released these exits")


# -- the answer -----------------------------------------------------------------------------

Parts = dict[CellKey, list[tuple[Value, int]]]


def with_survival(
    combined: Combined,
    query: CohortQuery,
    outcomes: Sequence[NodeOutcome],
    profiles: Profiles,
    pooling: Pooling | None = None,
    *,
    by_country: bool = True,
) -> Combined:
    """`combined` with the survival curves of every table by FOLLOW_UP, each group's pooled
    and, `by_country`, each country's, and the log-rank test between each dimension's groups.
    A table pooled securely (`pooling`) gives the pooled curves from its cells in `combined`:
    one noisy count of the whole per cell, LOW below the strictest minimum of the countries
    in it; any other pooled cell is the sum of the countries' released (or imputed) parts."""
    survival = query.survival
    if survival is None:
        return combined
    ok = [o for o in outcomes if o.status is NodeStatus.OK]
    released = {o.jurisdiction: released_alone(o, profiles) for o in ok}
    strictest = max((profiles(j).min_count for j in released), default=0)
    curves: list[SurvivalCurve] = []
    tests: list[LogRank] = []
    for by in query.tables:
        if Dimension.FOLLOW_UP not in by:
            continue
        at = by.index(Dimension.FOLLOW_UP)
        others = tuple(d for d in by if d is not Dimension.FOLLOW_UP)
        countries: list[tuple[Jurisdiction | None, Parts]] = []
        pooled: Parts = {}
        for country, tables in released.items():
            minimum = profiles(country).min_count
            mine: Parts = {}
            for key, value in tables.get(by, {}).items():
                mine.setdefault(key, []).append((value, minimum))
                pooled.setdefault(key, []).append((value, minimum))
            if by_country:
                countries.append((country, mine))
        if pooling is not None and by in pooling.tables:
            pooled = {
                tuple(d.value for d in cell.dimensions): [(cell.count, strictest)]
                for cell in combined.tables.get(by, ())
            }
        countries.append((None, pooled))
        for jurisdiction, parts in countries:
            groups = sorted({k[:at] + k[at + 1 :] for k in parts})
            of_group = {g: _exits(parts, survival, at, g) for g in groups}
            for group, exits in of_group.items():
                curves.append(
                    SurvivalCurve(
                        jurisdiction=jurisdiction,
                        dimensions=[
                            DimensionValue(name=d, value=v)
                            for d, v in zip(others, group, strict=True)
                        ],
                        steps=curve_steps(exits, survival),
                    )
                )
            if len(others) == 1:
                compared = {
                    g: e
                    for g, e in of_group.items()
                    if g[0] != UNKNOWN_KEY and e.released(range(len(e.variances)))
                }
                if len(compared) >= 2:
                    tests.append(_log_rank(jurisdiction, others[0], compared))
    return dataclasses.replace(combined, survival=tuple(curves), log_rank=tuple(tests))


def _log_rank(
    jurisdiction: Jurisdiction | None, dimension: Dimension, groups: Mapping[CellKey, Exits]
) -> LogRank:
    exits = list(groups.values())
    reasons = list(dict.fromkeys(r for e in exits for r in e.reasons))
    statuses = [s for e in exits for s in e.statuses if s is not ValueStatus.SUPPRESSED]
    status = max(
        statuses,
        key=(ValueStatus.EXACT, ValueStatus.ROUNDED, ValueStatus.PERTURBED).index,
        default=ValueStatus.SUPPRESSED,
    )
    names = [g[0] for g in groups]
    if status is ValueStatus.SUPPRESSED:
        empty = _estimate(None, status, [*reasons, _NO_EXITS], None, None)
        return LogRank(
            jurisdiction=jurisdiction,
            dimension=dimension,
            groups=names,
            statistic=empty,
            degrees_of_freedom=len(names) - 1,
            p_value=empty,
        )
    statistic, df = log_rank(exits)
    p = float(stats.chi2.sf(statistic, df))
    return LogRank(
        jurisdiction=jurisdiction,
        dimension=dimension,
        groups=names,
        statistic=_estimate(statistic, status, reasons, None, None),
        degrees_of_freedom=df,
        p_value=_estimate(p, status, reasons, None, None),
    )
